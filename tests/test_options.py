"""Every option is checked before any work: one line naming the option, the value and what is accepted, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bccd_yolo.cli import main

BAD = [
    (["count", "x.jpg", "--tile", "1"], "--tile", "at least 64"),
    (["count", "x.jpg", "--tile", "-5"], "--tile", ">= 0"),
    (["count", "x.jpg", "--batch", "0"], "--batch", ">= 1"),
    (["count", "x.jpg", "--iou", "5"], "--iou", "[0, 1]"),
    (["count", "x.jpg", "--max-det", "0"], "--max-det", ">= 1"),
    (["count", "x.jpg", "--overlap", "1.0"], "--overlap", "[0, 0.9]"),
    (["count", "x.jpg", "--imgsz", "7"], "--imgsz", ">= 32"),
    (["count", "x.jpg", "--conf", "RBC=2"], "--conf", "[0, 1]"),
    (["count", "x.jpg", "--conf", "=0.3"], "--conf", "CLASS=number"),
    (["count", "x.jpg", "--edge", "half"], "--edge", "invalid choice"),
    (["finetune", "--stage", "3", "--epochs", "0"], "--epochs", ">= 1"),
    (["finetune", "--stage", "3", "--imgsz", "7"], "--imgsz", ">= 32"),
    (["finetune", "--stage", "3", "--batch", "x"], "--batch", "not an integer"),
    (["finetune", "--stage", "3", "--resample", "1.5"], "--resample", "[0, 1]"),
    (["finetune", "--stage", "3", "--refill", "-1"], "--refill", "[0, 1]"),
    (["finetune", "--stage", "3", "--frame", "2"], "--frame", "[0, 1]"),
    (["audit", "voc", "--out", "o", "--iou", "1.5"], "--iou", "[0, 1]"),
    (["convert", "--val-frac", "2"], "--val-frac", "[0, 0.99]"),
    (["calibrate", "--imgsz", "0"], "--imgsz", ">= 32"),
]


@pytest.mark.parametrize("args, option, accepted", BAD, ids=[" ".join(a[0][:1] + a[0][-2:]) for a in BAD])
def test_bad_option_is_one_line_naming_it(args, option, accepted, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert option in err and accepted in err and args[-1] in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, needle", [("lr0=abc", "'lr0=abc' is of invalid type"), ("lr0=5", "between 0.0 and 1.0"),
                                              ("lr00=0.1", "did you mean lr0")])
def test_ultralytics_overrides_go_through_its_checks_before_any_run(override, needle, mini_bccd, tmp_path, capsys):
    code = main(["finetune", "--stage", "3", "--data", str(mini_bccd), "--project", str(tmp_path / "runs"), override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_count_refuses_json_and_csv_folders_before_loading_a_model(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    code = main(["count", "x.jpg", "--json", str(tmp_path / "dir"), "--weights", "nowhere.pt"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--json wants a file" in err


def test_help_is_fast_shows_defaults_and_loads_no_torch():
    # CPU time of the process (imports included), not wall time: other jobs on a busy machine do not count
    code = ("import sys, time; from bccd_yolo.cli import build_parser; "
            "build_parser().format_help(); print(time.process_time(), 'torch' in sys.modules)")
    seconds, torch_loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True).stdout.split()
    assert torch_loaded == "False"
    assert float(seconds) < 0.5  # the interpreter and all imports; torch and Ultralytics alone take 1.5-2 s here
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bccd_yolo", "count", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 3  # the whole interpreter; generous for a loaded CI machine
    assert "(default: auto)" in out.stdout and "(default: 0.4)" in out.stdout and "(default: all)" in out.stdout


def test_a_thresholds_sidecar_is_checked(tmp_path, tiny_weights, caplog):
    import shutil

    from bccd_yolo.core.errors import InputError
    from bccd_yolo.count.thresholds import Thresholds

    weights = tmp_path / "m.pt"
    shutil.copy(tiny_weights, weights)
    sidecar = tmp_path / "m.thresholds.json"
    names = ["RBC", "WBC", "Platelets"]
    sidecar.write_text(json.dumps({"thresholds": {"RBC": 1.7}}))
    with pytest.raises(InputError, match="threshold of 'RBC' is 1.7"):
        Thresholds.for_model(weights, names)
    sidecar.write_text(json.dumps({"thresholds": {"Neutrophil": 0.4}}))
    t = Thresholds.for_model(weights, names)
    assert t.source == "default" and t.by_class == {n: 0.25 for n in names}
    assert any("Neutrophil" in r.message for r in caplog.records)
    sidecar.write_text(json.dumps({"thresholds": {"WBC": 0.6, "Neutrophil": 0.4}}))
    t = Thresholds.for_model(weights, names)
    assert t.source.startswith("calibrated") and t.by_class["WBC"] == 0.6
