"""`bccd-yolo count` on real BCCD images with a small real model: outputs, overlays, backends and bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bccd_yolo.cli import main
from bccd_yolo.core.detections import Detections
from bccd_yolo.count.overlay import CLASS_COLOURS, draw_detections

LOW_CONF = "0.001"  # the one-epoch test model is unsure of everything; keep its boxes so counts are non-trivial


@pytest.fixture(scope="module")
def photos(bccd_dataset, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for p in sorted((bccd_dataset / "images" / "test").iterdir())[:3]:
        shutil.copy(p, folder / p.name)
    return folder


def run(args, capsys):
    code = main(["count", "--quiet", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_json_csv_and_table_agree(photos, tiny_weights, tmp_path, capsys):
    code, out, err = run([photos, "--weights", tiny_weights, "--conf", LOW_CONF, "--json", tmp_path / "c.json",
                          "--csv", tmp_path / "c.csv", "--imgsz", "64"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "c.json").read_text())
    names = ["RBC", "WBC", "Platelets"]
    assert report["model"] == str(tiny_weights) and list(report["total"]) == names
    assert report["thresholds"] == {n: 0.001 for n in names}
    assert len(report["images"]) == 3
    for im in report["images"]:
        assert (im["width"], im["height"]) == (640, 480)
        assert im["counts"] == {n: sum(d["class"] == n for d in im["detections"]) for n in names}
        for d in im["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and d["score"] >= 0.001
    assert report["total"] == {n: sum(im["counts"][n] for im in report["images"]) for n in names}
    assert sum(report["total"].values()) > 0
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [r["path"] for r in rows] == [im["path"] for im in report["images"]]
    assert all(int(r[n]) == im["counts"][n] for r, im in zip(rows, report["images"]) for n in names)
    rbc, wbc = report["total"]["RBC"], report["total"]["WBC"]
    total_line = [line for line in out.splitlines() if line.startswith("TOTAL")][0].split()
    assert total_line[1:3] == [str(rbc), str(wbc)]
    if rbc:
        assert float(total_line[4]) == pytest.approx(1000 * wbc / rbc, abs=0.05)


def test_conf_raises_the_bar_per_class(photos, tiny_weights, tmp_path, capsys):
    run([photos, "--weights", tiny_weights, "--conf", LOW_CONF, "--imgsz", "64", "--json", tmp_path / "a.json"], capsys)
    run([photos, "--weights", tiny_weights, "--conf", "RBC=1.0,WBC=0.001,Platelets=0.001", "--imgsz", "64",
         "--json", tmp_path / "b.json"], capsys)
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert b["total"]["RBC"] == 0 and b["total"]["WBC"] == a["total"]["WBC"]
    assert b["thresholds"]["RBC"] == 1.0


def test_overlay_has_the_input_size_and_the_class_colours(photos, tiny_weights, tmp_path, capsys):
    shutil.copy(next(photos.iterdir()), tmp_path)
    photo_path = tmp_path / next(photos.iterdir()).name
    code, _, _ = run([photo_path, "--out", tmp_path / "ov", "--json", tmp_path / "c.json"], capsys)  # the shipped model
    assert code == 0
    overlay_path = tmp_path / "ov" / f"{photo_path.stem}_overlay.jpg"
    overlay = Image.open(overlay_path)
    assert overlay.size == (640, 480)
    image = json.loads((tmp_path / "c.json").read_text())["images"][0]
    assert image["overlay"] == [str(overlay_path)]
    # every detection's left edge is drawn in its class colour where the photo is not. JPEG's 4:2:0 chroma subsampling
    # blurs a 2 px line's colour, so the check is the colour's dominant channel leading the others by 60 or more.
    a = np.asarray(overlay).astype(int)
    photo = np.asarray(Image.open(photo_path)).astype(int)

    def shows(px, rgb) -> bool:
        k = int(np.argmax(rgb))
        return px[k] - np.delete(px, k).max() >= 60

    checked = 0
    for d in image["detections"]:
        x1, y1, x2, y2 = (int(round(v)) for v in d["box"])
        if x1 < 2 or y2 - y1 < 20 or y1 < 120:  # off the edge, too small, or under the legend
            continue
        rgb = np.array(CLASS_COLOURS[d["class"]])
        mid = (y1 + y2) // 2
        if shows(photo[mid, x1], rgb):
            continue  # the photo has that colour already
        assert any(shows(a[y, x], rgb) for y in range(mid - 3, mid + 4) for x in (x1 - 1, x1, x1 + 1)), d
        checked += 1
    assert checked >= 3


def test_boxes_are_drawn_in_class_colours_with_the_score_above():
    im = Image.new("RGB", (200, 120), (255, 255, 255))
    det = Detections(np.array([[10, 40, 60, 100], [80, 40, 120, 90], [140, 50, 180, 110]], np.float32),
                     np.array([0.91, 0.5, 0.77], np.float32), np.array([0, 1, 2]))
    names = ["RBC", "WBC", "Platelets"]
    draw_detections(im, det, names, line=2)
    a = np.asarray(im)
    for (x1, y1, x2, y2), n in zip(det.xyxy.astype(int), names):
        assert tuple(a[(y1 + y2) // 2, x1]) == CLASS_COLOURS[n]  # left edge of the box
        above = a[y1 - 14 : y1 - 1, x1 : x1 + 30]
        assert (above != 255).any()  # the score label sits above the box
        assert tuple(a[(y1 + y2) // 2, (x1 + x2) // 2]) == (255, 255, 255)  # boxes are not filled


def test_slide_gets_a_tiled_overlay_and_preview(photos, tiny_weights, tmp_path, capsys):
    tiles = [np.asarray(Image.open(p)) for p in sorted(photos.iterdir())]
    slide = np.full((1100, 1500, 3), 235, np.uint8)
    for (y, x), t in zip([(0, 0), (500, 200), (300, 800)], tiles):
        slide[y : y + 480, x : x + 640] = t
    tifffile.imwrite(tmp_path / "slide.tif", slide, tile=(256, 256), photometric="rgb")
    code, _, err = run([tmp_path / "slide.tif", "--weights", tiny_weights, "--conf", LOW_CONF, "--imgsz", "64",
                        "--tile", "640", "--out", tmp_path / "ov", "--json", tmp_path / "s.json"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "s.json").read_text())["images"][0]
    assert report["tiles"] > 1 and (report["width"], report["height"]) == (1500, 1100) and report["detections"]
    with tifffile.TiffFile(tmp_path / "ov" / "slide_overlay.tif") as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].shape == (1100, 1500, 3)
        drawn = tif.asarray()
    assert (drawn != slide).any()
    # lossless, and readable beyond tifffile: libvips (libtiff) decodes its predictor and deflate to the same pixels
    import pyvips

    assert np.array_equal(pyvips.Image.new_from_file(str(tmp_path / "ov" / "slide_overlay.tif")).numpy(), drawn)
    far = drawn[1000:1090, 20:180]  # plain background, no photo and no box
    assert np.array_equal(far, slide[1000:1090, 20:180])
    preview = np.asarray(Image.open(tmp_path / "ov" / "slide_preview.png").convert("RGB")).astype(int)
    assert max(preview.shape[:2]) <= 2048
    # the preview is the slide at this scale (outside boxes) with the boxes drawn in class colours
    assert np.abs(preview[1000:1090, 20:180] - 235).max() <= 2  # plain background, far from photos and the legend
    reds = sum(np.all(preview[int(d["box"][1]):int(d["box"][3]), int(d["box"][0])] == CLASS_COLOURS[d["class"]], axis=-1).any()
               for d in report["detections"] if d["box"][1] > 150)
    assert reds >= 1


def test_a_slide_overlay_shows_its_own_progress_only_when_asked(tmp_path, capsys):
    """The overlay of a large slide takes minutes after its tiles' bar has ended: it gets a bar of its own TIFF
    tiles (1500 x 1100 px in 512 px tiles: 3 x 3), and none under --quiet."""
    from bccd_yolo.core.images import PhotoSource
    from bccd_yolo.count.overlay import write_slide_overlay

    src = PhotoSource(Path("slide.png"), np.full((1100, 1500, 3), 235, np.uint8))
    d = Detections(np.array([[100, 100, 200, 200]], np.float32), np.array([0.9], np.float32), np.array([0]))
    names, counts = ["RBC", "WBC", "Platelets"], {"RBC": 1, "WBC": 0, "Platelets": 0}
    write_slide_overlay(src, d, names, counts, tmp_path / "a.tif", tmp_path / "a.png", progress=True)
    err = capsys.readouterr().err
    assert "slide.png overlay: 100%" in err and "9/9" in err
    write_slide_overlay(src, d, names, counts, tmp_path / "b.tif", tmp_path / "b.png")
    assert capsys.readouterr().err == ""


def test_a_tiled_tiff_scanned_coarser_than_the_model_is_counted_enlarged(photos, tmp_path, capsys):
    """A slide at 0.1 um/px (the shipped model sees 0.0798) is enlarged tile by tile; reading a tiled TIFF
    for enlargement once found no pyramid level to read from and ended in a traceback."""
    tiles = [np.asarray(Image.open(p)) for p in sorted(photos.iterdir())]
    slide = np.full((1100, 1500, 3), 235, np.uint8)
    for (y, x), t in zip([(0, 0), (500, 200), (300, 800)], tiles):
        slide[y : y + 480, x : x + 640] = t
    tifffile.imwrite(tmp_path / "slide.tif", slide, tile=(256, 256), photometric="rgb", resolution=(1e5, 1e5),
                     resolutionunit=tifffile.RESUNIT.CENTIMETER)  # 1e5 px per cm: 0.1 um/px
    code, _, err = run([tmp_path / "slide.tif", "--json", tmp_path / "s.json", "--no-differential"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "s.json").read_text())["images"][0]
    assert (report["mpp"], report["mpp_source"]) == (pytest.approx(0.1), "file") and report["tiles"] > 1
    assert report["counts"]["RBC"] > 0


def test_onnx_backend_agrees_with_torch(photos, tiny_weights, tmp_path, capsys):
    """Backend parity as README states it: every box one backend keeps and the other does not scores within 0.02 of
    its class threshold (here 0.01 for every class)."""
    weights = tmp_path / "w.pt"
    shutil.copy(tiny_weights, weights)
    outs = {}
    for backend in ("torch", "onnx"):
        code, out, err = run([photos, "--weights", weights, "--backend", backend, "--conf", "0.01", "--imgsz", "64",
                              "--json", tmp_path / f"{backend}.json"], capsys)
        assert code == 0, err
        assert "export" not in out.lower() and "onnx:" not in out.lower()  # --quiet quiets the export too
        outs[backend] = json.loads((tmp_path / f"{backend}.json").read_text())
    import hashlib

    from bccd_yolo.core.detections import Detections
    from bccd_yolo.core.matching import match

    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    assert [p.name for p in tmp_path.glob("w.*.onnx")] == [f"w.{digest}.onnx"]
    names = outs["torch"]["images"][0]["counts"].keys()

    def boxes(im):
        d = im["detections"]
        return Detections(np.array([x["box"] for x in d], np.float32).reshape(-1, 4), np.array([x["score"] for x in d], np.float32),
                          np.array([list(names).index(x["class"]) for x in d], np.int64))

    for t, o in zip(outs["torch"]["images"], outs["onnx"]["images"]):
        a, b = boxes(t), boxes(o)
        m = match(a, b)
        lone = np.concatenate([a.score[~m.pred], b.score[~m.truth]])
        assert (lone < 0.01 + 0.02).all(), (t["path"], lone)
    # other weights copied over the file with the same time stamp (cp -p): a new export, never the stale one
    from bccd_yolo.count.detector import SHIPPED_WEIGHTS

    shutil.copy2(SHIPPED_WEIGHTS, weights)
    import os

    os.utime(weights, (tmp_path.stat().st_atime, (tmp_path / f"w.{digest}.onnx").stat().st_mtime - 10))
    code, _, err = run([photos, "--weights", weights, "--backend", "onnx", "--imgsz", "64"], capsys)
    assert code == 0, err
    new = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    assert sorted(p.name for p in tmp_path.glob("w.*.onnx")) == sorted([f"w.{digest}.onnx", f"w.{new}.onnx"])


def test_a_bad_file_in_a_folder_is_reported_and_the_rest_counted(photos, tiny_weights, tmp_path, capsys):
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "broken.jpg").write_bytes((photos / "BloodImage_00007.jpg").read_bytes()[:300])
    code, _, err = run([folder, "--weights", tiny_weights, "--imgsz", "64", "--json", tmp_path / "c.json"], capsys)
    assert code != 0
    assert err.splitlines() == [line for line in err.splitlines() if "broken.jpg" in line] and len(err.splitlines()) == 1
    report = json.loads((tmp_path / "c.json").read_text())
    assert len(report["images"]) == 3 and report["errors"][0]["path"].endswith("broken.jpg")


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda d: d / "notes.txt", "unsupported file type .txt"),
        (lambda d: d / "empty", "folder holds no supported images"),
        (lambda d: d / "missing.png", "file not found"),
    ],
)
def test_bad_paths_are_one_line_errors(make, needle, tiny_weights, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    code, _, err = run([make(tmp_path), "--weights", tiny_weights, "--imgsz", "64"], capsys)
    assert code != 0 and len(err.splitlines()) == 1 and needle in err and str(make(tmp_path)) in err, err


def test_missing_weights_is_a_one_line_error(photos, tmp_path, capsys):
    code, _, err = run([photos, "--weights", tmp_path / "nope.pt"], capsys)
    assert code != 0 and err.count("\n") == 0 and "nope.pt" in err and "not found" in err


def test_edge_rules_pick_from_the_same_detections_and_are_recorded(photos, tmp_path, capsys):
    """The shipped model on three photos: `interior` and `frame` keep exactly the `all` detections the rule allows
    (computed here from the boxes), and JSON and CSV name the rule."""
    got = {}
    for rule in ("all", "interior", "frame"):
        code, _, err = run([photos, "--edge", rule, "--json", tmp_path / f"{rule}.json", "--csv", tmp_path / f"{rule}.csv"],
                           capsys)
        assert code == 0, err
        got[rule] = json.loads((tmp_path / f"{rule}.json").read_text())
        assert got[rule]["edge_rule"] == rule
        assert {r["edge_rule"] for r in csv.DictReader((tmp_path / f"{rule}.csv").open())} == {rule}
    cut = 0
    for i, image in enumerate(got["all"]["images"]):
        w, h = image["width"], image["height"]
        boxes = [tuple(d["box"]) for d in image["detections"]]
        interior = [b for b in boxes if b[0] > 2 and b[1] > 2 and b[2] < w - 2 and b[3] < h - 2]
        frame = [b for b in boxes if b[2] < w - 2 and b[3] < h - 2]
        assert [tuple(d["box"]) for d in got["interior"]["images"][i]["detections"]] == interior
        assert [tuple(d["box"]) for d in got["frame"]["images"][i]["detections"]] == frame
        cut += len(boxes) - len(interior)
    assert cut > 0  # BCCD photos are full of cells cut by the frame: the rules must differ somewhere


@pytest.mark.parametrize("command", [["count", "{photo}"], ["finetune", "--stage", "3", "--data", "{data}"]])
def test_a_checkpoint_that_would_run_code_is_refused_by_name(command, photos, mini_bccd, tmp_path, capsys):
    import os

    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "forum-model.pt"
    torch.save({"model": Payload(), "train_args": {}}, evil)
    photo = next(photos.iterdir())
    args = [a.format(photo=photo, data=mini_bccd) for a in command]
    import subprocess
    import sys

    # in a fresh process, as a user runs it (pytest's captured streams would mix Ultralytics' log handlers in)
    proc = subprocess.run([sys.executable, "-m", "bccd_yolo", *args, "--weights", str(evil),
                           *(["--project", str(tmp_path / "runs")] if "finetune" in args else [])],
                          capture_output=True, text=True, timeout=300)
    code, err = proc.returncode, proc.stderr.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "forum-model.pt" in err and "posix.system" in err, err
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_checkpoints_load_on_the_weights_only_path(tiny_weights):
    """The shipped model and a checkpoint finetune wrote load with the allow-list on (the package's default)."""
    import os

    from bccd_yolo.count.detector import SHIPPED_WEIGHTS
    from bccd_yolo.yolo.models import load_checkpoint_model

    assert os.environ["ULTRALYTICS_SAFE_LOAD"] == "1"
    for path in (SHIPPED_WEIGHTS, tiny_weights):
        assert load_checkpoint_model(str(path)).names[0] == "RBC"


def test_outputs_never_collide_nor_become_inputs(photos, tiny_weights, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    first = next(photos.iterdir())
    shutil.copy(first, a / "x.jpg")
    Image.open(first).transpose(Image.FLIP_LEFT_RIGHT).save(b / "x.jpg")  # another picture, same name
    out = tmp_path / "o"
    old = __import__("os").umask(0o022)
    try:
        code, _, err = run([a / "x.jpg", b / "x.jpg", "--out", out, "--weights", tiny_weights, "--conf", LOW_CONF,
                            "--imgsz", "64"], capsys)
    finally:
        __import__("os").umask(old)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # .bccd-yolo-output lists them
    assert names == ["x-2_overlay.jpg", "x_overlay.jpg"]
    assert not np.array_equal(np.asarray(Image.open(out / names[0])), np.asarray(Image.open(out / names[1])))
    assert all((out / n).stat().st_mode & 0o777 == 0o644 for n in names)  # the umask, not mkstemp's 0600
    # a folder counted into itself: the second run does not count the first run's overlays
    shutil.copy(first, out / "photo.jpg")
    for _ in range(2):
        code, _, err = run([out, "--out", out, "--weights", tiny_weights, "--conf", LOW_CONF, "--imgsz", "64",
                            "--json", tmp_path / "c.json"], capsys)
        assert code == 0, err
        assert [Path(i["path"]).name for i in json.loads((tmp_path / "c.json").read_text())["images"]] == ["photo.jpg"]


def test_geojson_per_input_matches_the_json_detections(photos, tiny_weights, tmp_path, capsys):
    from shapely.geometry import shape

    code, _, err = run([photos, "--weights", tiny_weights, "--conf", "0.05", "--imgsz", "64", "--json", tmp_path / "c.json",
                        "--geojson", tmp_path / "geo"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "c.json").read_text())
    for image in report["images"]:
        fc = json.loads((tmp_path / "geo" / f"{Path(image['path']).stem}.geojson").read_text())
        assert len(fc["features"]) == len(image["detections"])
        for f, d in zip(fc["features"], image["detections"]):
            assert shape(f["geometry"]).is_valid
            assert shape(f["geometry"]).bounds == pytest.approx(tuple(d["box"]), abs=0.06)  # JSON rounds to 0.1
            assert f["properties"]["classification"]["name"] == d["class"]


def test_a_box_at_the_top_edge_has_its_score_inside():
    im = Image.new("RGB", (120, 80), (255, 255, 255))
    det = Detections(np.array([[10, 0, 80, 60]], np.float32), np.array([0.9], np.float32), np.array([0]))
    draw_detections(im, det, ["RBC"], line=2)
    a = np.asarray(im)
    inside = a[3:20, 13:45]
    assert (np.abs(inside.astype(int) - CLASS_COLOURS["RBC"]).max(axis=2) < 60).sum() > 10  # the score's red digits
