"""YOLO label files (`class cx cy w h`, normalised to the image), written and read here only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError
from .voc import Box, ImageAnnotation


def yolo_label_lines(ann: ImageAnnotation, names: tuple[str, ...]) -> list[str]:
    """`class cx cy w h`, normalised to the image size, 6 decimals."""
    index = {n: i for i, n in enumerate(names)}
    w, h = ann.width, ann.height
    return [
        f"{index[b.name]} {(b.x1 + b.x2) / 2 / w:.6f} {(b.y1 + b.y2) / 2 / h:.6f} {b.width / w:.6f} {b.height / h:.6f}"
        for b in ann.boxes
    ]


def boxes_as_detections(boxes: list[Box], names: tuple[str, ...] | list[str]) -> Detections:
    """Named pixel boxes as Detections (score 1), class indices in `names` order; boxes of other classes are left out."""
    kept = [b for b in boxes if b.name in names]
    xyxy = np.array([[b.x1, b.y1, b.x2, b.y2] for b in kept], np.float32).reshape(-1, 4)
    return Detections(xyxy, np.ones(len(kept), np.float32), np.array([list(names).index(b.name) for b in kept], np.int64))


def read_yolo_rows(path: Path) -> np.ndarray:
    """(n, 5) rows of class, cx, cy, w, h; an absent or empty file has none."""
    if not Path(path).is_file() or not Path(path).stat().st_size:
        return np.zeros((0, 5))
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()[:5]])
            if len(rows[-1]) != 5:
                raise ValueError
        except ValueError:
            raise InputError(path, f"line {n}: expected 'class cx cy w h', found {line.strip()!r}") from None
    return np.array(rows, float).reshape(-1, 5)


def read_yolo_detections(path: Path, width: int, height: int) -> Detections:
    """A label file as pixel boxes (score 1)."""
    rows = read_yolo_rows(path)
    c, cx, cy, bw, bh = rows.T
    xyxy = np.stack([(cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width, (cy + bh / 2) * height], 1)
    return Detections(xyxy.astype(np.float32).reshape(-1, 4), np.ones(len(rows), np.float32), c.astype(np.int64))


def read_yolo_boxes(path: Path, names: tuple[str, ...], width: int, height: int) -> list[Box]:
    """A label file as named pixel boxes, clipped to the image; class indices follow `names`."""
    rows = read_yolo_rows(path)
    boxes = []
    for n, (k, cx, cy, w, h) in enumerate(rows, 1):
        if not (k == int(k) and 0 <= k < len(names)):
            raise InputError(path, f"line {n}: class {k:g} outside 0..{len(names) - 1} ({', '.join(names)})")
        x, y, bw, bh = cx * width, cy * height, w * width, h * height
        boxes.append(Box(names[int(k)], max(0.0, x - bw / 2), max(0.0, y - bh / 2), min(width, x + bw / 2),
                         min(height, y + bh / 2)))
    return boxes
