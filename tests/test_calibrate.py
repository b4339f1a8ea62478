"""Per-class threshold calibration: the optimum on synthetic predictions, the sidecar, and its use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bccd_yolo.cli import main
from bccd_yolo.core.detections import Detections
from bccd_yolo.count.thresholds import Thresholds, thresholds_path
from bccd_yolo.measure.calibrate import GRID, calibrate_thresholds, count_curves


def synthetic(true_counts: np.ndarray, cut: list[float], rng) -> list[Detections]:
    """Per image and class: `true` boxes scoring above that class's cut, plus noise boxes below it."""
    preds = []
    for row in true_counts:
        scores, classes = [], []
        for k, n in enumerate(row):
            scores += list(rng.uniform(cut[k] + 0.02, 1.0, n)) + list(rng.uniform(0.0, cut[k] - 0.02, rng.integers(0, 8)))
            classes += [k] * (len(scores) - len(classes))
        preds.append(Detections(np.zeros((len(scores), 4), np.float32), np.array(scores, np.float32), np.array(classes)))
    return preds


def test_calibration_recovers_a_known_optimum():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 20, (40, 3))
    cut = [0.6, 0.3, 0.45]
    cal = calibrate_thresholds(synthetic(true, cut, rng), true, ["RBC", "WBC", "Platelets"])
    for (name, t), c in zip(cal.thresholds.items(), cut):
        assert c - 0.02 <= t <= c + 0.02, (name, t, c)
        assert cal.mae_at(name, t) == 0.0
    assert cal.mae_at("RBC", 0.25) > 0  # the global default over-counts RBC here


def test_count_curve_counts_boxes_at_or_above_each_threshold():
    d = [Detections(np.zeros((4, 4), np.float32), np.array([0.1, 0.5, 0.5, 0.9], np.float32), np.array([0, 0, 1, 0]))]
    mae, bias = count_curves(d, np.array([[2, 1]]), 0, np.array([0.05, 0.5, 0.51, 0.95]))
    assert bias.tolist() == [1, 0, -1, -2] and mae.tolist() == [1, 0, 1, 2]


def test_thresholds_round_trip_and_conf_overrides(tmp_path):
    weights = tmp_path / "model.pt"
    thresholds_path(weights).write_text(json.dumps({"thresholds": {"RBC": 0.45, "WBC": 0.3}}))
    names = ["RBC", "WBC", "Platelets"]
    t = Thresholds.for_model(weights, names)
    assert t.by_class == {"RBC": 0.45, "WBC": 0.3, "Platelets": 0.25} and "calibrated" in t.source
    assert Thresholds.for_model(weights, names, 0.5).by_class == {n: 0.5 for n in names}
    assert Thresholds.for_model(weights, names, {"WBC": 0.7}).by_class == {"RBC": 0.45, "WBC": 0.7, "Platelets": 0.25}


@pytest.fixture(scope="module")
def calibrated(tiny_weights, mini_bccd, tmp_path_factory):
    import shutil

    weights = tmp_path_factory.mktemp("cal") / "model.pt"
    shutil.copy(tiny_weights, weights)
    assert main(["calibrate", "--weights", str(weights), "--data", str(mini_bccd), "--imgsz", "64", "--quiet"]) == 0
    return weights


def test_calibrate_writes_a_sidecar_that_count_uses(calibrated, mini_bccd, tmp_path, capsys):
    saved = json.loads(thresholds_path(calibrated).read_text())
    assert saved["split"] == "val" and set(saved["thresholds"]) == {"RBC", "WBC", "Platelets"}
    # no path of this machine in a file that travels with the weights: relative to the sidecar
    assert not Path(saved["data"]).is_absolute()
    assert (thresholds_path(calibrated).parent / saved["data"]).resolve() == mini_bccd.resolve()
    assert all(v in GRID for v in saved["thresholds"].values())
    images = mini_bccd.parent / "images" / "val"
    main(["count", str(images), "--weights", str(calibrated), "--imgsz", "64", "--json", str(tmp_path / "a.json"), "--quiet"])
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["thresholds"] == saved["thresholds"] and "calibrated" in a["thresholds_source"]
    # the error calibrate reports for its thresholds is the error of what count counts at them, against the labels
    names = ["RBC", "WBC", "Platelets"]
    for k, n in enumerate(names):
        errors = []
        for image in a["images"]:
            label = mini_bccd.parent / "labels" / "val" / f"{Path(image['path']).stem}.txt"
            truth = sum(line.split()[0] == str(k) for line in label.read_text().splitlines())
            errors.append(abs(image["counts"][n] - truth))
        assert saved["count_mae"][n]["mae_calibrated"] == pytest.approx(sum(errors) / len(errors), abs=1e-3), n
    main(["count", str(images), "--weights", str(calibrated), "--imgsz", "64", "--conf", "0.9", "--json", str(tmp_path / "b.json"), "--quiet"])
    assert json.loads((tmp_path / "b.json").read_text())["thresholds"] == {"RBC": 0.9, "WBC": 0.9, "Platelets": 0.9}


def test_calibration_refuses_the_test_split(tiny_weights, mini_bccd, capsys):
    sidecar = thresholds_path(tiny_weights)
    before = sidecar.read_text() if sidecar.exists() else None  # finetune records the training scale there
    code = main(["calibrate", "--weights", str(tiny_weights), "--data", str(mini_bccd), "--split", "test", "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "--force" in err and (sidecar.read_text() if sidecar.exists() else None) == before


def test_the_shipped_calibration_is_replaced_only_on_request(mini_bccd, capsys):
    from bccd_yolo.count.detector import SHIPPED_WEIGHTS
    from bccd_yolo.count.thresholds import thresholds_path

    before = thresholds_path(SHIPPED_WEIGHTS).read_bytes()
    code = main(["calibrate", "--data", str(mini_bccd), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "shipped model's calibration" in err and "--overwrite" in err
    assert thresholds_path(SHIPPED_WEIGHTS).read_bytes() == before


def test_a_flat_optimum_gives_its_middle_not_its_edge():
    """One cell per image scored 0.9 and a stray box at 0.15: every threshold from 0.16 to 0.90 counts exactly;
    the middle of that plateau (0.53) is chosen, not its lower edge (0.16), which other photos upset first."""
    d = [Detections(np.zeros((2, 4), np.float32), np.array([0.9, 0.15], np.float32), np.array([0, 0]))] * 5
    cal = calibrate_thresholds(d, np.ones((5, 1), int), ["WBC"])
    kept = lambda score, t: np.float32(score) >= t  # noqa: E731  (count's rule, on float32 scores)
    flat = [t for t in GRID if kept(0.9, t) and not kept(0.15, t)]
    assert len(flat) > 70 and cal.thresholds["WBC"] == pytest.approx(flat[(len(flat) - 1) // 2])
    assert 0.5 <= cal.thresholds["WBC"] <= 0.55
