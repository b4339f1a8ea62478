"""Read a YOLO-format folder (`images/<split>/` + `labels/<split>/`, or one folder of image/label pairs)."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from ..core.errors import InputError
from ..core.images import IMAGE_SUFFIXES, read_image_size
from .labels import read_yolo_rows
from .voc import Box, Defect, ImageAnnotation

EDGE_SLACK = 0.01  # normalised: labelling tools round boxes at the border a little past it


def split_folders(root: Path) -> dict[str, tuple[Path, Path]] | None:
    """(images, labels) folder per split of an `images/<split>` + `labels/<split>` layout; None for a flat folder."""
    found = {s: (root / "images" / s, root / "labels" / s) for s in ("train", "val", "test") if (root / "images" / s).is_dir()}
    return found or None


def declared_names(root: Path) -> list[str] | None:
    """Class names in index order from the folder's classes.txt or data.yaml (`names:`), if it has one."""
    if (root / "classes.txt").is_file():
        return [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
    if (root / "data.yaml").is_file():
        try:
            names = (yaml.safe_load((root / "data.yaml").read_text()) or {}).get("names")
        except yaml.YAMLError as e:
            raise InputError(root / "data.yaml", f"malformed YAML ({e.__class__.__name__})") from None
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names)]
        if isinstance(names, list):
            return [str(n) for n in names]
    return None


def read_pair(image: Path, label: Path, names: list[str], class_of: dict[str, str]) -> tuple[ImageAnnotation, list[Defect]]:
    """One image and its label file as named pixel boxes; exact repeated lines dropped; a box past the edge is an error."""
    width, height = read_image_size(image)
    ann, defects = ImageAnnotation(image.stem, image, width, height), []
    rel = f"{label.parent.name}/{label.name}"
    if not label.is_file():
        defects.append(Defect(rel, None, "no label file", "counted as a field with no cells"))
        return ann, defects
    rows = read_yolo_rows(label)
    seen: set[tuple[float, ...]] = set()
    for n, row in enumerate(rows, 1):
        k, cx, cy, w, h = (float(v) for v in row)
        if tuple(row) in seen:
            defects.append(Defect(rel, n, "exact repeat of an earlier line", "dropped"))
            continue
        seen.add(tuple(row))
        if not (k == int(k) and 0 <= k < len(names)):
            raise InputError(label, f"line {n}: class {k:g} outside 0..{len(names) - 1} ({', '.join(names)})")
        if names[int(k)] not in class_of:
            raise InputError(label, f"line {n}: class {names[int(k)]!r} is not one of the output classes; map it with "
                                    "{classes}")
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if w <= 0 or h <= 0 or x1 < -EDGE_SLACK or y1 < -EDGE_SLACK or x2 > 1 + EDGE_SLACK or y2 > 1 + EDGE_SLACK:
            raise InputError(label, f"line {n}: box {cx:g} {cy:g} {w:g} {h:g} lies outside the image (normalised 0..1)")
        ann.boxes.append(Box(class_of[names[int(k)]], max(0.0, x1) * width, max(0.0, y1) * height,
                             min(1.0, x2) * width, min(1.0, y2) * height))
    return ann, defects


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_yolo_folder(
    root: Path, names: list[str] | None, class_of: dict[str, str], seed: int = 0, val_frac: float = 0.2,
    test_frac: float = 0.0,
) -> tuple[dict[str, list[ImageAnnotation]], list[Defect], list[str]]:
    """Annotations per split, defects, and the class names in the files' index order.

    `names`: the files' class order (from `--classes`); else the folder's classes.txt / data.yaml; else an error.
    A flat folder of pairs is split by a seeded shuffle (`val_frac`, `test_frac`).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "source folder does not exist")
    names = names or declared_names(root)
    if not names:
        raise InputError(root, "YOLO labels without class names: give the files' class order with {classes} "
                               "(e.g. WBC,RBC,Platelets) or put a classes.txt in the folder")
    layout = split_folders(root)
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    if layout:
        for split, (images, labels) in layout.items():
            pairs[split] = [(p, labels / f"{p.stem}.txt") for p in _images_in(images)]
    else:
        flat = [(p, p.with_suffix(".txt")) for p in _images_in(root)]
        if not flat and (root / "images").is_dir():  # images/ and labels/ without splits (CVAT, Roboflow exports)
            flat = [(p, root / "labels" / f"{p.stem}.txt") for p in _images_in(root / "images")]
        random.Random(seed).shuffle(flat)
        n_val, n_test = round(len(flat) * val_frac), round(len(flat) * test_frac)
        pairs = {"train": sorted(flat[n_val + n_test:]), "val": sorted(flat[:n_val]), "test": sorted(flat[n_val:n_val + n_test])}
    if not any(pairs.values()):
        raise InputError(root, "holds no images (images/<split>/, images/ beside labels/, or image files beside their "
                               ".txt labels)")
    out: dict[str, list[ImageAnnotation]] = {}
    defects: list[Defect] = []
    for split, items in pairs.items():
        out[split] = []
        for image, label in items:
            ann, found = read_pair(image, label, names, class_of)
            out[split].append(ann)
            defects += found
    return out, defects, names
