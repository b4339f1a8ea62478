"""`count --labels-out`: the model's detections as labels to correct, which `convert` reads back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bccd_yolo.cli import main

PHOTOS = ("BloodImage_00007.jpg", "BloodImage_00112.jpg")


def test_proposals_round_trip_through_convert(bccd_source, tmp_path, capsys):
    photos = [bccd_source / "BCCD" / "JPEGImages" / p for p in PHOTOS]
    out = tmp_path / "proposals"
    assert main(["count", *map(str, photos), "--labels-out", str(out), "--json", str(tmp_path / "c.json"), "--quiet"]) == 0
    counted = {im["path"].rsplit("/", 1)[1]: im for im in json.loads((tmp_path / "c.json").read_text())["images"]}
    assert (out / "labels" / "classes.txt").read_text() == "RBC\nWBC\nPlatelets\n"
    assert main(["convert", "--source", str(out), "--split", "random", "--val-frac", "0", "--test-frac", "0",
                 "--out", str(tmp_path / "ds")]) == 0
    for name in PHOTOS:
        rows = np.loadtxt(tmp_path / "ds" / "labels" / "train" / name.replace(".jpg", ".txt"), ndmin=2)
        dets = counted[name]["detections"]
        assert len(rows) == len(dets) > 10
        names = ["RBC", "WBC", "Platelets"]
        got = [(int(c), cx * 640, cy * 480) for c, cx, cy, _, _ in rows]
        want = [(names.index(d["class"]), (d["box"][0] + d["box"][2]) / 2, (d["box"][1] + d["box"][3]) / 2) for d in dets]
        # corners are rounded to whole pixels in the XML, so a centre moves by at most 0.5 px each way
        for k, x, y in want:
            match = [g for g in got if g[0] == k and abs(g[1] - x) <= 0.51 and abs(g[2] - y) <= 0.51]
            assert match, (k, x, y)
            got.remove(match[0])
        assert got == []
    yolo = np.loadtxt(out / "labels" / PHOTOS[0].replace(".jpg", ".txt"), ndmin=2)
    assert len(yolo) == len(counted[PHOTOS[0]]["detections"])


def test_labels_out_never_writes_into_a_folder_of_the_users(bccd_source, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["count", str(bccd_source / "BCCD" / "JPEGImages" / PHOTOS[0]), "--labels-out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "did not write" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("inside", ["JPEGImages", ""])
def test_labels_out_inside_the_input_folder_is_refused(bccd_source, tmp_path, capsys, inside):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((bccd_source / "BCCD" / "JPEGImages" / PHOTOS[0]).read_bytes())
    code = main(["count", str(folder), "--labels-out", str(folder / inside), "--quiet"])
    assert code == 2 and "overlaps" in capsys.readouterr().err
