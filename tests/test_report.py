"""`bccd-yolo report`: tables from known inputs, pycocotools agreement, and the HTML page."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from bccd_yolo.cli import main
from bccd_yolo.measure.evaluate import count_errors
from bccd_yolo.measure.report import load_timings, scratch_vs_transfer


def test_count_errors_from_known_counts():
    true = np.array([[10, 1], [20, 0], [30, 2]])
    pred = np.array([[12, 1], [18, 1], [33, 2]])
    e = count_errors(true, pred, ["RBC", "WBC"])
    assert e.loc["RBC", "mae"] == pytest.approx(7 / 3, abs=1e-4) and e.loc["RBC", "bias"] == pytest.approx(1.0)
    assert e.loc["RBC", "rel_error"] == pytest.approx((0.2 + 0.1 + 0.1) / 3, abs=1e-4)
    assert e.loc["RBC", "pearson_r"] == pytest.approx(np.corrcoef([10, 20, 30], [12, 18, 33])[0, 1], abs=1e-4)
    assert e.loc["WBC", "rel_error"] == pytest.approx(0.0)  # images with no true WBC have no relative error


def test_timing_table_and_the_scratch_vs_transfer_ratio(tmp_path):
    for name, stage, wall in (("scratch", "scratch", 6.8 * 3600), ("stage3", "3", 2.5 * 3600)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "timing.json").write_text(json.dumps(
            {"stage": stage, "model": "yolov3", "data": "/d/bccd/data.yaml", "imgsz": 416, "epochs": 100,
             "wall_seconds": wall, "seconds_per_epoch": wall / 100, "images_per_second": 1.0, "trainable_params": 1}))
        (tmp_path / name / "results.csv").write_text("epoch,  metrics/mAP50(B)\n1,0.5\n2,0.9\n")
    (tmp_path / "broken").mkdir()
    timing, skipped = load_timings([tmp_path / "scratch", tmp_path / "stage3", tmp_path / "broken"])
    assert list(timing.run) == ["scratch", "stage3"] and len(skipped) == 1 and "broken" in skipped[0]
    comp = scratch_vs_transfer(timing)
    assert comp.loc[0, "time_ratio"] == pytest.approx(6.8 / 2.5, abs=1e-3)
    assert comp.loc[0, "scratch_map50"] == 0.9 and comp.loc[0, "stage3_hours"] == pytest.approx(2.5)


@pytest.fixture(scope="module")
def report_dir(tiny_weights, mini_bccd, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report"
    runs = tiny_weights.parents[1]
    assert main(["report", "--weights", str(tiny_weights), "--data", str(mini_bccd), "--split", "val",
                 "--imgsz", "64", "--runs", str(runs), str(runs.parent / "nothing_here"), "--out", str(out), "--quiet"]) == 0
    return out


def test_pycocotools_agrees_with_the_ap_table(report_dir):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(report_dir / "ground_truth.json"))
        dt = gt.loadRes(str(report_dir / "predictions.json"))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    ap = pd.read_csv(report_dir / "per_class_ap.csv").set_index("class")
    precision = ev.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all recalls, per class, all areas, 300 dets
    for k, name in enumerate(["RBC", "WBC", "Platelets"]):
        p = precision[:, k]
        coco_ap50 = float(p[p > -1].mean()) if (p > -1).any() else 0.0
        assert coco_ap50 == pytest.approx(ap.loc[name, "ap50"], abs=0.02), name
    gt_json = json.loads((report_dir / "ground_truth.json").read_text())
    assert ap.loc["all", "instances"] == len(gt_json["annotations"]) and len(gt_json["images"]) == 4


def test_counts_csv_matches_the_ground_truth(report_dir, mini_bccd):
    counts = pd.read_csv(report_dir / "counts.csv")
    images = counts[counts.image.str.endswith(".jpg")]
    assert len(images) == 4 and list(counts.image[-3:]) == ["MAE", "mean_relative_error", "pearson_r"]
    for _, row in images.iterrows():
        label = mini_bccd.parent / "labels" / "val" / row.image.replace(".jpg", ".txt")
        classes = [int(line.split()[0]) for line in label.read_text().splitlines()]
        assert [row.true_RBC, row.true_WBC, row.true_Platelets] == [classes.count(k) for k in range(3)]
    mae = counts[counts.image == "MAE"].iloc[0]
    assert mae.pred_RBC == pytest.approx((images.pred_RBC - images.true_RBC).abs().mean(), abs=1e-3)


def test_report_page_has_every_section_and_embedded_plots(report_dir):
    html = (report_dir / "report.html").read_text()
    for heading in ("AP per class", "Counting error", "Count error against threshold", "Precision-recall",
                    "Confusion matrix", "Training time"):
        assert heading in html, heading
    assert html.count("data:image/png;base64,") >= 4 and "src='count_" not in html
    md = (report_dir / "report.md").read_text()
    assert "| RBC |" in md and "bccd-yolo report --weights" in md
    timing = pd.read_csv(report_dir / "timing.csv")
    assert list(timing.run) == ["scratch"] and timing.epochs[0] == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_html_renders_in_headless_chromium_without_errors(report_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium) - the HTML page was not rendered")
    shot = tmp_path / "page.png"
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                        f"--screenshot={shot}", "--window-size=1200,3000", (report_dir / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    from PIL import Image

    page = np.asarray(Image.open(shot).convert("RGB"))
    ink = (page < 200).any(axis=2).mean()  # text, table rules and plots; a page of broken images is nearly white
    assert ink > 0.03 and len(np.unique(page.reshape(-1, 3), axis=0)) > 500, ink


def test_report_html_is_self_contained_and_shows_every_plot(report_dir):
    """Every picture is embedded (the page travels alone) and decodes to the very PNG/JPEG written beside it."""
    import base64
    import re
    from io import BytesIO

    from PIL import Image

    page = (report_dir / "report.html").read_text()
    images = re.findall(r"<img alt='([^']+)' src='data:image/(?:png|jpeg);base64,([^']+)'>", page)
    assert len(images) >= 4 and not re.search(r"<img[^>]+src='(?!data:)", page)
    for name, data in images:
        raw = base64.b64decode(data)
        assert raw == (report_dir / name).read_bytes(), name
        assert min(Image.open(BytesIO(raw)).size) > 100
    assert page.count("<table") >= 3


def test_missing_split_is_a_clear_error(tiny_weights, tmp_path, capsys):
    (tmp_path / "data").mkdir()  # the dataset folder is an input: the report goes outside it
    data = tmp_path / "data" / "data.yaml"
    data.write_text(f"path: {data.parent}\ntrain: {data.parent}\nval: {data.parent}\nnames: {{0: RBC, 1: WBC, 2: Platelets}}\n")
    code = main(["report", "--weights", str(tiny_weights), "--data", str(data), "--split", "test", "--out",
                 str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "no 'test' split" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_report_numbers_are_deterministic(report_dir, tiny_weights, mini_bccd, tmp_path):
    again = tmp_path / "again"
    assert main(["report", "--weights", str(tiny_weights), "--data", str(mini_bccd), "--split", "val",
                 "--imgsz", "64", "--runs", "--out", str(again), "--quiet"]) == 0
    for name in ("per_class_ap.csv", "counts.csv", "count_errors.csv", "predictions.json", "ground_truth.json"):
        assert (again / name).read_bytes() == (report_dir / name).read_bytes(), name


def test_report_scores_the_same_predictions_against_a_second_label_set(tiny_weights, bccd_source, tmp_path):
    """A second label set for 2 of the 4 val photos, with 3 extra RBC boxes on one of them: the side-by-side table's
    annotated counts follow the labels, its counted cells and errors follow the same predictions (from counts.csv)."""
    from conftest import make_bccd_subset, voc_xml

    from bccd_yolo.data.convert import convert

    voc = make_bccd_subset(bccd_source, tmp_path / "voc", {"train": 2, "val": 4, "test": 1})
    convert(voc, tmp_path / "own")
    val_ids = (voc / "ImageSets" / "Main" / "val.txt").read_text().split()
    other = tmp_path / "other"
    other.mkdir()
    for i in val_ids[:2]:
        shutil.copy(voc / "Annotations" / f"{i}.xml", other / f"{i}.xml")
    xml = other / f"{val_ids[0]}.xml"
    extra = voc_xml("x.jpg", None, [("RBC", (10, 10, 40, 40)), ("RBC", (100, 10, 130, 40)), ("RBC", (200, 10, 230, 40))])
    xml.write_text(xml.read_text().replace("</annotation>", extra.split("<filename>x.jpg</filename>")[1]))
    convert(voc, tmp_path / "complete", annotations=other)
    out = tmp_path / "report"
    assert main(["report", "--weights", str(tiny_weights), "--data", str(tmp_path / "own" / "data.yaml"), "--split", "val",
                 "--imgsz", "64", "--runs", "--also-data", str(tmp_path / "complete" / "data.yaml"), "--out", str(out),
                 "--quiet"]) == 0
    table = pd.read_csv(out / "label_sets.csv")
    counts = pd.read_csv(out / "counts.csv").iloc[:4]
    counts["id"] = counts.image.str.replace(".jpg", "", regex=False)
    assert set(table.labels) == {"own", "complete", "own, same 2 photos"}
    for n in ("RBC", "WBC", "Platelets"):
        own = table[(table.labels == "own") & (table["class"] == n)].iloc[0]
        assert own.images == 4 and own.annotated_per_image == pytest.approx(counts[f"true_{n}"].mean(), abs=1e-4)
        same = counts[counts.id.isin(val_ids[:2])]
        comp = table[(table.labels == "complete") & (table["class"] == n)].iloc[0]
        true2 = same[f"true_{n}"] + (3 * (same.id == val_ids[0]) if n == "RBC" else 0)
        assert comp.images == 2 and comp.annotated_per_image == pytest.approx(true2.mean(), abs=1e-4)
        assert comp.counted_per_image == pytest.approx(same[f"pred_{n}"].mean(), abs=1e-4)
        assert comp.count_mae == pytest.approx((same[f"pred_{n}"] - true2).abs().mean(), abs=1e-4)
    assert "Against each label set" in (out / "report.md").read_text()


def test_time_to_the_scratch_runs_best_ap_is_read_per_epoch(tmp_path):
    """Scratch reaches its best 0.80 at 300 s; a transfer run reaches 0.80 at epoch 2 (120 s): ratio 0.4, beside 0.37."""
    curves = {"scratch": ("scratch", "epoch,time,metrics/mAP50(B)\n1,100,0.3\n2,200,0.7\n3,300,0.8\n4,400,0.79\n"),
              "coco": ("3", "epoch,time,metrics/mAP50(B)\n1,60,0.75\n2,120,0.81\n3,180,0.82\n")}
    for name, (stage, results) in curves.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.csv").write_text(results)
        (tmp_path / name / "timing.json").write_text(json.dumps(
            {"stage": stage, "model": "yolov3-tiny-darknet", "data": "/d/bccd/data.yaml", "imgsz": 416, "epochs": 3,
             "wall_seconds": 400 if stage == "scratch" else 180, "seconds_per_epoch": 1.0}))
    timing, _ = load_timings([tmp_path / "scratch", tmp_path / "coco"])
    comp = scratch_vs_transfer(timing, {"scratch": tmp_path / "scratch", "coco": tmp_path / "coco"})
    row = comp.iloc[0]
    assert (row.transfer_epoch_to_scratch_best, row.transfer_time_to_scratch_best) == (2, 120.0)
    assert row.time_ratio_at_equal_ap == pytest.approx(0.4) and row.study_ratio == pytest.approx(2.5 / 6.8, abs=1e-4)


def test_report_md_keeps_the_reproduce_command_whole(report_dir):
    """Markdown shows the command in backticks, with every option that shaped the numbers (--imgsz here)."""
    import re

    md = (report_dir / "report.md").read_text()
    command = re.search(r"`(bccd-yolo report [^`]+)`", md)
    assert command and "--imgsz 64" in command.group(1) and "--split val" in command.group(1)
    assert md.count("`") % 2 == 0


def test_every_report_plot_draws_without_a_display(tmp_path):
    """Each plot on its own, in a process whose default backend needs a display (TkAgg, no DISPLAY)."""
    import os
    import sys

    code = f"""
import numpy as np, pandas as pd
from pathlib import Path
from bccd_yolo.measure import report
out = Path({str(tmp_path)!r})
report._plot_timing(pd.DataFrame({{"run": ["a", "b"], "wall_seconds": [10.0, 4.0], "best_val_map50": [0.8, 0.82]}}), out / "t.png")
curve = (np.linspace(3, 1, 91), np.linspace(2, -2, 91))
report._plot_threshold_curves({{"RBC": curve}}, ["RBC"], {{"default": {{"RBC": 0.25}}}}, out / "c.png")
"""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "MPLBACKEND": "TkAgg"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "c.png").stat().st_size > 1000


def test_predicting_a_split_closes_every_image_it_opens(tmp_path, monkeypatch):
    """A split of tiled TIFFs (open file handles): every source is closed, also when detection fails."""
    import tifffile

    import bccd_yolo.core.images as images
    from bccd_yolo.core.detections import Detections
    from bccd_yolo.measure.evaluate import GroundTruth, predict_split

    opened = []
    real = images.open_image

    def tracking(path):
        src = real(path)
        opened.append(src)
        return src

    monkeypatch.setattr(images, "open_image", tracking)
    gts = []
    for i in range(3):
        tifffile.imwrite(tmp_path / f"{i}.tif", np.zeros((300, 300, 3), np.uint8), tile=(256, 256), photometric="rgb")
        gts.append(GroundTruth(tmp_path / f"{i}.tif", 300, 300, Detections.empty()))

    class Stub:
        names, batch, imgsz = ["RBC"], 1, 640

        def factor(self, mpp):
            return 1.0

        def __call__(self, ims, threshold=True, native=False):
            if len(opened) == 3:
                raise RuntimeError("the third image breaks the model")
            return [Detections.empty() for _ in ims]

    with pytest.raises(RuntimeError):
        predict_split(Stub(), gts, progress=False)
    assert len(opened) == 3 and all(src._tif.filehandle.closed for src in opened)
