"""`yolo.augment`: a training image shrunk and resampled back loses fine detail and keeps everything else."""

from __future__ import annotations

import numpy as np
import pytest

from bccd_yolo.images import resize
from bccd_yolo.yolo.augment import ResampleTransform, resample


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
