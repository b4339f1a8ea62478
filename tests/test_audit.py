"""`bccd-yolo audit`: proposals of cells a label set misses, written for review; the input is never changed."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from conftest import make_voc, tree_digest
from lxml import etree

from bccd_yolo.cli import main
from bccd_yolo.core.detections import Detections
from bccd_yolo.measure.audit import audit

NAMES = ["RBC", "WBC", "Platelets"]


def xml_objects(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    root = etree.parse(str(path)).getroot()
    return [(o.findtext("name"), tuple(int(float(o.findtext(f"bndbox/{t}"))) for t in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")]


def test_a_removed_label_comes_back_as_a_proposal(tmp_path):
    """A detector that sees exactly the original labels; one label deleted from the folder is proposed, the rest match,
    and a label no detection matches is listed as possibly wrong."""
    src = make_voc(tmp_path / "voc", n=2)
    original = xml_objects(src / "Annotations" / "img_000.xml")  # RBC (2,3,20,21), WBC (30,10,60,40)
    truth = {"img_000": original, "img_001": xml_objects(src / "Annotations" / "img_001.xml")}
    xml = src / "Annotations" / "img_000.xml"
    xml.write_text(xml.read_text().replace("<object><name>WBC</name>", "<object><name>WBC</name>", 1)
                   .replace("<object><name>RBC</name><bndbox><xmin>2</xmin>", "<object><name>XX</name><bndbox><xmin>2</xmin>"))
    # img_001 gains a label the detector will not find
    xml1 = src / "Annotations" / "img_001.xml"
    xml1.write_text(xml1.read_text().replace("</annotation>", "<object><name>Platelets</name><bndbox><xmin>40</xmin>"
                                             "<ymin>30</ymin><xmax>46</xmax><ymax>36</ymax></bndbox></object></annotation>"))
    before = tree_digest(src)

    def detect(image: Path) -> Detections:
        rows = truth[image.stem]
        xyxy = np.array([b for _, b in rows], np.float32)
        return Detections(xyxy, np.linspace(0.9, 0.6, len(rows)).astype(np.float32),
                          np.array([NAMES.index(n) for n, _ in rows], np.int64))

    result = audit(src, tmp_path / "out", detect, NAMES, progress=False)
    assert tree_digest(src) == before
    proposals = [f for f in result.findings if f.kind == "proposal"]
    assert [(f.image, f.cls, f.box, f.number) for f in proposals] == [("img_000", "RBC", (2.0, 3.0, 20.0, 21.0), 1)]
    unmatched = [f for f in result.findings if f.kind == "unmatched_annotation"]
    assert [(f.image, f.cls, f.box) for f in unmatched] == [("img_001", "Platelets", (40.0, 30.0, 46.0, 36.0))]
    rows = list(csv.DictReader((tmp_path / "out" / "proposals.csv").open()))
    assert [(r["image"], r["class"], r["kind"], r["score"]) for r in rows] == [
        ("img_000", "RBC", "proposal", "0.9"), ("img_001", "Platelets", "unmatched_annotation", "")]
    # the written labels are the originals plus the proposal, readable as VOC
    written = xml_objects(tmp_path / "out" / "Annotations" / "img_000.xml")
    assert written == [("XX", (2, 3, 20, 21)), ("WBC", (30, 10, 60, 40)), ("RBC", (2, 3, 20, 21))]
    assert xml_objects(tmp_path / "out" / "Annotations" / "img_001.xml") == xml_objects(xml1)


def test_cli_audit_with_the_shipped_model_finds_a_deleted_red_cell(bccd_source, tmp_path, capsys):
    """BloodImage_00007 with its labels minus the RBC the shipped model scores highest: audit proposes it back."""
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    bccd = bccd_source / "BCCD"
    shutil.copy(bccd / "Annotations" / "BloodImage_00007.xml", voc / "Annotations")
    (voc / "JPEGImages" / "BloodImage_00007.jpg").symlink_to(bccd / "JPEGImages" / "BloodImage_00007.jpg")
    assert main(["audit", str(voc), "--out", str(tmp_path / "first"), "--quiet"]) == 0
    # a labelled RBC the model found: it matched, so it is not among the proposals; delete it from the labels
    labelled = [b for n, b in xml_objects(voc / "Annotations" / "BloodImage_00007.xml") if n == "RBC"]
    first = list(csv.DictReader((tmp_path / "first" / "proposals.csv").open()))
    lost = {tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")) for r in first if r["kind"] == "unmatched_annotation"}
    found = [b for b in labelled if tuple(map(float, b)) not in lost]
    assert found, "the shipped model finds none of the labelled red cells"
    target = found[0]
    root = etree.parse(str(voc / "Annotations" / "BloodImage_00007.xml")).getroot()
    for o in root.iter("object"):
        if o.findtext("name") == "RBC" and tuple(int(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")) == target:
            root.remove(o)
            break
    (voc / "Annotations" / "BloodImage_00007.xml").write_bytes(etree.tostring(root))
    before = tree_digest(voc)
    assert main(["audit", str(voc), "--out", str(tmp_path / "second"), "--quiet"]) == 0
    assert tree_digest(voc) == before
    second = [r for r in csv.DictReader((tmp_path / "second" / "proposals.csv").open()) if r["kind"] == "proposal"]
    boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in second if r["class"] == "RBC"])
    from bccd_yolo.core.matching import iou_matrix

    assert len(boxes) and iou_matrix(np.array([target], np.float32), boxes.astype(np.float32)).max() >= 0.3
    assert len(second) == len([r for r in first if r["kind"] == "proposal"]) + 1


def test_audit_refuses_to_write_inside_the_audited_folder(tmp_path, capsys):
    src = make_voc(tmp_path / "voc", n=2)
    before = tree_digest(src)
    for out in (src / "audit", src, tmp_path):
        code = main(["audit", str(src), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "overlaps the input" in err, err
    assert tree_digest(src) == before
