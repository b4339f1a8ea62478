"""COCO instances JSON in `convert`: categories mapped by --classes, crowd and segmentation-only annotations and
images without annotations handled and reported, bad files one line each."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bccd_yolo.cli import main

CLASSES = "RBC=red cell,WBC=white cell,Platelets=platelet"


def coco_folder(bccd_source, root):
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    boxes = {"BloodImage_00007.jpg": [("red cell", [10, 20, 100, 90]), ("white cell", [200, 150, 180, 160])],
             "BloodImage_00008.jpg": [("platelet", [300, 300, 30, 28])],
             "BloodImage_00009.jpg": []}
    for i, (name, found) in enumerate(boxes.items(), 1):
        shutil.copy(bccd_source / "BCCD" / "JPEGImages" / name, root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 640, "height": 480})
        for cat, bbox in found:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": ["red cell", "white cell", "platelet"].index(cat) + 1,
                         "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": []})
    anns.append({"id": 90, "image_id": 1, "category_id": 1, "bbox": [0, 0, 640, 480], "area": 1, "iscrowd": 1,
                 "segmentation": {"counts": [0, 10], "size": [480, 640]}})  # a crowd region: left out
    anns.append({"id": 91, "image_id": 2, "category_id": 1, "bbox": [], "area": 1, "iscrowd": 0,
                 "segmentation": [[400, 100, 460, 100, 460, 170, 400, 170]]})  # a polygon only: boxed by its extent
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(["red cell", "white cell", "platelet"])]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "annotations.json"


def test_a_coco_export_converts_with_its_boxes_mapped_and_its_oddities_reported(bccd_source, tmp_path, capsys):
    path = coco_folder(bccd_source, tmp_path / "coco")
    assert main(["convert", "--source", str(path), "--classes", CLASSES, "--split", "random", "--val-frac", "0",
                 "--test-frac", "0", "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "crowd annotation" in out and "segmentation only" in out and "image without annotations" in out
    labels = tmp_path / "ds" / "labels" / "train"
    a = np.loadtxt(labels / "BloodImage_00007.txt", ndmin=2)
    assert a[:, 0].tolist() == [0, 1]  # red cell -> RBC (0), white cell -> WBC (1); the crowd region left out
    assert a[0, 1:] == pytest.approx([60 / 640, 65 / 480, 100 / 640, 90 / 480], abs=1e-5)
    b = np.loadtxt(labels / "BloodImage_00008.txt", ndmin=2)
    assert sorted(b[:, 0].tolist()) == [0, 2] and [430 / 640, 135 / 480, 60 / 640, 70 / 480] == pytest.approx(
        b[b[:, 0] == 0][0, 1:].tolist(), abs=1e-5)
    assert (labels / "BloodImage_00009.txt").read_text() == ""  # no cells, kept


def test_an_unmapped_category_or_a_missing_image_is_one_line_and_writes_nothing(bccd_source, tmp_path, capsys):
    path = coco_folder(bccd_source, tmp_path / "coco")
    assert main(["convert", "--source", str(path), "--split", "random", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'red cell'" in err and "--classes" in err, err
    (tmp_path / "coco" / "images" / "BloodImage_00008.jpg").unlink()
    assert main(["convert", "--source", str(path), "--classes", CLASSES, "--split", "random", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "BloodImage_00008.jpg" in err and "missing" in err, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
