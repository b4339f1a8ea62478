"""Image sources that read any region as RGB uint8: photos whole, tiled TIFF tile by tile, OpenSlide slides."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError

LOGGER = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")
OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
SUPPORTED_SUFFIXES = PHOTO_SUFFIXES + TIFF_SUFFIXES + OPENSLIDE_SUFFIXES
IMAGE_SUFFIXES = PHOTO_SUFFIXES + TIFF_SUFFIXES  # what VOC folders and dataset splits hold

Image.MAX_IMAGE_PIXELS = None  # sizes are checked in open_image: large photos go through libvips, not Pillow
TILE_CACHE_BYTES = 128 * 2**20  # decoded TIFF tiles kept: over two rows of 512 px tiles across a 30k slide
PHOTO_PIXEL_LIMIT = 40_000_000  # PNG/JPEG/BMP decoded whole up to this (120 MB as RGB); larger ones through libvips


class ImageSource(Protocol):
    path: Path

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 array (h, w, 3) of the region; the region lies inside the image."""

    def close(self) -> None: ...


DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # what Pillow raises for a bad file


def corrupt(path: Path, error: BaseException) -> InputError:
    return InputError(path, f"unreadable or corrupt image ({error})")


def read_image_size(path: Path) -> tuple[int, int]:
    """Decode the image fully (catches truncated files) and return (width, height)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except DECODE_ERRORS as e:
        raise corrupt(path, e) from None


def to_rgb8(a: np.ndarray) -> np.ndarray:
    """Grey, RGBA or 16-bit arrays as RGB uint8."""
    if a.dtype != np.uint8:
        a = (a.astype(np.float32) / max(1.0, float(np.iinfo(a.dtype).max if a.dtype.kind in "ui" else a.max())) * 255)
        a = a.clip(0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] >= 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def pil_to_rgb8(im: Image.Image, path: Path | None = None) -> np.ndarray:
    """Any Pillow image as RGB uint8 by its real range: 16-bit grey is scaled from 65,535 (not clipped at 255),
    palette, RGBA, CMYK and 1-bit go through Pillow's conversions, and EXIF orientation is applied."""
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im) or im
    if im.mode in GREY_MODES:
        LOGGER.warning("%s is greyscale: counted, but the model tells WBC from platelets partly by stain colour",
                       path or "image")
    if im.mode.startswith("I;16"):
        return to_rgb8(np.asarray(im).astype(np.uint16))
    if im.mode == "I":  # 32-bit ints; 16-bit PNGs open this way in some Pillow versions
        a = np.asarray(im)
        return to_rgb8(a.astype(np.uint16) if a.min() >= 0 and a.max() <= 65535 else a.astype(np.uint32))
    if im.mode == "F":
        a = np.asarray(im, np.float32)
        return to_rgb8(np.clip(a / max(1e-9, float(a.max())) * 255, 0, 255).astype(np.uint8))
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    return to_rgb8(np.asarray(im))


@dataclass
class PhotoSource:
    """A photo decoded once into memory (JPEG, PNG, BMP, small or untiled TIFF)."""

    path: Path
    array: np.ndarray
    mpp: float | None = None  # micrometres per pixel, where the file records it

    @property
    def width(self) -> int:
        return self.array.shape[1]

    @property
    def height(self) -> int:
        return self.array.shape[0]

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.array[y : y + h, x : x + w]

    def close(self) -> None:
        pass


class VipsSource:
    """A PNG, JPEG or BMP too large to decode whole, read region by region through libvips.

    Formats without random access are decoded once by libvips into a temporary file on disc (above its
    100 MB threshold), so memory stays flat whatever the image's size."""

    def __init__(self, path: Path, image):
        self.path, self._im = path, image
        self.width, self.height = image.width, image.height

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        import pyvips  # type: ignore[import-untyped]

        try:
            return to_rgb8(self._im.crop(x, y, w, h).numpy())
        except pyvips.Error as e:
            raise InputError(self.path, f"unreadable or corrupt image ({str(e).strip().splitlines()[0]})") from None

    def close(self) -> None:
        self._im = None


def _open_vips(path: Path, size: tuple[int, int]) -> ImageSource:
    try:
        import pyvips  # type: ignore[import-untyped]
    except (ImportError, OSError):
        raise InputError(path, f"{size[0]} x {size[1]} px is over the {PHOTO_PIXEL_LIMIT / 1e6:.0f} MP that are decoded "
                               "whole; reading it in bounded memory needs pyvips (pip install pyvips pyvips-binary)") from None
    try:
        im = pyvips.Image.new_from_file(str(path), access="random", fail=True)
        if im.interpretation == "cmyk":
            im = im.colourspace("srgb")
        if im.hasalpha():
            im = im.flatten(background=[255] * (im.bands - 1))
    except pyvips.Error as e:
        raise InputError(path, f"unreadable or corrupt image ({str(e).strip().splitlines()[0]})") from None
    return VipsSource(path, im)


class TiledTiffSource:
    """A tiled (or pyramidal) TIFF; only the tiles a region touches are decoded, from level 0 or, for a region
    wanted smaller, from the pyramid level closest above the resolution wanted."""

    def __init__(self, path: Path, tif, page):
        self.path, self._tif, self._page = path, tif, page
        self.width, self.height = page.imagewidth, page.imagelength
        self.mpp = tiff_mpp(page)
        self._cache: OrderedDict[tuple[int, int], np.ndarray | None] = OrderedDict()
        self._cached = 0  # bytes held by the cache
        self._levels = [(1.0, page)]  # (downsample, tiled page) of each usable pyramid level
        for level in tif.series[0].levels[1:]:
            lp = level.keyframe
            if lp.is_tiled and lp.planarconfig == 1 and lp.imagedepth == 1 and lp.imagewidth > 0:
                self._levels.append((self.width / lp.imagewidth, lp))

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self._read(self._page, x, y, w, h)

    def read_scaled(self, x: int, y: int, w: int, h: int, factor: float) -> np.ndarray:
        # enlarged (factor > 1): from level 0, the finest there is
        ds, page = max(((d, p) for d, p in self._levels if d <= max(1.0, 1 / factor) + 1e-9), key=lambda dp: dp[0])
        if ds == 1.0:
            region = self._read(page, x, y, w, h)
        else:
            lx, ly = int(x / ds), int(y / ds)
            lw = max(1, min(page.imagewidth - lx, math.ceil((x + w) / ds) - lx))
            lh = max(1, min(page.imagelength - ly, math.ceil((y + h) / ds) - ly))
            region = self._read(page, lx, ly, lw, lh)
        return resize(region, scaled_size(w, h, factor))

    def _tile(self, page, index: int) -> np.ndarray | None:
        """A decoded tile, from a small cache: overlapping reads (tiles overlap by 40 %) need most tiles two to
        four times, and decoding dominates reading a compressed TIFF."""
        key = (id(page), index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        fh = self._tif.filehandle
        fh.seek(page.dataoffsets[index])
        data = fh.read(page.databytecounts[index])
        decoded, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        tile = None if decoded is None else to_rgb8(decoded[0])
        self._cache[key] = tile
        self._cached += 0 if tile is None else tile.nbytes
        while self._cached > TILE_CACHE_BYTES:
            _, old = self._cache.popitem(last=False)
            self._cached -= 0 if old is None else old.nbytes
        return tile

    def _read(self, page, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.zeros((h, w, 3), np.uint8)
        tw, th, width, height = page.tilewidth, page.tilelength, page.imagewidth, page.imagelength
        across = math.ceil(width / tw)
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                tile = self._tile(page, ty * across + tx)
                if tile is None:
                    continue  # an empty tile reads as black
                x0, y0 = tx * tw, ty * th
                ix0, iy0 = max(x, x0), max(y, y0)
                ix1, iy1 = min(x + w, x0 + tw, width), min(y + h, y0 + th, height)
                out[iy0 - y : iy1 - y, ix0 - x : ix1 - x] = tile[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        return out

    def close(self) -> None:
        self._tif.close()


class OpenSlideSource:
    """A whole-slide image through OpenSlide (the optional `openslide` extra)."""

    def __init__(self, path: Path, slide):
        self.path, self._slide = path, slide
        props = slide.properties  # QuPath shows a slide from its bounds origin (QuPath issue 820)
        self.origin = (float(props.get("openslide.bounds-x", 0) or 0), float(props.get("openslide.bounds-y", 0) or 0))
        mpp = props.get("openslide.mpp-x")
        self.mpp = float(mpp) if mpp else None
        self.width, self.height = slide.dimensions

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return to_rgb8(np.asarray(self._slide.read_region((x, y), 0, (w, h)).convert("RGB")))

    def read_scaled(self, x: int, y: int, w: int, h: int, factor: float) -> np.ndarray:
        """The region resampled by `factor`, read from the pyramid level closest above the target resolution."""
        level = self._slide.get_best_level_for_downsample(1 / factor) if factor < 1 else 0
        ds = float(self._slide.level_downsamples[level])
        lw, lh = max(1, math.ceil(w / ds)), max(1, math.ceil(h / ds))
        region = to_rgb8(np.asarray(self._slide.read_region((x, y), level, (lw, lh)).convert("RGB")))
        return resize(region, scaled_size(w, h, factor))

    def close(self) -> None:
        self._slide.close()


def scaled_size(w: int, h: int, factor: float) -> tuple[int, int]:
    """(width, height) of a w x h region resampled by `factor`."""
    return max(1, round(w * factor)), max(1, round(h * factor))


def resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB array resampled to (width, height): pixel-area averaging to shrink, bilinear to enlarge (as Ultralytics
    loads its training images)."""
    import cv2

    if (a.shape[1], a.shape[0]) == size:
        return a
    shrink = size[0] < a.shape[1]
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def read_scaled(src: ImageSource, x: int, y: int, w: int, h: int, factor: float) -> np.ndarray:
    """Region (x, y, w, h) of `src` resampled by `factor` (pyramidal slides read from their best level)."""
    if abs(factor - 1) < 1e-9:
        return src.read(x, y, w, h)
    reader = getattr(src, "read_scaled", None)
    if reader is not None:
        return reader(x, y, w, h, factor)
    return resize(src.read(x, y, w, h), scaled_size(w, h, factor))


def tiff_mpp(page) -> float | None:
    """Micrometres per pixel from a TIFF page's resolution tags, read by tifffile (`TiffPage.get_resolution` in
    micrometres), if an absolute unit (inch or centimetre) is recorded."""
    import tifffile

    if "XResolution" not in page.tags or page.resolutionunit not in (tifffile.RESUNIT.INCH, tifffile.RESUNIT.CENTIMETER):
        return None
    per_um = page.get_resolution(tifffile.RESUNIT.MICROMETER)[0]
    return round(1 / per_um, 6) if per_um > 0 else None


OME_UNITS = {"nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


def ome_mpp(tif) -> float | None:
    """Micrometres per pixel from the first image's PhysicalSizeX in the OME-XML (parsed by tifffile's xml2dict),
    in its unit (micrometres by default), if recorded."""
    import tifffile

    xml = getattr(tif, "ome_metadata", None) if getattr(tif, "is_ome", False) else None
    if not xml:
        return None
    image = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    size, factor = pixels.get("PhysicalSizeX"), OME_UNITS.get(str(pixels.get("PhysicalSizeXUnit", "µm")))
    value = float(size) * factor if size is not None and factor else 0.0
    return round(value, 6) if value > 0 else None


def _open_tiff(path: Path) -> ImageSource:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
        page = tif.series[0].levels[0].keyframe
    except Exception as e:  # tifffile raises several types for broken files
        raise InputError(path, f"unreadable or corrupt TIFF ({type(e).__name__}: {e})") from None
    if page.is_tiled and page.planarconfig == 1 and page.imagedepth == 1:
        source = TiledTiffSource(path, tif, page)
        source.mpp = ome_mpp(tif) or source.mpp
        return source
    try:
        array = to_rgb8(tif.series[0].levels[0].asarray())
        mpp = ome_mpp(tif) or tiff_mpp(page)
    except Exception as e:
        raise InputError(path, f"unreadable or corrupt TIFF ({type(e).__name__}: {e})") from None
    finally:
        tif.close()
    return PhotoSource(path, array, mpp)


def _open_openslide(path: Path) -> ImageSource:
    try:
        import openslide
    except ImportError:
        raise InputError(path, "slide format needs OpenSlide: pip install 'bccd-yolo[openslide]'") from None
    try:
        return OpenSlideSource(path, openslide.OpenSlide(str(path)))
    except openslide.OpenSlideError as e:
        raise InputError(path, f"unreadable slide ({e})") from None


def open_image(path: Path) -> ImageSource:
    """Open any supported image; errors name the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(path, "file not found")
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(path, f"unsupported file type {suffix or '(none)'}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if suffix in TIFF_SUFFIXES:
        return _open_tiff(path)
    if suffix in OPENSLIDE_SUFFIXES:
        return _open_openslide(path)
    try:
        with Image.open(path) as im:  # reads the header only
            if im.width * im.height > PHOTO_PIXEL_LIMIT:
                return _open_vips(path, im.size)
            im.load()
            return PhotoSource(path, pil_to_rgb8(im, path))
    except DECODE_ERRORS as e:
        raise corrupt(path, e) from None


def list_images(paths: list[Path]) -> list[Path]:
    """Expand folders into their supported images (sorted); files are kept as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in SUPPORTED_SUFFIXES)
            if not found:
                raise InputError(p, "folder holds no supported images")
            out += found
        else:
            out.append(p)
    return out


PAD_VALUE = 114  # Ultralytics' letterbox grey


def pad_to_stride(images: list[np.ndarray], stride: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Every image padded at the bottom and right to one (h, w), the smallest multiple of `stride` holding them
    all, so box coordinates stay the image's own."""
    h = -(-max(im.shape[0] for im in images) // stride) * stride
    w = -(-max(im.shape[1] for im in images) // stride) * stride
    out = []
    for im in images:
        if im.shape[:2] != (h, w):
            canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
            canvas[: im.shape[0], : im.shape[1]] = im
            im = canvas
        out.append(im)
    return out, (h, w)
