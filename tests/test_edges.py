"""Edge rules on hand-made boxes (no torch): which cut cells count, and fields that add up."""

from __future__ import annotations

import numpy as np
import pytest

from bccd_yolo.core.detections import Detections
from bccd_yolo.core.edges import EdgeRule, apply_edge_rule, edge_mask


def boxes(rows) -> Detections:
    xyxy = np.array(rows, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.ones(len(xyxy), np.float32), np.zeros(len(xyxy), np.int64))


# In a 100 x 80 field: inside, touching left, top, right, bottom, and the top-right corner.
FIELD = boxes([(10, 10, 20, 20), (0, 30, 10, 40), (30, 0, 40, 10), (90, 30, 100, 40), (30, 70, 40, 80), (90, 0, 100, 10)])


@pytest.mark.parametrize("rule, kept", [
    ("all", [0, 1, 2, 3, 4, 5]),
    ("interior", [0]),
    ("frame", [0, 1, 2]),  # a cell on the right or bottom edge never counts, even if it also touches the top
])
def test_each_rule_keeps_the_right_cells(rule, kept):
    assert np.flatnonzero(edge_mask(FIELD, rule, 0, 0, 100, 80)).tolist() == kept
    assert len(apply_edge_rule(FIELD, EdgeRule(rule), 100, 80)) == len(kept)


def test_a_box_within_the_margin_of_an_edge_is_cut_by_it():
    near = boxes([(1.5, 30, 12, 40), (3, 30, 12, 40)])
    assert edge_mask(near, "interior", 0, 0, 100, 80).tolist() == [False, True]


def random_cells(rng, n: int, width: int, height: int) -> Detections:
    """Cells as boxes of 20-120 px, some reaching past the image edge (clipped, as a photo cuts them)."""
    c = rng.uniform([-30, -30], [width + 30, height + 30], (n, 2))
    s = rng.uniform(20, 120, (n, 1))
    xyxy = np.concatenate([c - s / 2, c + s / 2], 1)
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    keep = (xyxy[:, 2] - xyxy[:, 0] > 1) & (xyxy[:, 3] - xyxy[:, 1] > 1)
    return boxes(xyxy[keep])


@pytest.mark.parametrize("seed", range(5))
def test_frame_counts_of_tiles_add_up_to_the_whole_photo(seed):
    """Cut a 640 x 480 photo into 4 x 3 fields; each field sees its cells clipped at its edges, as a separate photo
    would. Under the frame rule the fields' counts add up to the photo's; under `all` they over-count (cells cut by a
    seam count twice), so the test can tell the rules apart. Margin 0: these boxes are cut exactly at the seams."""
    rng = np.random.default_rng(seed)
    photo = random_cells(rng, 60, 640, 480)
    whole = int(edge_mask(photo, "frame", 0, 0, 640, 480, margin=0).sum())
    totals = {"frame": 0, "all": 0}
    for x in range(0, 640, 160):
        for y in range(0, 480, 160):
            clipped = np.clip(photo.xyxy, [x, y, x, y], [x + 160, y + 160, x + 160, y + 160])
            inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
            field = boxes(clipped[inside])
            for rule in totals:
                totals[rule] += int(edge_mask(field, rule, x, y, x + 160, y + 160, margin=0).sum())
    assert totals["frame"] == whole
    assert totals["all"] > len(photo)
