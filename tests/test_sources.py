"""Several sources in one dataset: YOLO folders with their class order, each source's scale from its red cells,
every image keeping its source; bad YOLO labels are one line naming the file (and line)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from bccd_yolo.cli import main
from bccd_yolo.data.sources import source_of


def yolo_folder(root, cell_px, n=3, size=(360, 360), order=("WBC", "RBC", "Platelets")):
    """A YOLO folder (images/{train,val} + labels) of fields with 12 whole red cells of `cell_px` px each."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(150, 255, (size[1], size[0], 3), np.uint8)).save(root / "images" / split / f"f{i}.jpg")
            lines = []
            for k in range(12):
                cx, cy = (40 + (k % 4) * (size[0] - 80) / 3) / size[0], (60 + (k // 4) * (size[1] - 120) / 2) / size[1]
                lines.append(f"{order.index('RBC')} {cx:.6f} {cy:.6f} {cell_px / size[0]:.6f} {cell_px / size[1]:.6f}")
            (root / "labels" / split / f"f{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_two_yolo_sources_become_one_dataset_at_the_first_ones_scale(tmp_path, capsys):
    a = yolo_folder(tmp_path / "a", 60, size=(480, 480))
    b = yolo_folder(tmp_path / "b", 30)
    assert main(["convert", "--source", f"big={a}", "--source", f"small={b}", "--classes", "big:WBC,RBC,Platelets",
                 "--classes", "small:WBC,RBC,Platelets", "--same-scale", "--out", str(tmp_path / "ds")]) == 0
    data = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    assert data["names"] == {0: "RBC", 1: "WBC", 2: "Platelets"}  # the output order, not the files'
    assert data["sources"]["big"]["rbc_px"] == pytest.approx(60, abs=0.5)
    assert data["sources"]["small"]["factor"] == pytest.approx(2.0, abs=0.02)  # its red cells are half as large
    train = sorted(p.name for p in (tmp_path / "ds" / "images" / "train").iterdir())
    assert {source_of(n, ["big", "small"]) for n in train} == {"big", "small"} and len(train) == 6
    field = Image.open(tmp_path / "ds" / "images" / "train" / "small__f0.jpg")
    assert field.size == (480, 480)  # resampled x2 (720 px) and cut to the first source's canvas
    rows = np.loadtxt(tmp_path / "ds" / "labels" / "train" / "small__f0.txt", ndmin=2)
    whole = rows[(rows[:, 3] * 480 > 50)]
    assert np.median(whole[:, 3] * 480) == pytest.approx(60, abs=1.5)  # its cells now measure the first source's 60 px


@pytest.mark.parametrize("label, needle", [
    ("0 0.5 0.5 0.1\n", "line 1: expected 'class cx cy w h'"),
    ("7 0.5 0.5 0.1 0.1\n", "line 1: class 7 outside 0..2"),
    ("1 0.5 0.5 0.1 0.1\n1 1.3 0.5 0.2 0.2\n", "line 2: box 1.3 0.5 0.2 0.2 lies outside the image"),
])
def test_a_bad_yolo_label_is_one_line_naming_file_and_line(tmp_path, capsys, label, needle):
    a = yolo_folder(tmp_path / "a", 40)
    (a / "labels" / "train" / "f1.txt").write_text(label)
    code = main(["convert", "--source", f"a={a}", "--classes", "a:WBC,RBC,Platelets", "--out", str(tmp_path / "ds")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "f1.txt" in err and needle in err, err
    assert not (tmp_path / "ds").exists()


def test_a_yolo_folder_without_class_names_is_refused_and_one_without_a_label_is_reported(tmp_path, capsys):
    a = yolo_folder(tmp_path / "a", 40)
    assert main(["convert", "--source", f"a={a}", "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "without class names" in err and "--classes" in err and len(err.strip().splitlines()) == 1
    (a / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")  # now the folder names its classes itself
    (a / "labels" / "val" / "f2.txt").unlink()
    assert main(["convert", "--source", f"a={a}", "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "no label file -> counted as a field with no cells" in out
    assert (tmp_path / "ds" / "labels" / "val" / "f2.txt").read_text() == ""
