"""A labelled VOC folder against the model: proposals of cells the annotators missed, labels nobody found.

A detection that matches no annotated box of its class is a proposal (a missed cell, or a false
detection for a person to reject); an annotated box that no detection matches is listed as possibly
wrong. Writes `proposals.csv`, overlays in the style of the study's Fig. 2 (annotated boxes thin,
proposals numbered with their score) and `Annotations/*.xml`: the original labels plus the
proposals, for review in a labelling tool that reads VOC (CVAT, Label Studio, LabelImg).
The input folder is only read.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from lxml import etree
from PIL import Image, ImageDraw

from ..core.detections import Detections
from ..core.edges import EDGE_MARGIN
from ..core.errors import InputError
from ..core.fsutil import check_output_dir, staged_dir
from ..core.matching import match
from ..count.overlay import _font, colour, line_width
from ..data.labels import boxes_as_detections
from ..data.voc import ImageAnnotation, VocLayout, parse_annotation

AUDIT_IOU = 0.3  # one cell: BCCD's boxes are loose, so a detection at IoU 0.3-0.5 with a label is that label's cell
KINDS = ("proposal", "unmatched_annotation")


@dataclass(frozen=True)
class Finding:
    image: str
    cls: str
    box: tuple[float, float, float, float]
    score: float | None  # the detection's score; None for an annotation
    kind: str  # proposal or unmatched_annotation
    number: int  # 1-based within its image and kind


@dataclass
class AuditResult:
    images: int
    annotated: dict[str, int]
    proposals: dict[str, int]
    unmatched: dict[str, int]
    findings: list[Finding]

    def summary(self, names: list[str]) -> str:
        rows = [f"{'class':<10} {'annotated':>9} {'proposals':>9} {'unmatched labels':>16}"]
        rows += [f"{n:<10} {self.annotated[n]:>9} {self.proposals[n]:>9} {self.unmatched[n]:>16}" for n in names]
        return "\n".join(rows)


def audit_image(ann: ImageAnnotation, found: Detections, names: list[str], iou: float = AUDIT_IOU) -> list[Finding]:
    """Proposals (unmatched detections, best score first) and unmatched annotations of one image."""
    truth = boxes_as_detections(ann.boxes, names)
    m = match(found, truth, iou)
    out: list[Finding] = []
    order = [i for i in np.argsort(-found.score, kind="stable") if not m.pred[i]]
    for n, i in enumerate(order, 1):
        box = tuple(round(float(v), 1) for v in found.xyxy[i])
        out.append(Finding(ann.image_id, names[found.cls[i]], box, round(float(found.score[i]), 4), "proposal", n))  # type: ignore[arg-type]
    for n, j in enumerate(np.flatnonzero(~m.truth), 1):
        box = tuple(round(float(v), 1) for v in truth.xyxy[j])
        out.append(Finding(ann.image_id, names[truth.cls[j]], box, None, "unmatched_annotation", n))  # type: ignore[arg-type]
    return out


def proposals_csv(findings: list[Finding]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "class", "x1", "y1", "x2", "y2", "score", "kind"])
    for f in findings:
        w.writerow([f.image, f.cls, *f.box, "" if f.score is None else f.score, f.kind])
    return buf.getvalue()


def annotated_xml(xml_path: Path, proposals: list[Finding], width: int, height: int) -> bytes:
    """The original XML with each proposal appended as an <object> (a comment names it a proposal)."""
    tree = etree.parse(str(xml_path), etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True))
    root = tree.getroot()
    for f in proposals:
        root.append(etree.Comment(f" bccd-yolo audit proposal {f.number}, score {f.score:.2f} "))
        obj = etree.SubElement(root, "object")
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        cut = x1 <= EDGE_MARGIN or y1 <= EDGE_MARGIN or x2 >= width - EDGE_MARGIN or y2 >= height - EDGE_MARGIN
        for tag, text in (("name", f.cls), ("pose", "Unspecified"), ("truncated", str(int(cut))), ("difficult", "0")):
            etree.SubElement(obj, tag).text = text
        box = etree.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2)):
            etree.SubElement(box, tag).text = str(v)
    return etree.tostring(tree, pretty_print=True, xml_declaration=False, encoding="unicode").encode()


def draw_audit(im: Image.Image, ann: ImageAnnotation, findings: list[Finding], names: list[str]) -> Image.Image:
    """Fig. 2 style: annotated boxes thin, proposals thick and numbered with their score, unmatched labels dashed."""
    draw = ImageDraw.Draw(im)
    thick = max(2, line_width(*im.size) + 1)
    font = _font(max(11, 5 * thick))
    for b in ann.boxes:
        if b.name in names:
            draw.rectangle([b.x1, b.y1, b.x2, b.y2], outline=colour(b.name, names.index(b.name)), width=1)
    for f in findings:
        rgb = colour(f.cls, names.index(f.cls))
        x1, y1, x2, y2 = f.box
        if f.kind == "proposal":
            draw.rectangle([x1, y1, x2, y2], outline=rgb, width=thick)
            label = f"{f.number}: {f.score:.2f}"
            draw.text((x1 + thick, y1 + thick), label, fill=(0, 0, 0), font=font, anchor="la", stroke_width=2,
                      stroke_fill=(255, 255, 255))
        else:
            for t in np.arange(x1, x2, 8):  # dashed outline: a label nothing found
                draw.line([t, y1, min(t + 4, x2), y1], fill=rgb, width=2)
                draw.line([t, y2, min(t + 4, x2), y2], fill=rgb, width=2)
            for t in np.arange(y1, y2, 8):
                draw.line([x1, t, x1, min(t + 4, y2)], fill=rgb, width=2)
                draw.line([x2, t, x2, min(t + 4, y2)], fill=rgb, width=2)
    return im


def audit_inputs(voc: Path, out: Path, overwrite: bool = False) -> tuple[VocLayout, list[Path]]:
    """The VOC folder and its XML files; an output inside the audited folder is refused (it is only read)."""
    layout = VocLayout.find(Path(voc))
    xmls = sorted(layout.annotations.glob("*.xml"))
    if not xmls:
        raise InputError(layout.annotations, "no .xml annotations found")
    check_output_dir(Path(out), overwrite, [layout.root])
    return layout, xmls


def audit(voc: Path, out: Path, detect: Callable[[Path], Detections], names: list[str], iou: float = AUDIT_IOU,
          progress: bool = True, overwrite: bool = False) -> AuditResult:
    """Audit every annotated image of `voc`; `detect(image_path)` returns the model's thresholded detections."""
    from tqdm import tqdm

    layout, xmls = audit_inputs(voc, out, overwrite)
    out = Path(out)
    findings: list[Finding] = []
    annotated = dict.fromkeys(names, 0)
    with staged_dir(out, overwrite, [layout.root, voc]) as tmp:
        (tmp / "Annotations").mkdir()
        (tmp / "overlays").mkdir()
        for xml_path in tqdm(xmls, desc="auditing", unit="img", disable=not progress):
            ann, _ = parse_annotation(xml_path, layout, None)
            found = audit_image(ann, detect(ann.image_path), names, iou)
            findings += found
            for b in ann.boxes:
                if b.name in annotated:
                    annotated[b.name] += 1
            proposals = [f for f in found if f.kind == "proposal"]
            (tmp / "Annotations" / xml_path.name).write_bytes(annotated_xml(xml_path, proposals, ann.width, ann.height))
            with Image.open(ann.image_path) as im:
                draw_audit(im.convert("RGB"), ann, found, names).save(tmp / "overlays" / f"{ann.image_id}.jpg", quality=90)
        (tmp / "proposals.csv").write_text(proposals_csv(findings))
    tally = {k: {n: sum(1 for f in findings if f.kind == k and f.cls == n) for n in names} for k in KINDS}
    return AuditResult(len(xmls), annotated, tally["proposal"], tally["unmatched_annotation"], findings)
