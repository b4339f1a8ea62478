"""A zoomable view of a large image for the page: Deep Zoom tiles made by libvips' dzsave (Google layout, as
Leaflet's tile layers read them), never a full-size picture in the browser. The cells are drawn over the tiles
from the image's GeoJSON, in the browser."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

TILE = 256
ZOOM_ABOVE = 4096  # px on the longer side: larger images get a zoomable view; smaller ones are shown whole


@dataclass(frozen=True)
class ZoomView:
    """Where an image's tiles are (`folder`/<level>/<row>/<column>.jpg) and its size; level `levels` is full size."""

    folder: Path
    width: int
    height: int
    levels: int
    tile: int = TILE

    def page(self, url: str) -> dict:
        """What the page needs: the tile URL template and the image's geometry."""
        return {**{k: v for k, v in asdict(self).items() if k != "folder"}, "url": url + "/{z}/{y}/{x}.jpg"}


def needs_zoom(width: int, height: int) -> bool:
    return max(width, height) > ZOOM_ABOVE


def zoom_tiles(image: Path, folder: Path) -> ZoomView | None:
    """The image cut into 256 px JPEG tiles at every power-of-two zoom, read top to bottom once (libvips streams
    it: memory stays flat in the image's size). None where libvips cannot read the file (the page then shows the
    overlay preview)."""
    import pyvips  # type: ignore[import-untyped]

    # libvips' operation cache would keep the pyramid's buffers alive after dzsave (nothing here reuses them): without
    # it and with the heap trimmed, a 10,000 px slide's tiles leave 3 MB behind instead of 60 (peak 66 MB against 72;
    # one malloc arena, as the server has)
    pyvips.cache_set_max(0)
    try:
        im = pyvips.Image.new_from_file(str(image), access="sequential")
        if im.hasalpha():
            im = im.flatten(background=[255, 255, 255])
        if im.interpretation not in ("srgb", "b-w") or im.format != "uchar":
            im = im.colourspace("srgb")
        im.dzsave(str(folder), layout="google", tile_size=TILE, overlap=0, suffix=".jpg[Q=85]",
                  background=[255, 255, 255])
    except pyvips.Error:
        return None
    width, height = im.width, im.height
    del im
    trim_heap()
    levels = max(0, math.ceil(math.log2(max(width, height) / TILE)))
    return ZoomView(folder, width, height, levels)


def trim_heap() -> None:
    """Give the heap libvips freed back to the system (glibc keeps it otherwise)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
