"""The white-cell differential: crops of one physical size, the classifier's scores and threshold, and the
differential as counted (shares with Wilson intervals, erythroblasts per 100 white cells)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bccd_yolo.core.errors import InputError
from bccd_yolo.count.differential import NOT_TYPED, UNTYPED, CellTypes, differential
from bccd_yolo.data.cell_crops import CropDataset, CropGeometry, build_crops, cell_crop
from bccd_yolo.measure.differential import type_scores, unclassified_threshold


def disc_image(w: int, h: int, cx: int, cy: int, r: int) -> np.ndarray:
    im = np.full((h, w, 3), 230, np.uint8)
    cv2.circle(im, (cx, cy), r, (120, 40, 140), -1)
    return im


def disc_extent(crop: np.ndarray) -> tuple[float, float, float]:
    """Centre x, y and diameter of the dark disc in a crop."""
    ys, xs = np.nonzero(crop[..., 0] < 180)
    return float(xs.mean()), float(ys.mean()), float(xs.max() - xs.min() + 1)


@pytest.mark.parametrize("mpp", [0.075, 0.0987, 0.25])
def test_a_crop_shows_a_cell_at_one_physical_size_whatever_the_input_scale(mpp):
    """A 12 um cell at three input scales: centred in the crop, and 12 / 25 of its side across in each."""
    r = round(6.0 / mpp)
    im = disc_image(round(60 / mpp), round(50 / mpp), round(30 / mpp), round(25 / mpp), r)
    crop = cell_crop(im, 30 / mpp, 25 / mpp, mpp, crop_um=25.0, out_px=100)
    x, y, d = disc_extent(crop)
    assert crop.shape == (100, 100, 3)
    assert abs(x - 49.5) <= 1.5 and abs(y - 49.5) <= 1.5
    assert d == pytest.approx(100 * 12 / 25, abs=2.5)  # 2.5 px: one source pixel at 0.25 um/px is 1 crop px, plus AA


def test_a_crop_at_the_image_edge_is_filled_with_the_smear_not_a_frame():
    im = disc_image(200, 200, 10, 100, 8)
    crop = cell_crop(im, 10, 100, 0.1, crop_um=10.0, out_px=100)
    assert crop.shape == (100, 100, 3)
    assert crop.min() > 0  # no black padding: the left edge reflects the smear
    x, y, _ = disc_extent(crop)
    assert abs(y - 49.5) <= 1.5
    with pytest.raises(ValueError):
        cell_crop(im, 500, 500, 0.1)


def typed_folder(root, classes=("lymphocyte", "neutrophil"), per=2):
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per):
                cv2.imwrite(str(root / split / c / f"{c}_{i}.jpg"), disc_image(120, 120, 60, 60, 20 + i))
    return root


def test_crops_are_built_whole_and_reused_only_for_the_same_source_and_geometry(tmp_path):
    src = typed_folder(tmp_path / "fields")
    geometry = CropGeometry(10.0, 0.1, 64)
    out = tmp_path / "crops"
    built = build_crops(src, out, geometry)
    assert built.counts == {"train": {"lymphocyte": 2, "neutrophil": 2}, "val": {"lymphocyte": 2, "neutrophil": 2}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops", "fields"]  # no .partial left behind
    assert cv2.imread(str(out / "val" / "neutrophil" / "neutrophil_0.jpg")).shape == (64, 64, 3)
    assert CropDataset.read(out) == built
    stamp = (out / "crops.json").stat().st_mtime_ns
    assert build_crops(src, out, geometry) == built and (out / "crops.json").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="other crops"):
        build_crops(src, out, CropGeometry(20.0, 0.1, 64))


def test_a_typed_dataset_with_a_missing_split_or_mismatched_classes_is_refused(tmp_path):
    src = typed_folder(tmp_path / "a")
    (src / "val" / "neutrophil" / "neutrophil_0.jpg").unlink()
    (src / "val" / "neutrophil" / "neutrophil_1.jpg").unlink()
    with pytest.raises(InputError, match="empty: neutrophil"):
        build_crops(src, tmp_path / "out", CropGeometry(10.0, 0.1, 64))
    other = typed_folder(tmp_path / "b")
    (other / "val" / "neutrophil").rename(other / "val" / "monocyte")
    with pytest.raises(InputError, match="different classes"):
        build_crops(other, tmp_path / "out", CropGeometry(10.0, 0.1, 64))
    assert not (tmp_path / "out").exists()


def test_type_scores_match_a_hand_counted_confusion_matrix():
    classes = ["a", "b", "c"]
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 0])
    probs = np.eye(3)[pred] * 0.9 + 0.1 / 3
    s = type_scores(probs, truth, classes)
    assert s.confusion == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    # a: precision 2/3, recall 2/3; b: 2/3, 1; c: 0, 0
    assert s.precision == pytest.approx([2 / 3, 2 / 3, 0], abs=1e-4)
    assert s.recall == pytest.approx([2 / 3, 1, 0], abs=1e-4)
    assert s.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0) / 3, abs=1e-4)
    assert s.accuracy == pytest.approx(4 / 6, abs=1e-4) and s.unclassified == 0


def test_the_unclassified_threshold_drops_the_scores_where_calls_are_mostly_wrong():
    """Calls scoring under 0.5 are right one time in four, over it nine times in ten: the threshold falls
    between the two groups, and the cells under it are counted as unclassified, not in the confusion matrix."""
    rng = np.random.default_rng(0)
    low, high = rng.uniform(0.3, 0.5, 40), rng.uniform(0.6, 1.0, 200)
    top = np.concatenate([low, high])
    right = np.concatenate([np.arange(40) % 4 == 0, np.arange(200) % 10 != 0])
    truth = np.zeros(len(top), int)
    pred = np.where(right, 0, 1)
    probs = np.repeat(((1 - top) / 4)[:, None], 5, axis=1)  # five classes: the top score is the call's
    probs[np.arange(len(top)), pred] = top
    t = unclassified_threshold(probs, truth)
    assert 0.5 < t <= high.min()
    s = type_scores(probs, truth, list("vwxyz"), t)
    assert s.unclassified == pytest.approx(40 / 240, abs=1e-4)
    assert s.accuracy == pytest.approx(0.9, abs=1e-4)
    assert unclassified_threshold(np.eye(2)[[0, 1]], np.array([0, 1])) == 0.0  # all right: nothing is dropped


def test_the_differential_shares_exclude_erythroblasts_and_the_unclassified():
    from scipy.stats import binomtest

    names = ["erythroblast", "lymphocyte", "neutrophil"]
    index = np.array([2] * 6 + [1] * 3 + [0] + [UNTYPED] * 2 + [NOT_TYPED] * 5)
    diff = differential(CellTypes(names, index, np.ones(len(index))))
    assert diff["counts"] == {"erythroblast": 1, "lymphocyte": 3, "neutrophil": 6, "unclassified": 2}
    assert diff["classified"] == 9
    ne = diff["per_100"]["neutrophil"]
    assert ne["value"] == pytest.approx(100 * 6 / 9, abs=0.05)
    ci = binomtest(6, 9).proportion_ci(method="wilson")
    assert ne["ci95"] == [pytest.approx(100 * ci.low, abs=0.05), pytest.approx(100 * ci.high, abs=0.05)]
    assert diff["erythroblast_per_100_wbc"]["value"] == pytest.approx(100 / 9, abs=0.05)
    assert "erythroblast" not in diff["per_100"]
    empty = differential(CellTypes(names, np.array([NOT_TYPED] * 3), np.zeros(3)))
    assert empty["classified"] == 0 and empty["per_100"]["neutrophil"] is None
    assert empty["erythroblast_per_100_wbc"] is None


def test_a_differential_model_without_its_sidecar_is_refused_in_one_line(tmp_path):
    from bccd_yolo.count.detector import default_weights
    from bccd_yolo.count.differential import Differential

    with pytest.raises(InputError, match="not a white-cell type classifier"):
        Differential(default_weights())
    bad = tmp_path / "m.pt"
    bad.write_bytes(b"x")
    bad.with_suffix(".types.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(InputError, match="sidecar m.types.json"):
        Differential(bad)


BCCD_PHOTO = "BloodImage_00007.jpg"


@pytest.fixture(scope="module")
def counted_photo(bccd_source, tmp_path_factory):
    """One BCCD photo counted with the shipped differential and without it."""
    from bccd_yolo.cli import main

    tmp = tmp_path_factory.mktemp("diff")
    photo = bccd_source / "BCCD" / "JPEGImages" / BCCD_PHOTO
    assert main(["count", str(photo), "--json", str(tmp / "on.json"), "--geojson", str(tmp / "on.geojson"),
                 "--csv", str(tmp / "on.csv"), "--quiet"]) == 0
    assert main(["count", str(photo), "--json", str(tmp / "off.json"), "--no-differential", "--quiet"]) == 0
    return (json.loads((tmp / "on.json").read_text()), json.loads((tmp / "off.json").read_text()),
            json.loads((tmp / "on.geojson").read_text()), (tmp / "on.csv").read_text())


def test_count_types_every_white_cell_and_nothing_else(counted_photo):
    on, off, _, _ = counted_photo
    image = on["images"][0]
    wbc = [d for d in image["detections"] if d["class"] == "WBC"]
    assert wbc and all("type" in d and 0 < d["type_score"] <= 1 for d in wbc)
    assert all("type" not in d for d in image["detections"] if d["class"] != "WBC")
    diff = image["differential"]
    assert sum(diff["counts"].values()) == len(wbc)
    # the shares are over classified leukocytes: erythroblasts (nucleated red cells) and the unclassified are not
    assert diff["classified"] == len(wbc) - diff["counts"]["unclassified"] - diff["counts"]["erythroblast"]
    # typing never changes what was counted
    assert image["counts"] == off["images"][0]["counts"]
    assert [d["box"] for d in image["detections"]] == [d["box"] for d in off["images"][0]["detections"]]
    assert "differential" not in off["images"][0] and "total_differential" not in off


def test_qupath_gets_each_white_cell_as_a_derived_class_and_the_csv_its_shares(counted_photo):
    on, _, geo, csv_text = counted_photo
    types = [d["type"] for d in on["images"][0]["detections"] if d["class"] == "WBC"]
    names = sorted(f["properties"]["classification"]["name"] for f in geo["features"]
                   if f["properties"]["classification"]["name"].startswith("WBC"))
    assert names == sorted(f"WBC: {t}" for t in types)
    import csv
    import io

    row = next(csv.DictReader(io.StringIO(csv_text)))
    for t, n in on["images"][0]["differential"]["counts"].items():
        assert int(row[f"wbc_{t}"]) == n


def test_a_detector_given_as_the_differential_is_refused_in_one_line(bccd_source, tmp_path, capsys):
    from bccd_yolo.cli import main
    from bccd_yolo.count.detector import default_weights

    photo = bccd_source / "BCCD" / "JPEGImages" / BCCD_PHOTO
    code = main(["count", str(photo), "--differential", str(default_weights()), "--json", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bccd_yolov3_tiny.pt" in err[0] and "type classifier" in err[0]
    assert not (tmp_path / "c.json").exists()


def test_an_image_without_white_cells_has_an_empty_differential_not_an_error(tmp_path, capsys):
    from bccd_yolo.cli import main

    blank = tmp_path / "glass.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 235, np.uint8))
    assert main(["count", str(blank), "--json", str(tmp_path / "c.json"), "--quiet"]) == 0
    body = json.loads((tmp_path / "c.json").read_text())
    assert body["images"][0]["differential"]["classified"] == 0
    assert "differential: count" in capsys.readouterr().out


def test_the_shipped_classifiers_export_calls_what_its_checkpoint_calls(bccd_source):
    """OpenVINO (what count runs) against the torch checkpoint on real crops. The export stores FP16 weights, so
    probabilities may differ by a few thousandths; 0.02 leaves room for that and still catches a wrong
    channel order or scaling (which moves them by tenths)."""
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.differential import SHIPPED_TYPES, Differential, _TorchClassifier, read_crop

    src = open_image(bccd_source / "BCCD" / "JPEGImages" / BCCD_PHOTO)
    try:
        crops = [read_crop(src, np.array(b, float), 0.08, 25.0) for b in ([260, 170, 490, 380], [60, 230, 170, 340])]
    finally:
        src.close()
    exported = Differential(SHIPPED_TYPES, "openvino")
    reference = Differential(SHIPPED_TYPES, "torch")
    assert isinstance(reference._load(), _TorchClassifier)
    a, b = exported.probabilities(crops), reference.probabilities(crops)
    assert np.allclose(a.sum(axis=1), 1, atol=1e-3)
    assert np.abs(a - b).max() < 0.02


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_an_exported_classifier_takes_one_crop_a_pass_and_the_batch_never_changes_the_types(backend):
    """More crops a pass only hold more of the runtime's buffers on CPU (benchmarks/crop_batch.py), so exports
    classify one at a time; a batch that leaked between crops (a padded shape, a reused buffer) would change them."""
    from bccd_yolo.count.differential import SHIPPED_TYPES, Differential

    one, many = Differential(SHIPPED_TYPES, backend), Differential(SHIPPED_TYPES, backend, batch=16)
    rng = np.random.default_rng(0)
    crops = [cv2.GaussianBlur(rng.integers(0, 256, (150, 150, 3), np.uint8), (0, 0), 3) for _ in range(20)]
    model = one._model = one._load()
    passes: list[int] = []
    raw = model._runner.raw
    model._runner.raw = lambda x: passes.append(len(x)) or raw(x)
    a, b = one.probabilities(crops), many.probabilities(crops)
    assert passes == [1] * len(crops) and many._model.batch == 16
    np.testing.assert_allclose(a, b, atol=1e-5)  # the same crops, whatever travels with them


def test_a_slides_white_cells_are_typed_a_chunk_at_a_time_each_keeping_its_own_type():
    """Memory flat in a slide's white cells: crops are read and classified CROP_CHUNK at a time, never all at once,
    and each chunk's types land on its own cells (a chunk offset bug would type cells by their neighbours)."""
    from bccd_yolo.core.detections import Detections
    from bccd_yolo.core.images import PhotoSource
    from bccd_yolo.count.differential import CROP_CHUNK, SHIPPED_TYPES, Differential

    image = np.zeros((400, 6000, 3), np.uint8)
    image[:, 3000:] = 255  # dark left half, bright right half
    n = 3 * CROP_CHUNK  # four in five white: three chunks, the last one short
    xs = np.linspace(100, 5800, n)
    boxes = np.array([[x, 180, x + 40, 220] for x in xs], np.float32)
    cls = np.where(np.arange(n) % 5 == 0, 0, 1)  # every fifth a red cell, the rest white
    d = Detections(boxes, np.full(n, 0.9, np.float32), cls)
    model = Differential(SHIPPED_TYPES, "openvino")
    seen: list[int] = []

    def bright_is_second(crops):  # a stand-in classifier: type 1 for a bright crop, type 0 for a dark one
        seen.append(len(crops))
        k = np.array([float(c.mean() > 127) for c in crops], np.float32)
        return np.stack([1 - k, k] + [np.zeros_like(k)] * (len(model.names) - 2), axis=1)

    model._model = bright_is_second
    types = model.types(PhotoSource(Path("wide.png"), image), d, 1, 0.08)
    white = cls == 1
    assert max(seen) <= CROP_CHUNK and sum(seen) == white.sum() and len(seen) >= 3
    assert np.array_equal(types.index[~white], np.full((~white).sum(), NOT_TYPED))
    assert np.array_equal(types.index[white], (xs[white] + 20 > 3000).astype(int))


def test_a_differential_that_blood_rarely_shows_or_that_scores_low_is_doubted():
    from bccd_yolo.count.differential import doubts

    names = ["erythroblast", "lymphocyte", "neutrophil"]
    usual = CellTypes(names, np.array([2] * 7 + [1] * 4 + [0]), np.full(12, 0.95))  # 1 erythroblast per 11: 9/100
    assert doubts(usual, floor=0.7) == []
    odd = CellTypes(names, np.array([0] * 8 + [2] * 4), np.full(12, 0.95))  # 8 per 4: 200 per 100 white cells
    assert [r.split(":")[0] for r in doubts(odd, 0.7)] == ["differential"] and "8 of 12" in doubts(odd, 0.7)[0]
    few = CellTypes(names, np.array([0] * 5 + [2] * 4), np.full(9, 0.95))  # too few cells to call it odd
    assert doubts(few, 0.7) == []
    low = CellTypes(names, np.array([2, 1, 2, NOT_TYPED]), np.array([0.5, 0.6, 0.55, 0.0]))
    assert len(doubts(low, 0.7)) == 1 and "0.55 (median)" in doubts(low, 0.7)[0]
    assert doubts(low, 0.5) == []  # the median (0.55) is over this floor


def test_the_overlay_marks_a_type_scored_under_the_val_floor_as_a_guess():
    """One white cell from a microscope the classifier has not learnt is too few for a qc line, so the overlay
    itself says it: "ERB? 0.61" under the floor, "NEU 0.95" over it, and red cells keep their detection score."""
    from bccd_yolo.core.detections import Detections
    from bccd_yolo.count.differential import overlay_labels

    names = ["erythroblast", "neutrophil"]
    types = CellTypes(names, np.array([0, 1, NOT_TYPED, UNTYPED]), np.array([0.61, 0.95, 0.0, 0.3]))
    d = Detections(np.zeros((4, 4), np.float32), np.full(4, 0.9, np.float32), np.array([1, 1, 0, 1]))
    assert overlay_labels(types, d, floor=0.72) == ["ERB? 0.61", "NE 0.95", None, "? 0.30"]
    assert overlay_labels(types, d)[0] == "ERB 0.61"  # no floor known: no mark
