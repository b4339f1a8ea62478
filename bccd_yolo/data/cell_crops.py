"""White-cell fields -> crops of one physical size: what the differential classifier sees.

A crop is a square `crop_um` micrometres across centred on a cell, resampled to `out_px` pixels, so a BCCD
photo (0.075 um/px), a PBC field (0.099 um/px) and a slide give the classifier the same view. Training crops
come from a folder-per-class dataset of fields each centred on one typed cell (`pbc-wbc-types`); counting
crops are centred on each white-cell box (`count.differential`). Both go through `cell_crop`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..core.errors import InputError
from ..core.images import IMAGE_SUFFIXES

CROP_UM = 25.0  # a monocyte, the largest normal white cell, is up to ~20 um across; a margin of its neighbours
CROP_PX = 192  # stored crops: 0.13 um/px, finer than the classifier's input (it resizes to its imgsz)
SPLITS = ("train", "val")
MANIFEST = "crops.json"


@dataclass(frozen=True)
class CropGeometry:
    """How crops were cut: their physical side, the scale of the fields they came from, their stored size."""

    crop_um: float
    mpp: float
    out_px: int


def crop_side(crop_um: float, mpp: float) -> int:
    """A crop's side in the pixels of an image at `mpp` um/px."""
    return max(1, round(crop_um / mpp))


def read_bgr(path: Path) -> np.ndarray:
    """A field as OpenCV decodes it (BGR), or one line naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(path, "cannot be read as an image")
    return image


def centre_crop(image: np.ndarray, mpp: float, crop_um: float = CROP_UM, out_px: int = CROP_PX) -> np.ndarray:
    """The crop of a field centred on its typed cell (as pbc-wbc-types' fields are)."""
    h, w = image.shape[:2]
    return cell_crop(image, w / 2, h / 2, mpp, crop_um, out_px)


def cell_crop(image: np.ndarray, cx: float, cy: float, mpp: float, crop_um: float = CROP_UM,
              out_px: int = CROP_PX) -> np.ndarray:
    """A square `crop_um` across centred on (cx, cy) of an image at `mpp` um/px, resampled to `out_px`.
    Where the square leaves the image it is filled by reflecting the smear (a constant colour would be a
    frame the classifier never saw in training)."""
    side = crop_side(crop_um, mpp)
    h, w = image.shape[:2]
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + side, y0 + side
    inner = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if inner.size == 0:
        raise ValueError(f"crop centre ({cx:.0f}, {cy:.0f}) lies outside the {w}x{h} image")
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y1 - h), max(0, x1 - w)
    if top or left or bottom or right:
        inner = cv2.copyMakeBorder(inner, top, bottom, left, right, cv2.BORDER_REFLECT_101
                                   if min(inner.shape[:2]) > max(top, bottom, left, right) else cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side > out_px else cv2.INTER_LINEAR
    return cv2.resize(inner, (out_px, out_px), interpolation=interpolation)


@dataclass(frozen=True)
class CropDataset:
    """A folder-per-class crop dataset as written: where, how cut, and how many crops per split and class."""

    root: Path
    geometry: CropGeometry
    classes: list[str]
    counts: dict[str, dict[str, int]]
    source: str

    def write_manifest(self) -> None:
        body = {"source": self.source, "geometry": asdict(self.geometry), "classes": self.classes, "counts": self.counts}
        (self.root / MANIFEST).write_text(json.dumps(body, indent=2) + "\n")

    @classmethod
    def read(cls, root: Path) -> "CropDataset | None":
        try:
            body = json.loads((root / MANIFEST).read_text())
            return cls(root, CropGeometry(**body["geometry"]), list(body["classes"]), body["counts"], body["source"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def typed_fields(src: Path) -> dict[str, dict[str, list[Path]]]:
    """{split: {class: [field images]}} of a folder-per-class dataset (`train/<class>/*.jpg`, `val/<class>/...`);
    both splits must hold the same classes."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(src, "not a folder")
    out: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        folder = src / split
        if not folder.is_dir():
            raise InputError(folder, "missing: a typed-cell dataset holds train/<class>/ and val/<class>/ folders")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        out[split] = {c: sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
        empty = [c for c, files in out[split].items() if not files]
        if len(classes) < 2 or empty:
            raise InputError(folder, f"needs at least two class folders with images (empty: {', '.join(empty) or 'none'})")
    if list(out["train"]) != list(out["val"]):
        raise InputError(src, f"train and val hold different classes: {sorted(set(out['train']) ^ set(out['val']))}")
    return out


def build_crops(src: Path, out: Path, geometry: CropGeometry,
                progress: Callable[[int, int], None] | None = None) -> CropDataset:
    """Crop every field of `src` at its centre (each field is centred on its typed cell) into `out`, written
    under a temporary name and moved into place whole; an existing `out` with the same manifest is reused."""
    out = Path(out)
    found = CropDataset.read(out)
    if found is not None and found.geometry == geometry and found.source == str(Path(src).resolve()):
        return found
    if out.exists():
        raise InputError(out, "exists and holds other crops (another source or geometry): pass another folder")
    fields = typed_fields(src)
    total = sum(len(f) for per in fields.values() for f in per.values())
    staged = out.with_name(out.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    done = 0
    counts: dict[str, dict[str, int]] = {}
    for split, per_class in fields.items():
        counts[split] = {}
        for cls, files in per_class.items():
            (staged / split / cls).mkdir(parents=True, exist_ok=True)
            for f in files:
                try:
                    image = read_bgr(f)
                except InputError:
                    shutil.rmtree(staged, ignore_errors=True)
                    raise
                crop = centre_crop(image, geometry.mpp, geometry.crop_um, geometry.out_px)
                cv2.imwrite(str(staged / split / cls / f"{f.stem}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
                done += 1
                if progress:
                    progress(done, total)
            counts[split][cls] = len(files)
    dataset = CropDataset(staged, geometry, list(fields["train"]), counts, str(Path(src).resolve()))
    dataset.write_manifest()
    os.replace(staged, out)
    return CropDataset(out, geometry, dataset.classes, counts, dataset.source)
