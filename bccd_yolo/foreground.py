"""Where cells can be: a foreground mask from a low-resolution read, so tiles of bare glass are never predicted.

Glass and slide background are bright and colourless; stained cells are not. Saturation (max - min of R, G, B)
is thresholded by Otsu's method (scikit-image) on a thumbnail, and the mask is used only when the image
really has two such populations: a plain background (mean saturation under BACKGROUND_SATURATION) clearly
apart from the rest. A photo covered with cells has no such background and is predicted whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .images import ImageSource, read_scaled, resize

THUMB_SIDE = 1024  # px, the thumbnail's long side: a 10k slide at ~10x reduction, a 640 px cell still ~60 px
CHUNK = 4096  # px of the input read at a time for the thumbnail, so memory stays flat on any slide size
BACKGROUND_SATURATION = 20  # mean saturation (0-255) of what can count as bare glass or background
SEPARATION = 20  # the foreground's mean saturation must exceed the background's by this much
MIN_BACKGROUND = 0.05  # share of the thumbnail: less background than this is not worth a mask


@dataclass(frozen=True)
class Foreground:
    """A mask over the image at `scale` (thumbnail px per input px)."""

    mask: np.ndarray
    scale: float

    def touches(self, x: int, y: int, w: int, h: int) -> bool:
        """Whether the region (input pixels) holds any foreground, one thumbnail pixel of slack on each side."""
        x0, y0 = max(0, math.floor(x * self.scale) - 1), max(0, math.floor(y * self.scale) - 1)
        x1, y1 = math.ceil((x + w) * self.scale) + 1, math.ceil((y + h) * self.scale) + 1
        return bool(self.mask[y0:y1, x0:x1].any())


def thumbnail(src: ImageSource, side: int = THUMB_SIDE) -> tuple[np.ndarray, float]:
    """The image shrunk so its long side is at most `side`, read CHUNK px at a time (pyramidal slides from a
    low level), and the scale used."""
    s = min(1.0, side / max(src.width, src.height))
    out = np.zeros((max(1, round(src.height * s)), max(1, round(src.width * s)), 3), np.uint8)
    for y in range(0, src.height, CHUNK):
        for x in range(0, src.width, CHUNK):
            w, h = min(CHUNK, src.width - x), min(CHUNK, src.height - y)
            tx, ty = round(x * s), round(y * s)
            tw, th = min(out.shape[1] - tx, max(1, round((x + w) * s) - tx)), min(out.shape[0] - ty, max(1, round((y + h) * s) - ty))
            if tw <= 0 or th <= 0:
                continue
            part = resize(read_scaled(src, x, y, w, h, s), (tw, th))  # chunk edges rounded like the whole
            out[ty : ty + th, tx : tx + tw] = part
    return out, s


def foreground(src: ImageSource, side: int = THUMB_SIDE) -> Foreground | None:
    """The foreground of `src`, or None when it has no plain background to skip."""
    from skimage.filters import threshold_otsu
    from skimage.morphology import dilation, disk

    thumb, s = thumbnail(src, side)
    rgb = thumb.astype(np.int16)
    sat = (rgb.max(axis=2) - rgb.min(axis=2)).astype(np.uint8)
    if sat.min() == sat.max():
        return None
    background = sat <= threshold_otsu(sat)
    if background.mean() < MIN_BACKGROUND or background.all():
        return None
    bg, fg = float(sat[background].mean()), float(sat[~background].mean())
    if bg > BACKGROUND_SATURATION or fg - bg < SEPARATION:
        return None
    # two pixels of slack: a cell's rim can fall in a thumbnail pixel that is mostly glass, next to one that is not
    return Foreground(dilation(~background, disk(2)), s)
