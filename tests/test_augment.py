"""`yolo.augment`: a training image shrunk and resampled back loses fine detail and keeps everything else;
repainting the padding changes the padding and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from bccd_yolo.images import resize
from bccd_yolo.yolo.augment import PAD, RefillTransform, ResampleTransform, refill, resample


def checkerboard(h: int = 96, w: int = 128) -> np.ndarray:
    board = ((np.indices((h, w)).sum(0) % 2) * 255).astype(np.uint8)
    return np.dstack([board] * 3)


def ramp(h: int = 96, w: int = 128) -> np.ndarray:
    return np.dstack([np.tile(np.linspace(0, 255, w), (h, 1)).astype(np.uint8)] * 3)


def test_resample_erases_detail_finer_than_the_coarser_scan():
    out = resample(checkerboard(), 0.5)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8
    # a 1 px checkerboard is beyond a half-resolution scan: what comes back is near-uniform grey
    assert out.std() < 0.1 * checkerboard().std()
    assert abs(float(out.mean()) - 127.5) < 3


def test_resample_keeps_what_the_coarser_scan_resolves():
    # a ramp changes by 2 levels per px: linear resampling keeps it within the rounding of both steps and
    # the ramp's own clamped ends
    diff = np.abs(resample(ramp(), 0.6).astype(int) - ramp().astype(int))
    assert np.percentile(diff, 95) <= 2


def test_resample_matches_what_counting_does_to_a_coarse_scan():
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # counting resizes a scan at half resolution up to the model's scale with images.resize
    scan = resize(img, (80, 60))
    assert np.array_equal(resample(img, 0.5), resize(scan, (160, 120)))


@pytest.mark.parametrize("p, changed", [(0.0, 0), (1.0, 20)])
def test_transform_applies_to_the_share_asked(p, changed):
    t = ResampleTransform(p)
    n = sum(not np.array_equal(t({"img": checkerboard()})["img"], checkerboard()) for _ in range(20))
    assert n == changed


def test_refill_repaints_the_padding_and_nothing_else():
    photo = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    photo[(photo == PAD).all(axis=2)] = 0  # no exact padding grey inside the photo
    padded = np.full((100, 100, 3), PAD, np.uint8)
    padded[10:74, 5:85] = photo
    padded[80, 90] = (PAD, PAD, 0)  # a pixel with 114 in two channels is not padding
    out = refill(padded, 230)
    assert np.array_equal(out[10:74, 5:85], photo) and tuple(out[80, 90]) == (PAD, PAD, 0)
    outside = np.ones((100, 100), bool)
    outside[10:74, 5:85] = False
    outside[80, 90] = False
    assert (out[outside] == 230).all()
    assert (padded[outside] == PAD).all()  # the input is left as it was


@pytest.mark.parametrize("p, changed", [(0.0, 0), (1.0, 20)])
def test_refill_applies_to_the_share_asked(p, changed):
    padded = np.full((8, 8, 3), PAD, np.uint8)
    t = RefillTransform(p)
    # a random level equal to the padding's leaves it unchanged: 1 in 256 per draw
    n = sum(not np.array_equal(t({"img": padded})["img"], padded) for _ in range(20))
    assert n >= changed - 1 if changed else n == 0
