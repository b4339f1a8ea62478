"""Several labelled sources -> one dataset, every image kept with its source, every source at one cell scale.

A source is a VOC folder or a YOLO folder. With more than one, each image is written as `<source>__<name>` so
that its source travels with it (`source_of`), and `data.yaml` lists the sources. `same_scale` resamples every
source so its median whole red cell has the first source's size, and centres each field on a canvas of the
largest size, filled with the field's own border colour: Ultralytics resizes every training image to `imgsz` on
its long side, so without it a 360 px field would reach the network with its cells 1.8x larger than counting
ever shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.scale import whole_cell_diameters
from .labels import boxes_as_detections
from .voc import Box, Defect, ImageAnnotation

SEPARATOR = "__"  # <source>__<image stem>
SAME_SCALE_TOLERANCE = 0.02  # a source whose red cells are within 2 % of the reference is written as it is


@dataclass(frozen=True)
class SourceSpec:
    """One `--source [NAME=]PATH` with its own options (`NAME:VALUE` forms of --classes, --annotations, --repeat)."""

    name: str
    path: Path
    classes: str | None = None
    annotations: Path | None = None
    repeat: int = 1

    @staticmethod
    def parse(text: str, index: int) -> "SourceSpec":
        name, sep, path = text.partition("=")
        if not sep:  # named after its folder (BCCD_Dataset -> bccd_dataset)
            path = text
            name = re.sub(r"\W+|_{2,}", "_", Path(text).resolve().name.lower()).strip("_") or f"source{index + 1}"
            name = name if name.isidentifier() else f"s_{name}"
        name = name.strip()
        if not name.isidentifier() or SEPARATOR in name:
            raise InputError(None, f"{text!r}: a source's name is letters, digits and single underscores, e.g. "
                                   "pbc=../shared/txl-pbc-other/pbc", option="source")
        return SourceSpec(name, Path(path))


def per_source(values: list[str], names: list[str], option: str) -> dict[str | None, str]:
    """`NAME:VALUE` entries by source name; a plain VALUE applies to every source without its own (key None)."""
    out: dict[str | None, str] = {}
    for v in values:
        key, sep, rest = v.partition(":")
        if sep and key in names:
            out[key] = rest
        elif sep and key.isidentifier() and len(names) > 1 and "," not in key and "/" not in key:
            raise InputError(None, f"{v!r}: no source named {key!r} (sources: {', '.join(names)})", option=option)
        else:
            out[None] = v
    return out


@dataclass
class SourceData:
    """A read source: its annotations per split and what was repaired while reading."""

    spec: SourceSpec
    format: str
    root: str
    splits: dict[str, list[ImageAnnotation]]
    defects: list[Defect] = field(default_factory=list)
    rbc_px: float | None = None  # median whole red cell, px, train split (else all splits)
    factor: float = 1.0  # resampling applied when written


def source_of(image_name: str, sources: list[str]) -> str:
    """The source an image of a multi-source dataset came from (single-source datasets: the only one)."""
    head, sep, _ = Path(image_name).name.partition(SEPARATOR)
    if sep and head in sources:
        return head
    return sources[0]


def rbc_diameter(data: SourceData, names: tuple[str, ...]) -> float | None:
    """Median diameter of the source's red cells clear of the image edge; its train split unless that has none."""
    if "RBC" not in names:
        return None
    k = names.index("RBC")
    for splits in (["train"], list(data.splits)):
        sizes = [whole_cell_diameters(boxes_as_detections(a.boxes, names), k, a.width, a.height)
                 for s in splits for a in data.splits.get(s, [])]
        flat = np.concatenate(sizes) if sizes else np.zeros(0)
        if len(flat) >= 10:
            return float(np.median(flat))
    return None


def plan_scales(sources: list[SourceData], names: tuple[str, ...]) -> tuple[int, int]:
    """Set each source's rbc_px and resampling factor (to the first source's red cells); return the canvas size:
    the first source's largest image (a field resampled past it is cut to it, as a photo cuts a smear)."""
    for s in sources:
        s.rbc_px = rbc_diameter(s, names)
        if s.rbc_px is None:
            raise InputError(s.root, "fewer than 10 whole red cells labelled: its scale cannot be matched to the others "
                                     "(convert without {same_scale})", option="same_scale")
    ref = sources[0].rbc_px
    assert ref is not None
    for s in sources:
        f = ref / float(s.rbc_px or ref)
        s.factor = 1.0 if abs(f - 1) <= SAME_SCALE_TOLERANCE else f
    first = _all(sources[0])
    return max(a.width for a in first), max(a.height for a in first)


def _all(s: SourceData) -> list[ImageAnnotation]:
    return [a for anns in s.splits.values() for a in anns]


def border_colour(a: np.ndarray) -> np.ndarray:
    """Median RGB of an image's outermost pixels: the slide's background where a field was cut."""
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return np.median(ring, axis=0).astype(np.uint8)


def on_canvas(image: np.ndarray, ann: ImageAnnotation, factor: float, canvas: tuple[int, int]) -> tuple[np.ndarray, ImageAnnotation]:
    """The image resampled by `factor` and centred on a canvas of its border colour (cut where larger); boxes
    moved with it, clipped to the canvas, and dropped where less than 2 px of them is left."""
    from ..core.images import resize, scaled_size

    w, h = scaled_size(ann.width, ann.height, factor)
    cw, ch = canvas
    small = resize(image, (w, h))
    out = np.empty((ch, cw, 3), np.uint8)
    out[:] = border_colour(small)
    x0, y0 = (cw - w) // 2, (ch - h) // 2
    out[max(0, y0):max(0, y0) + min(h, ch), max(0, x0):max(0, x0) + min(w, cw)] = \
        small[max(0, -y0):max(0, -y0) + min(h, ch), max(0, -x0):max(0, -x0) + min(w, cw)]
    sx, sy = w / ann.width, h / ann.height
    boxes = []
    for b in ann.boxes:
        x1, y1 = max(0.0, b.x1 * sx + x0), max(0.0, b.y1 * sy + y0)
        x2, y2 = min(float(cw), b.x2 * sx + x0), min(float(ch), b.y2 * sy + y0)
        if x2 - x1 >= 2 and y2 - y1 >= 2:
            boxes.append(Box(b.name, x1, y1, x2, y2))
    return out, ImageAnnotation(ann.image_id, ann.image_path, cw, ch, boxes)
