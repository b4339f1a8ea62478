"""Read a COCO instances JSON (the export of CVAT, Label Studio and Roboflow) with its images, by pycocotools.

Images are found by `file_name` relative to the JSON's folder, its `images/` folder, or their common parent.
Category names map to output classes by `--classes` (aliases allowed); crowd annotations are left out and
reported, segmentation-only annotations are boxed by their polygons' extent, and images without annotations are
kept as fields with no cells; each of these is listed as a defect of the conversion.
"""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

from ..core.errors import InputError
from ..core.images import read_image_size
from .voc import Box, Defect, ImageAnnotation


def _load(path: Path):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            return COCO(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise InputError(path, f"not a COCO instances file ({type(e).__name__}: {e})") from None


def _image_path(root: Path, file_name: str, json_path: Path) -> Path:
    for base in (root, root / "images", root.parent, root.parent / "images"):
        candidate = base / file_name
        if candidate.is_file():
            return candidate
    raise InputError(json_path, f"image {file_name!r} is missing (looked beside the JSON and in images/)")


def _box(ann: dict, rel: str, k: int, defects: list[Defect]) -> tuple[float, float, float, float] | None:
    bbox = ann.get("bbox") or []
    if len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0:
        x, y, w, h = (float(v) for v in bbox)
        return x, y, x + w, y + h
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg):
        xs = [float(v) for p in seg for v in p[0::2]]
        ys = [float(v) for p in seg for v in p[1::2]]
        defects.append(Defect(rel, k, "segmentation only, no box", "boxed by the polygon's extent"))
        return min(xs), min(ys), max(xs), max(ys)
    defects.append(Defect(rel, k, "neither a box nor a polygon", "dropped"))
    return None


def read_coco(json_path: Path, class_of: dict[str, str], seed: int = 0, val_frac: float = 0.2,
              test_frac: float = 0.0) -> tuple[dict[str, list[ImageAnnotation]], list[Defect]]:
    """Annotations per split (a seeded shuffle of the images) and what was repaired or left out."""
    json_path = Path(json_path)
    coco = _load(json_path)
    cats = {c["id"]: str(c["name"]).strip() for c in coco.loadCats(coco.getCatIds())}
    unknown = sorted({n for n in cats.values() if n not in class_of})
    used = {coco.anns[a]["category_id"] for a in coco.anns}
    unknown_used = [n for i, n in cats.items() if n in unknown and i in used]
    if unknown_used:
        known = ", ".join(sorted(set(class_of.values())))
        raise InputError(json_path, f"category {unknown_used[0]!r} is not one of the output classes ({known}); map it "
                                    "with {classes}, e.g. RBC=red_cell")
    defects: list[Defect] = []
    anns = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        path = _image_path(json_path.parent, str(info["file_name"]), json_path)
        width, height = read_image_size(path)
        ann = ImageAnnotation(path.stem, path, width, height)
        rel = f"{json_path.name}#{path.name}"
        found = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        if not found:
            defects.append(Defect(rel, None, "image without annotations", "counted as a field with no cells"))
        for k, a in enumerate(found):
            if a.get("iscrowd"):
                defects.append(Defect(rel, k, "crowd annotation (a region of many cells, not one)", "left out"))
                continue
            box = _box(a, rel, k, defects)
            if box is None:
                continue
            x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3])
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise InputError(json_path, f"{path.name}: annotation {a.get('id')} lies outside the image")
            ann.boxes.append(Box(class_of[cats[a["category_id"]]], x1, y1, x2, y2))
        anns.append(ann)
    random.Random(seed).shuffle(anns)
    n_val, n_test = round(len(anns) * val_frac), round(len(anns) * test_frac)
    by_id = lambda items: sorted(items, key=lambda a: a.image_id)  # noqa: E731
    return {"train": by_id(anns[n_val + n_test:]), "val": by_id(anns[:n_val]), "test": by_id(anns[n_val:n_val + n_test])}, defects
