"""Detections as label files to correct, not boxes to draw: `count --labels-out DIR`.

DIR becomes a Pascal-VOC folder that LabelImg, CVAT and Label Studio open and `bccd-yolo convert` reads back
unchanged: `JPEGImages/` (the images, hard-linked where the file system allows, else copied), `Annotations/`
(one VOC XML per image) and, for tools that want YOLO txt, `labels/` with `classes.txt`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from ..core.fsutil import atomic_write_bytes, atomic_write_text, check_output_dir, record_outputs
from ..data.labels import yolo_label_lines
from ..data.voc import Box, ImageAnnotation

if TYPE_CHECKING:
    from .counting import ImageCount

EDGE = 1.0  # px: a box this close to the image edge is marked truncated, as VOC does


def voc_xml(result: ImageCount, filename: str) -> bytes:
    """One image's detections as a VOC annotation (pixel corners rounded to whole pixels, as `convert` reads them)."""
    E = etree.Element
    root = E("annotation")
    for tag, text in (("folder", "JPEGImages"), ("filename", filename)):
        etree.SubElement(root, tag).text = text
    size = etree.SubElement(root, "size")
    for tag, v in (("width", result.width), ("height", result.height), ("depth", 3)):
        etree.SubElement(size, tag).text = str(v)
    for (x1, y1, x2, y2), c in zip(result.detections.xyxy.tolist(), result.detections.cls.tolist()):
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = result.names[c]
        etree.SubElement(obj, "pose").text = "Unspecified"
        cut = x1 <= EDGE or y1 <= EDGE or x2 >= result.width - EDGE or y2 >= result.height - EDGE
        etree.SubElement(obj, "truncated").text = str(int(cut))
        etree.SubElement(obj, "difficult").text = "0"
        box = etree.SubElement(obj, "bndbox")
        for tag, v in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            etree.SubElement(box, tag).text = str(int(round(v)))
    return etree.tostring(root, pretty_print=True, xml_declaration=False)


def yolo_txt(result: ImageCount) -> str:
    """The detections as a YOLO label file, written by the same `yolo_label_lines` that `convert` writes with."""
    boxes = [Box(result.names[c], x1, y1, x2, y2)
             for (x1, y1, x2, y2), c in zip(result.detections.xyxy.tolist(), result.detections.cls.tolist())]
    ann = ImageAnnotation(Path(result.path).stem, Path(result.path), result.width, result.height, boxes)
    return "".join(line + "\n" for line in yolo_label_lines(ann, tuple(result.names)))


def check_labels_out(out: Path, inputs: list[Path]) -> None:
    """Before any counting: the folder must be new, empty or ours, and outside every input."""
    check_output_dir(Path(out), False, inputs)


def write_proposals(results: list[ImageCount], out: Path, stems: dict[Path, str]) -> None:
    """VOC XML, YOLO txt and the images of every counted image under `out` (never over the user's files)."""
    out = Path(out)
    for sub in ("JPEGImages", "Annotations", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = results[0].names if results else []
    atomic_write_text(out / "labels" / "classes.txt", "".join(n + "\n" for n in names))
    written = ["JPEGImages", "Annotations", "labels"]
    for r in results:
        src = Path(r.path)
        stem = stems[src]
        image = out / "JPEGImages" / f"{stem}{src.suffix.lower()}"
        if not image.exists():
            try:
                os.link(src, image)
            except OSError:  # another file system
                shutil.copy2(src, image)
        atomic_write_bytes(out / "Annotations" / f"{stem}.xml", voc_xml(r, image.name))
        atomic_write_text(out / "labels" / f"{stem}.txt", yolo_txt(r))
    record_outputs(out, written)
