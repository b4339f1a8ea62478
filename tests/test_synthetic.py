"""Synthetic canvases: photos placed where paste_canvas says, and which boxes lie away from their frames."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bccd_yolo.measure.synthetic import away_from_seams, paste_canvas


def photos(tmp_path, n: int) -> list:
    files = []
    for i in range(n):
        f = tmp_path / f"p{i}.png"
        Image.fromarray(np.full((48, 64, 3), 10 * (i + 1), np.uint8)).save(f)
        files.append(f)
    return files


def test_photos_land_where_placed_without_overlap(tmp_path):
    files = photos(tmp_path, 6)
    canvas, placed = paste_canvas(files, 300, 200, seed=3, gaps=(5, 20))
    assert len(placed) >= 4
    for i, (f, x, y) in enumerate(placed):
        assert (canvas[y : y + 48, x : x + 64] == 10 * (files.index(f) + 1)).all(), f"photo {i} overwritten or misplaced"


def test_boxes_away_from_seams(tmp_path):
    (f,) = photos(tmp_path, 1)
    placed = [(f, 100, 50)]  # the photo covers x 100-164, y 50-98
    boxes = np.array([
        [110, 60, 130, 80],   # inside, 10 px from the frame
        [101, 60, 120, 80],   # cut by the left frame (1 px in)
        [150, 60, 163, 80],   # 1 px from the right frame
        [10, 10, 30, 30],     # on no photo
        [60, 30, 72, 40],     # inside once the canvas is halved: the photo covers 50-82, 25-49
    ], np.float32)
    assert away_from_seams(boxes, placed, margin=5).tolist() == [True, False, False, False, False]
    assert away_from_seams(boxes, placed, margin=2, scale=0.5).tolist() == [False, False, False, False, True]
