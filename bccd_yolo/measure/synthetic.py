"""Synthetic slides: real photos pasted at uneven offsets onto one canvas, to check tiled counting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def paste_canvas(files: list[Path], width: int, height: int, seed: int = 0, background: int = 230,
                 gaps: tuple[int, int] = (7, 90)) -> tuple[np.ndarray, list[tuple[Path, int, int]]]:
    """Rows of photos separated by random gaps in [gaps[0], gaps[1]) pixels, rows starting at uneven offsets.

    Returns the RGB canvas and (file, x, y) of each photo placed.
    """
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), background, np.uint8)
    placed: list[tuple[Path, int, int]] = []
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    y, k = int(rng.integers(0, 40)) if gaps[1] > 1 else 0, 0
    while k < len(files):
        h_row = 0
        x = int(rng.integers(0, 60)) if gaps[1] > 1 else 0
        while k < len(files) and x + photos[k].shape[1] <= width:
            ph = photos[k]
            if y + ph.shape[0] > height:
                return canvas, placed
            canvas[y : y + ph.shape[0], x : x + ph.shape[1]] = ph
            placed.append((files[k], x, y))
            h_row = max(h_row, ph.shape[0])
            x += ph.shape[1] + int(rng.integers(*gaps))
            k += 1
        if h_row == 0:
            break
        y += h_row + int(rng.integers(*gaps))
    return canvas, placed


def away_from_seams(xyxy: np.ndarray, placed: list[tuple[Path, int, int]], margin: float,
                    scale: float = 1.0) -> np.ndarray:
    """Which boxes (canvas pixels; the canvas resized by `scale`) lie inside one pasted photo, at least `margin`
    canvas pixels from its edges: cells a real slide would have whole, not ones cut by a photo's frame."""
    keep = np.zeros(len(xyxy), bool)
    for f, x, y in placed:
        with Image.open(f) as im:
            w, h = im.size
        x0, y0, x1, y1 = x * scale + margin, y * scale + margin, (x + w) * scale - margin, (y + h) * scale - margin
        keep |= (xyxy[:, 0] >= x0) & (xyxy[:, 1] >= y0) & (xyxy[:, 2] <= x1) & (xyxy[:, 3] <= y1)
    return keep
