"""`bccd-yolo convert` on the real BCCD checkout and on broken VOC folders."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from conftest import make_voc, tree_digest, voc_xml

from bccd_yolo.cli import main
from bccd_yolo.core.errors import InputError
from bccd_yolo.data.convert import convert
from bccd_yolo.data.datasets import fetch_bccd


def xml_boxes(xml_path: Path) -> list[tuple[str, float, float, float, float]]:
    root = ElementTree.parse(xml_path).getroot()
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        x1, y1, x2, y2 = (float(b.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
        out.append((obj.find("name").text.strip(), x1, y1, x2, y2))
    return out


def label_boxes(label: Path, names: dict[int, str], w: int, h: int):
    out = []
    for line in label.read_text().splitlines():
        c, cx, cy, bw, bh = line.split()
        cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
        out.append((names[int(c)], cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
    return out


def test_every_kept_box_matches_its_xml(bccd_source, bccd_dataset):
    names = yaml.safe_load((bccd_dataset / "data.yaml").read_text())["names"]
    assert names == {0: "RBC", 1: "WBC", 2: "Platelets"}
    kept = 0
    for label in sorted(bccd_dataset.glob("labels/*/*.txt")):
        expected = [b for b in xml_boxes(bccd_source / "BCCD" / "Annotations" / f"{label.stem}.xml")
                    if b[3] > b[1] and b[4] > b[2]]
        got = label_boxes(label, names, 640, 480)
        assert len(got) == len(expected), label
        for g, e in zip(got, expected):
            assert g[0] == e[0]
            assert max(abs(a - b) for a, b in zip(g[1:], e[1:])) <= 0.5, (label, g, e)
        kept += len(got)
    assert kept == 4886


def test_split_sizes_follow_imagesets(bccd_source, bccd_dataset):
    for split, n in {"train": 205, "val": 87, "test": 72}.items():
        listed = (bccd_source / "BCCD" / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        images = sorted(p.stem for p in (bccd_dataset / "images" / split).iterdir())
        labels = sorted(p.stem for p in (bccd_dataset / "labels" / split).iterdir())
        assert len(images) == n and images == labels == sorted(listed)


def test_both_zero_size_boxes_are_reported(bccd_dataset):
    import json

    report = json.loads((bccd_dataset / "report.json").read_text())
    dropped = [(d["file"], d["object"]) for d in report["defects"] if d["action"] == "dropped"]
    assert dropped == [("Annotations/BloodImage_00338.xml", 12), ("Annotations/BloodImage_00343.xml", 3)]
    assert sum(sum(s["boxes"].values()) for s in report["splits"].values()) == 4886
    assert {k: v["images"] for k, v in report["splits"].items()} == {"train": 205, "val": 87, "test": 72}


def test_upstream_csv_export_agrees_with_labels(bccd_source, bccd_dataset):
    names = yaml.safe_load((bccd_dataset / "data.yaml").read_text())["names"]
    with open(bccd_source / "test.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["xmin"] != r["xmax"] and r["ymin"] != r["ymax"]]
    expected = Counter(
        (r["filename"].rsplit(".", 1)[0], r["cell_type"].strip(), int(r["xmin"]), int(r["ymin"]), int(r["xmax"]), int(r["ymax"]))
        for r in rows
    )
    got = Counter()
    for label in bccd_dataset.glob("labels/*/*.txt"):
        for name, x1, y1, x2, y2 in label_boxes(label, names, 640, 480):
            got[(label.stem, name, round(x1), round(y1), round(x2), round(y2))] += 1
    assert got == expected


def test_conversion_is_byte_identical_when_repeated(bccd_source, bccd_dataset, tmp_path):
    again = tmp_path / "again"
    convert(bccd_source, again)
    for sub in ("labels", "data.yaml"):
        assert tree_digest(again / sub) == tree_digest(bccd_dataset / sub)


def test_ultralytics_loads_the_data_yaml_as_it_is(bccd_dataset, monkeypatch):
    from ultralytics.data.utils import check_det_dataset

    import bccd_yolo.yolo  # noqa: F401

    monkeypatch.chdir(bccd_dataset.parent)
    data = check_det_dataset(f"{bccd_dataset.name}/data.yaml")
    assert Path(data["val"]) == (bccd_dataset / "images" / "val").resolve()
    assert data["names"] == {0: "RBC", 1: "WBC", 2: "Platelets"} and data["nc"] == 3


def test_clipping_and_whitespace_are_handled_and_reported(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "Annotations" / "img_000.xml").write_text(
        voc_xml("img_000.jpg", (64, 48), [("  RBC \n", (-4, 2, 10, 12)), ("WBC", (50, 40, 70, 60))])
    )
    result = convert(src, tmp_path / "out")
    clipped = [d for d in result.defects if d.action == "clipped"]
    assert [(d.file, d.object) for d in clipped] == [("Annotations/img_000.xml", 0), ("Annotations/img_000.xml", 1)]
    lines = (tmp_path / "out" / "labels" / "train" / "img_000.txt").read_text().splitlines()
    cls, cx, cy, w, h = lines[0].split()
    assert result.names[int(cls)] == "RBC"
    assert float(cx) - float(w) / 2 == pytest.approx(0.0, abs=1e-6)  # clipped at the left edge
    assert float(cx) + float(w) / 2 == pytest.approx(10 / 64, abs=1e-6)
    cls, cx, cy, w, h = lines[1].split()
    assert float(cx) + float(w) / 2 == pytest.approx(1.0, abs=1e-6) and float(cy) + float(h) / 2 == pytest.approx(1.0, abs=1e-6)


def test_image_without_boxes_gets_an_empty_label_file(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "Annotations" / "img_001.xml").write_text(voc_xml("img_001.jpg", (64, 48), []))
    convert(src, tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "train" / "img_001.txt").read_bytes() == b""


def test_size_mismatch_uses_the_image_and_is_reported(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "Annotations" / "img_000.xml").write_text(voc_xml("img_000.jpg", (128, 96), [("RBC", (0, 0, 32, 24))]))
    result = convert(src, tmp_path / "out")
    assert any("<size>" in d.problem for d in result.defects)
    line = (tmp_path / "out" / "labels" / "train" / "img_000.txt").read_text().split()
    assert float(line[3]) == pytest.approx(0.5)  # 32 / 64 from the real image width


def test_random_split_is_seeded_and_sized(tmp_path):
    src = make_voc(tmp_path / "voc", n=20)
    a = convert(src, tmp_path / "a", split="random", seed=3, val_frac=0.25, test_frac=0.1)
    convert(src, tmp_path / "b", split="random", seed=3, val_frac=0.25, test_frac=0.1)
    convert(src, tmp_path / "c", split="random", seed=4, val_frac=0.25, test_frac=0.1)
    assert {k: v.images for k, v in a.splits.items()} == {"train": 13, "val": 5, "test": 2}
    assert tree_digest(tmp_path / "a" / "labels") == tree_digest(tmp_path / "b" / "labels")
    val = lambda d: sorted(p.name for p in (tmp_path / d / "labels" / "val").iterdir())  # noqa: E731
    assert val("a") != val("c")


def test_auto_classes_take_every_name_most_frequent_first(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "Annotations" / "img_001.xml").write_text(voc_xml("img_001.jpg", (64, 48), [("Neutrophil", (1, 1, 9, 9))]))
    assert convert(src, tmp_path / "out", classes="auto").names == ["RBC", "WBC", "Neutrophil"]


def test_classes_option_sets_order_and_maps_names(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "Annotations" / "img_002.xml").write_text(voc_xml("img_002.jpg", (64, 48), [("platelet", (1, 1, 5, 5))]))
    with pytest.raises(InputError, match="unknown class 'platelet'"):
        convert(src, tmp_path / "out", classes="WBC,RBC,Platelets")
    result = convert(src, tmp_path / "out", classes="WBC,RBC,Platelets=platelet")
    assert result.names == ["WBC", "RBC", "Platelets"]
    assert (tmp_path / "out" / "labels" / "val" / "img_002.txt").read_text().startswith("2 ")


def _break_malformed(src):
    (src / "Annotations" / "img_001.xml").write_text("<annotation><object><name>RBC</name>")
    return "img_001.xml", "malformed XML"


def _break_truncated(src):
    p = src / "Annotations" / "img_002.xml"
    p.write_text(p.read_text()[:40])
    return "img_002.xml", "malformed XML"


def _break_unknown_class(src):
    (src / "Annotations" / "img_001.xml").write_text(voc_xml("img_001.jpg", (64, 48), [("Neutrophil", (1, 1, 9, 9))]))
    return "img_001.xml", "unknown class 'Neutrophil'"


def _break_missing_image(src):
    (src / "JPEGImages" / "img_003.jpg").unlink()
    return "img_003.jpg", "image is missing"


def _break_corrupt_image(src):
    p = src / "JPEGImages" / "img_000.jpg"
    p.write_bytes(p.read_bytes()[:200])
    return "img_000.jpg", "corrupt image"


def _break_not_an_image(src):
    (src / "JPEGImages" / "img_001.jpg").write_text("hello")
    return "img_001.jpg", "corrupt image"


def _break_missing_split(src):
    (src / "ImageSets" / "Main" / "val.txt").unlink()
    return "val.txt", "split list is missing"


def _break_missing_annotation(src):
    (src / "Annotations" / "img_002.xml").unlink()
    return "img_002.xml", "annotation is missing"


BREAKS = [_break_malformed, _break_truncated, _break_unknown_class, _break_missing_image, _break_corrupt_image,
          _break_not_an_image, _break_missing_split, _break_missing_annotation]


@pytest.mark.parametrize("breaker", BREAKS, ids=[b.__name__[7:] for b in BREAKS])
def test_fatal_input_leaves_the_existing_dataset_untouched(tmp_path, capsys, breaker):
    src = make_voc(tmp_path / "voc")
    out = tmp_path / "out"
    assert main(["convert", "--source", str(src), "--out", str(out)]) == 0
    before = tree_digest(out)
    capsys.readouterr()
    filename, problem = breaker(src)
    code = main(["convert", "--source", str(src), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and filename in err and problem in err, err
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "voc"]  # no temporary folder left behind


def test_cli_error_is_one_line_without_traceback(tmp_path):
    src = make_voc(tmp_path / "voc")
    _break_malformed(src)
    r = subprocess.run([sys.executable, "-m", "bccd_yolo", "convert", "--source", str(src), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "img_001.xml" in r.stderr
    assert not (tmp_path / "o").exists()


def _zip_of(src: Path, archive: Path, top: str = "BCCD_Dataset-master") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(src.rglob("*")):
            z.write(p, f"{top}/BCCD/{p.relative_to(src)}")
    return archive


@pytest.fixture()
def test_download_from_a_local_server_then_convert(tmp_path, local_server, monkeypatch, capsys):
    root, base = local_server
    _zip_of(make_voc(tmp_path / "voc"), root / "master.zip")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BCCD_YOLO_DATASET_URL", f"{base}/master.zip")
    assert main(["convert"]) == 0  # default --source datasets/BCCD_Dataset is absent: downloaded
    assert (tmp_path / "datasets" / "BCCD_Dataset" / "BCCD" / "Annotations" / "img_000.xml").is_file()
    assert not (tmp_path / "datasets" / "BCCD_Dataset.zip").exists()
    assert len(list((tmp_path / "datasets" / "bccd" / "labels" / "train").iterdir())) == 2
    assert "train" in capsys.readouterr().out


def test_offline_download_error_names_source(tmp_path, local_server):
    _, base = local_server
    target = tmp_path / "datasets"
    for url in (f"{base}/missing.zip", "http://127.0.0.1:9/master.zip"):  # a 404; nothing listens (refused at once)
        with pytest.raises(InputError, match="download failed") as e:
            fetch_bccd(target, url=url)
        assert "--source DIR" in e.value.render(lambda name: f"--{name}")  # the command line names its flag
    assert os.listdir(target) == []  # no partial download left


def test_archive_without_bccd_layout_is_refused(tmp_path, local_server):
    root, base = local_server
    with zipfile.ZipFile(root / "bad.zip", "w") as z:
        z.writestr("something/readme.txt", "hi")
    with pytest.raises(InputError, match="does not hold a BCCD_Dataset"):
        fetch_bccd(tmp_path / "d", url=f"{base}/bad.zip")


def test_another_annotation_set_replaces_labels_and_the_differences_are_counted(tmp_path, capsys):
    """Own labels: img_000 RBC+WBC, img_001 RBC, img_002 RBC+WBC, img_003 RBC. The other set relabels three photos:
    img_000 keeps its RBC (shifted 1 px: IoU 0.80), drops its WBC and adds two RBC; img_001 (YOLO txt would be
    another kind, so XML here) moves its RBC far away (one removed, one added); img_003 is left without labels."""
    src = make_voc(tmp_path / "voc", n=4)
    other = tmp_path / "other"
    other.mkdir()
    (other / "img_000.xml").write_text(voc_xml("img_000.jpg", (64, 48), [
        ("RBC", (3, 4, 21, 22)), ("RBC", (40, 2, 50, 12)), ("RBC", (40, 30, 52, 42))]))
    (other / "img_001.xml").write_text(voc_xml("img_001.jpg", (64, 48), [("RBC", (40, 30, 50, 40))]))
    (other / "img_002.xml").write_text(voc_xml("img_002.jpg", (64, 48), [("RBC", (2, 3, 20, 21)), ("WBC", (30, 10, 60, 40))]))
    result = convert(src, tmp_path / "out", annotations=other)
    d = result.labels
    assert d.relabelled == {"train": 2, "val": 1, "test": 0} and d.without == {"train": [], "val": [], "test": ["img_003"]}
    assert d.boxes["train"]["RBC"] == {"kept": 1, "added": 3, "removed": 1}
    assert d.boxes["train"]["WBC"] == {"kept": 0, "added": 0, "removed": 1}
    assert d.boxes["val"]["RBC"] == {"kept": 1, "added": 0, "removed": 0} and d.boxes["val"]["WBC"]["kept"] == 1
    assert result.splits["test"].images == 0 and not list((tmp_path / "out" / "images" / "test").iterdir())
    assert len((tmp_path / "out" / "labels" / "train" / "img_000.txt").read_text().splitlines()) == 3
    assert "1 photos without them were left out" in (tmp_path / "out" / "data.yaml").read_text()

    kept = convert(src, tmp_path / "out2", annotations=other, unlabelled="own")
    assert kept.splits["test"].images == 1 and kept.labels.without["test"] == ["img_003"]
    convert(src, tmp_path / "plain")
    own = (tmp_path / "out2" / "labels" / "test" / "img_003.txt").read_text()
    assert own == (tmp_path / "plain" / "labels" / "test" / "img_003.txt").read_text() and own.count("\n") == 1


def test_annotations_as_yolo_txt_use_the_class_order(tmp_path):
    src = make_voc(tmp_path / "voc", n=4)
    other = tmp_path / "yolo"
    other.mkdir()
    (other / "img_000.txt").write_text("1 0.5 0.5 0.25 0.25\n0 0.1 0.1 0.1 0.1\n")  # WBC, RBC (RBC,WBC,Platelets order)
    result = convert(src, tmp_path / "out", annotations=other)
    assert result.labels.boxes["train"]["WBC"]["added"] == 1 and result.labels.boxes["train"]["WBC"]["removed"] == 1
    lines = (tmp_path / "out" / "labels" / "train" / "img_000.txt").read_text().splitlines()
    assert lines[0].startswith("1 0.500000 0.500000 0.250000 0.250000")
    (other / "img_000.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(InputError, match="img_000.txt: line 1: class 7 outside"):
        convert(src, tmp_path / "out3", annotations=other)
    assert not (tmp_path / "out3").exists()


def test_complete_labels_of_the_shared_set_differ_from_bccd_as_published(bccd_source, tmp_path):
    """The TXL-PBC set beside BCCD: 221 photos, and per its README it keeps 98 % of BCCD's RBC boxes."""
    txl = bccd_source.parent / "txl-pbc-bccd" / "Annotations"
    result = convert(bccd_source, tmp_path / "out", annotations=txl, images="symlink")
    d = result.labels
    assert sum(d.relabelled.values()) == 221 and d.relabelled == {"train": 124, "val": 57, "test": 40}
    rbc = [d.boxes[s]["RBC"] for s in ("train", "val", "test")]
    kept, removed, added = (sum(r[k] for r in rbc) for k in ("kept", "removed", "added"))
    assert kept / (kept + removed) >= 0.97 and added > kept  # it roughly doubles the red cells
    assert result.splits["test"].boxes == {"RBC": 926, "WBC": 43, "Platelets": 37}  # its README's test counts
