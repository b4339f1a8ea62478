"""Where cells can be: a foreground mask from a low-resolution read, so tiles of bare glass are never predicted.

Glass and slide background are bright, colourless and wide; stained cells are not. On a thumbnail, glass is
what is at most GLASS_SATURATION in saturation (max - min of R, G, B) and under the Otsu threshold of the
saturation histogram (OpenCV), and what survives a morphological opening with a disc of one red
cell: plasma between the cells of a smear is colourless too, but narrower than a cell, and pale red cells
(BCCD's are barely pink: saturation 20-35 against plasma's 5) stay foreground. Everything else, dilated by
two thumbnail pixels, is foreground. Tinted glass (over GLASS_SATURATION) is not skipped: counting it costs
time, skipping a cell costs a count; so is an image with no colour at all (greyscale), whose cells saturation
cannot tell from glass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.images import ImageSource, read_scaled, resize

THUMB_SIDE = 1024  # px, the thumbnail's long side: a 10k slide at ~10x reduction, a red cell still ~10 px
CHUNK = 1024  # px of the input read at a time for the thumbnail, so memory stays flat on any slide size
GLASS_SATURATION = 12  # most saturation (0-255) of glass; BCCD's plasma is ~5, its palest red cells ~20
CELL_PIXELS = 8  # a red cell's diameter on the thumbnail, at most
MIN_BACKGROUND = 0.05  # share of the thumbnail: less glass than this is not worth a mask
# an image whose thumbnail is not coloured beyond glass's saturation even in its most saturated 0.5 %, yet not plain
# either (its 0.5 % furthest from its median grey differ by more than that): a greyscale scan, all of which would be
# taken for glass and skipped (0 cells counted), gets no mask. Plain colourless glass is still skipped.
COLOURED_PERCENTILE = 99.5


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


def glass_of(thumb: np.ndarray, cell_px: float) -> np.ndarray | None:
    """Where an RGB thumbnail (whose red cells are about `cell_px` of its pixels across) shows glass: colourless
    and wider than a red cell. None for an image with no colour at all (a greyscale scan), whose cells cannot be
    told from glass by colour. OpenCV's Otsu and opening: scikit-image's take a third of a second to import, more
    than counting a photo."""
    import cv2

    rgb = thumb.astype(np.int16)
    sat = (rgb.max(axis=2) - rgb.min(axis=2)).astype(np.uint8)
    if np.percentile(sat, COLOURED_PERCENTILE) <= GLASS_SATURATION:
        grey = rgb.mean(axis=2)
        if np.percentile(np.abs(grey - np.median(grey)), COLOURED_PERCENTILE) > GLASS_SATURATION:
            return None
    otsu = cv2.threshold(sat.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]
    limit = GLASS_SATURATION if sat.min() == sat.max() else min(GLASS_SATURATION, otsu)
    return cv2.morphologyEx((sat <= limit).astype(np.uint8), cv2.MORPH_OPEN, disc(max(1, round(cell_px / 2)))).astype(bool)


def disc(r: int) -> np.ndarray:
    """A disc of radius `r` px as a structuring element (scikit-image's `disk`)."""
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def foreground(src: ImageSource, cell_px: float, side: int = THUMB_SIDE) -> Foreground | None:
    """The foreground of `src` (whose red cells are about `cell_px` input pixels across), or None when it has
    no glass to skip."""
    import cv2

    # no finer than CELL_PIXELS per red cell: enough to see cells, and the opening's disc stays small
    side = min(side, max(16, round(max(src.width, src.height) * CELL_PIXELS / cell_px)))
    thumb, s = thumbnail(src, side)
    glass = glass_of(thumb, cell_px * s)
    if glass is None or glass.mean() < MIN_BACKGROUND:
        return None
    # two pixels of slack: a cell's rim can fall in a thumbnail pixel that is mostly glass, next to one that is not
    return Foreground(cv2.dilate((~glass).astype(np.uint8), disc(2)).astype(bool), s)
