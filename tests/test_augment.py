"""`yolo.augment`: a training image shrunk and resampled back loses fine detail and keeps everything else;
repainting the padding changes the padding and nothing else; a frame cuts cells and keeps the labels of
those that still show."""

from __future__ import annotations

import numpy as np
import pytest

from bccd_yolo.core.images import resize
from bccd_yolo.yolo.augment import PAD, RefillTransform, ResampleTransform, frame, refill, resample


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


def test_frame_pads_outside_and_keeps_the_cells_that_still_show():
    img = np.random.default_rng(2).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    boxes = np.array([
        [30, 30, 50, 50],   # inside: unchanged
        [5, 40, 25, 60],    # cut by the left side at x=20: 5 of 20 px wide remain (25 %), kept, clipped
        [0, 70, 21, 90],    # 1 px remains: too thin, dropped
        [10, 0, 30, 12],    # cut by the top at y=10: 2 of 12 px remain: dropped (not over 2 px)
        [90, 40, 110, 60],  # cut by the right side at x=100: 10 of 20 px remain, kept
        [100, 80, 118, 98], # wholly outside: dropped
        [60, 5, 80, 13],    # 3 of 8 px tall remain (37 %, over 2 px): kept
    ], dtype=np.float32)
    out, clipped, keep = frame(img, boxes, (20, 10, 100, 90))
    assert keep.tolist() == [True, True, False, False, True, False, True]
    assert clipped[0].tolist() == [30, 30, 50, 50] and clipped[1].tolist() == [20, 40, 25, 60]
    assert clipped[4].tolist() == [90, 40, 100, 60] and clipped[6].tolist() == [60, 10, 80, 13]
    assert np.array_equal(out[10:90, 20:100], img[10:90, 20:100])
    inside = np.zeros((100, 120), bool)
    inside[10:90, 20:100] = True
    assert (out[~inside] == PAD).all()


def test_frame_drops_a_box_with_under_a_tenth_of_its_area_left():
    big = np.array([[0, 0, 100, 100]], dtype=np.float32)  # 9 of 100 px wide remain: 9 % of the area
    _, _, keep = frame(np.zeros((100, 100, 3), np.uint8), big, (91, 0, 100, 100))
    assert not keep[0]
    _, _, keep = frame(np.zeros((100, 100, 3), np.uint8), big, (89, 0, 100, 100))  # 11 %
    assert keep[0]


def test_stain_jitter_is_exact_at_identity_and_moves_colour_along_the_stains():
    from bccd_yolo.yolo.augment import stain_jitter

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), np.uint8)
    assert np.array_equal(stain_jitter(img, np.ones(3), np.zeros(3)), img)  # rgb2hed would clip, this must not
    pink = np.full((8, 8, 3), (180, 140, 220), np.uint8)  # BGR: a pink, eosin-stained cell
    more_eosin = stain_jitter(pink, np.array([1.0, 1.5, 1.0]), np.zeros(3))  # H, E, D: E's density x1.5
    assert more_eosin[0, 0, 1] < pink[0, 0, 1] - 10  # eosin absorbs green: a deeper stain, less green
    assert abs(int(more_eosin[0, 0, 0]) - int(pink[0, 0, 0])) < abs(int(more_eosin[0, 0, 1]) - int(pink[0, 0, 1]))
