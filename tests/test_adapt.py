"""`bccd-yolo adapt`: a lab's labelled fields -> a model, checked on fields held back from training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from bccd_yolo.cli import main
from bccd_yolo.core.errors import InputError
from bccd_yolo.data.voc import ImageAnnotation
from bccd_yolo.train import adapt as adapt_module
from bccd_yolo.train.adapt import AdaptRequest, adapt, check_out, hold_back

PBC = REPO.parent / "shared" / "txl-pbc-other" / "pbc"


def fields(n: int) -> list[ImageAnnotation]:
    return [ImageAnnotation(f"f{i:02d}", Path(f"f{i:02d}.jpg"), 100, 100) for i in range(n)]


@pytest.mark.parametrize("n, held", [(4, 3), (12, 3), (20, 5), (50, 12)])
def test_a_quarter_is_held_back_at_least_three_and_at_least_one_is_left_to_train(n, held):
    train, back = hold_back(fields(n), None, seed=0)
    assert len(back) == held and len(train) == n - held
    assert not {a.image_id for a in train} & {a.image_id for a in back}
    assert hold_back(fields(n), None, seed=0) == (train, back)  # the same fields each time: --resume relies on it
    assert hold_back(fields(n), None, seed=1)[1] != back or n == held + 1


def test_fewer_than_four_fields_say_how_many_are_needed():
    with pytest.raises(InputError, match="3 labelled fields found; adapt needs at least 4"):
        hold_back(fields(3), None, 0)
    with pytest.raises(InputError, match="hold back from 3 to 5"):
        hold_back(fields(6), 6, 0)


def test_out_may_replace_only_a_model_adapt_wrote(tmp_path):
    mine = tmp_path / "user.pt"
    mine.write_bytes(b"the user's own file")
    with pytest.raises(InputError, match="was not written by bccd-yolo adapt"):
        check_out(mine, overwrite=False)
    check_out(mine, overwrite=True)
    ours = tmp_path / "lab.pt"
    ours.write_bytes(b"x")
    ours.with_suffix(".thresholds.json").write_text(json.dumps({"origin": "bccd-yolo adapt"}))
    check_out(ours, overwrite=False)
    with pytest.raises(InputError, match="is a folder"):
        check_out(tmp_path, overwrite=False)


def lab_folder(root: Path, n: int) -> Path:
    """n PBC val fields as a lab would hand them over: images/, labels/, classes.txt."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for im in sorted((PBC / "images" / "val").iterdir())[:n]:
        shutil.copy(im, root / "images" / im.name)
        shutil.copy(PBC / "labels" / "val" / f"{im.stem}.txt", root / "labels" / f"{im.stem}.txt")
    (root / "classes.txt").write_text("WBC\nRBC\nPlatelets\n")
    return root


def test_three_fields_are_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    folder = lab_folder(tmp_path / "lab", 3)
    code = main(["adapt", str(folder), "--out", str(tmp_path / "m.pt"), "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "3 labelled fields found; adapt needs at least 4" in err[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "runs").exists()


def test_a_label_outside_its_image_names_the_file_and_writes_nothing(tmp_path, capsys):
    folder = lab_folder(tmp_path / "lab", 5)
    bad = sorted((folder / "labels").iterdir())[2]
    bad.write_text(bad.read_text() + "1 1.40 0.5 0.2 0.2\n")
    code = main(["adapt", str(folder), "--out", str(tmp_path / "m.pt"), "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and bad.name in err[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "runs").exists()


def test_a_repeated_label_line_is_dropped_and_said_but_a_field_without_labels_stops_adapt(tmp_path, caplog):
    """A line labelled twice (TXL-PBC's own train split has two) is the same cell: dropped, said, and adapt goes on;
    a field with no label file may be one nobody labelled: adapt stops and names it."""
    from bccd_yolo.train.adapt import AdaptRequest, read_fields

    folder = lab_folder(tmp_path / "lab", 5)
    twice = sorted((folder / "labels").iterdir())[1]
    lines = twice.read_text().splitlines()
    twice.write_text("\n".join(lines + lines[:1]) + "\n")
    names = ["RBC", "WBC", "Platelets"]
    data = read_fields(AdaptRequest(str(folder), str(tmp_path / "m.pt")), names)
    kept = next(a for s in data.splits.values() for a in s if a.image_path.stem == twice.stem)
    assert len(kept.boxes) == len(lines) and "exact repeat" in caplog.text and twice.name in caplog.text
    sorted((folder / "labels").iterdir())[3].unlink()
    with pytest.raises(InputError, match="no label file"):
        read_fields(AdaptRequest(str(folder), str(tmp_path / "m.pt")), names)


def test_an_interrupted_adapt_leaves_no_model(tmp_path, monkeypatch):
    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr("bccd_yolo.train.finetune.finetune", interrupted)
    folder = lab_folder(tmp_path / "lab", 5)
    with pytest.raises(KeyboardInterrupt):
        adapt(AdaptRequest(str(folder), str(tmp_path / "m.pt"), project=str(tmp_path / "runs")))
    assert not (tmp_path / "m.pt").exists() and not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".m.pt*"))


def test_the_last_epoch_is_published_not_the_one_three_held_back_fields_chose(tmp_path, monkeypatch):
    """Three fields cannot choose an epoch (see SMALL_DATA): the model written is the run's last.pt."""
    import torch

    from bccd_yolo.count.detector import SHIPPED_WEIGHTS

    def trained(req):  # a run whose best.pt and last.pt differ
        weights = Path(req.project) / req.name / "weights"
        weights.mkdir(parents=True)
        shutil.copyfile(SHIPPED_WEIGHTS, weights / "best.pt")
        ckpt = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=False)
        torch.save({**ckpt, "epoch": 14}, weights / "last.pt")
        return {"train_seconds": 0.0}

    monkeypatch.setattr("bccd_yolo.train.finetune.finetune", trained)
    summary = adapt(AdaptRequest(str(lab_folder(tmp_path / "lab", 4)), str(tmp_path / "m.pt"), project=str(tmp_path / "runs")))
    last = tmp_path / "runs" / "adapt-m" / "train" / "weights" / "last.pt"
    assert (tmp_path / "m.pt").read_bytes() == last.read_bytes() != (last.parent / "best.pt").read_bytes()
    assert summary["held_back_mae"]["after"].keys() == {"RBC", "WBC", "Platelets"}


def test_proposals_corrected_nowhere_go_through_adapt_into_a_model_count_uses(tmp_path, capsys):
    """count --labels-out writes proposals; adapt reads that folder as it is; the model it writes counts."""
    photos = sorted((PBC / "images" / "val").iterdir())[:5]
    proposals = tmp_path / "proposals"
    assert main(["count", *map(str, photos), "--labels-out", str(proposals), "--quiet", "--no-differential"]) == 0
    capsys.readouterr()
    out = tmp_path / "models" / "lab.pt"
    code = main(["adapt", str(proposals), "--out", str(out), "--epochs", "1", "--imgsz", "160", "--images-per-epoch", "3",
                 "--project", str(tmp_path / "runs")])
    printed = capsys.readouterr().out
    assert code == 0
    sidecar = json.loads(out.with_suffix(".thresholds.json").read_text())
    assert sidecar["origin"] == "bccd-yolo adapt"
    assert len(sidecar["adapt"]["held_back"]) == 3 and len(sidecar["adapt"]["trained_on"]) == 2
    # the 2 train fields repeated to at least 3 an epoch: twice each; the held-back fields once, never trained on
    data = tmp_path / "runs" / "adapt-lab" / "data"
    assert len(list((data / "images" / "train").iterdir())) == 4 and len(list((data / "images" / "val").iterdir())) == 3
    assert not {p.stem for p in (data / "images" / "val").iterdir()} & {p.stem.split("__")[0] for p in (data / "images" / "train").iterdir()}
    assert set(sidecar["thresholds"]) == {"RBC", "WBC", "Platelets"}
    assert "count MAE before" in printed and all(name in printed for name in sidecar["adapt"]["held_back"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["lab.pt", "lab.thresholds.json"]
    assert main(["count", str(photos[0]), "--weights", str(out), "--backend", "torch", "--quiet", "--no-differential",
                 "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["model"] == str(out)
    # a second adapt may replace the model the first one wrote, without --overwrite
    assert adapt_module.check_out(out, overwrite=False) is None
