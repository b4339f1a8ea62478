"""The qc verdict: reasons from evidence, shown even under --quiet, never changing the counts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import BlobDetector
from PIL import Image

from bccd_yolo.core.detections import Detections
from bccd_yolo.count.counting import count_images
from bccd_yolo.count.options import CountOptions
from bccd_yolo.count.qc import Signals, reasons, signals

NAMES = ["RBC", "WBC", "Platelets"]
TH = {"RBC": 0.5, "WBC": 0.4, "Platelets": 0.4}


def field(tmp_path, colour, n=24, name="f.png"):
    """Discs of red-cell size on a pale background; `colour` decides whether the blob detector sees them."""
    canvas = np.full((480, 640, 3), 235, np.uint8)
    for k in range(n):
        cv2.circle(canvas, (50 + (k % 6) * 105, 60 + (k // 6) * 110), 20, colour, -1)
    Image.fromarray(canvas).save(tmp_path / name)
    return tmp_path / name


def test_stain_without_cells_found_is_few_cells_and_the_counts_stay(tmp_path):
    seen = field(tmp_path, (255, 0, 0), name="seen.png")  # red discs: the detector finds every one
    unseen = field(tmp_path, (120, 60, 160), name="unseen.png")  # violet discs it does not know
    (a, b), _ = count_images([seen, unseen], BlobDetector(), CountOptions(mpp=1.0), progress=False)
    assert a.counts["RBC"] == 24 and not any(r.startswith("few cells") for r in a.qc), a.qc
    assert b.counts["RBC"] == 0 and any(r.startswith("few cells") for r in b.qc), b.qc
    (c,), _ = count_images([unseen], BlobDetector(), CountOptions(mpp=1.0, qc=False), progress=False)
    assert c.qc == [] and np.array_equal(c.detections.xyxy, b.detections.xyxy)  # a verdict never changes the counts


PLASMA, GLASS, DARK = (200, 190, 198), (245, 245, 245), (12, 12, 12)  # colourless all three, far apart in CIELAB


def surrounded(tmp_path, colour, how, name):
    """A field of 12 cells 81 px across (rings with a pale centre, as red cells are) on plasma, as a photo at a
    smear's edge shows it (bare glass beside it, a third or more of the photo) or an eyepiece camera does (inside
    a dark surround, half of the photo)."""
    smear = np.full((480, 640, 3), PLASMA, np.uint8)
    for k in range(12):
        cv2.circle(smear, (80 + (k % 4) * 160, 80 + (k // 4) * 160), 33, colour, 15)
    if how == "dark":
        canvas = np.full((720, 880, 3), DARK, np.uint8)
        canvas[120:600, 120:760] = smear
    else:
        canvas = np.full((480, 640 + {"glass": 320, "more glass": 700}[how], 3), GLASS, np.uint8)
        canvas[:, :640] = smear
    Image.fromarray(canvas).save(tmp_path / name)
    return tmp_path / name


def test_glass_beside_a_field_and_a_dark_surround_are_not_stain_the_model_missed(tmp_path):
    """Colourless ground wider than a cell is not smear: the cells found cover the smear's stain whether the
    glass or the dark surround is less (the plasma is the commonest colour) or more of the photo than the plasma
    is. Cells the detector does not see beside glass are still `few cells`."""
    seen = [surrounded(tmp_path, (255, 0, 0), how, f"{how}.png") for how in ("glass", "more glass", "dark")]
    unseen = surrounded(tmp_path, (120, 60, 160), "more glass", "unseen.png")
    # at 0.5 um/px the blob detector's red cell (41 px at 1 um/px) is 82 px across: these discs
    counted, _ = count_images([*seen, unseen], BlobDetector(), CountOptions(mpp=0.5), progress=False)
    for c in counted[:3]:
        assert c.counts["RBC"] == 12 and c.qc == [], (c.path, c.qc)
    assert counted[3].counts["RBC"] == 0 and any(r.startswith("few cells") for r in counted[3].qc), counted[3].qc


def test_a_field_lit_unevenly_is_not_stain_the_model_missed(tmp_path):
    """A lamp not centred or flattened leaves the corners darker: its tinted plasma there is no stain, so 12 cells
    found of 12 are not `few cells`; cells the detector does not see in the same light still are."""
    h, w = 480, 640
    y, x = np.mgrid[0:h, 0:w]
    light = 1 - 0.3 * ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)  # corners 30 % darker
    paths = []
    for colour, name in (((255, 0, 0), "seen.png"), ((120, 60, 160), "unseen.png")):
        field = np.full((h, w, 3), (230, 205, 220), np.float32)  # pink-tinted plasma, as PBC's and Raabin's
        for k in range(12):
            cv2.circle(field, (80 + (k % 4) * 160, 80 + (k // 4) * 160), 33, colour, 15)
        Image.fromarray(np.clip(field * light[..., None], 0, 255).astype(np.uint8)).save(tmp_path / name)
        paths.append(tmp_path / name)
    (seen, unseen), _ = count_images(paths, BlobDetector(), CountOptions(mpp=0.5), progress=False)
    assert seen.counts["RBC"] == 12 and seen.qc == [], seen.qc
    assert unseen.counts["RBC"] == 0 and any(r.startswith("few cells") for r in unseen.qc), unseen.qc


def test_near_threshold_scores_and_white_cells_beside_red_ones_are_reasons():
    boxes = np.array([[i * 30, 0, i * 30 + 20, 20] for i in range(10)], np.float32)
    near = Detections(boxes, np.full(10, 0.55, np.float32), np.zeros(10, np.int64))  # all within 0.1 of RBC's 0.5
    sure = Detections(boxes, np.full(10, 0.9, np.float32), np.zeros(10, np.int64))
    assert any(r.startswith("uncertain") for r in reasons(signals(near, NAMES, TH, 1e6, None)))
    assert reasons(signals(sure, NAMES, TH, 1e6, None)) == []
    mixed = Detections(boxes, np.full(10, 0.9, np.float32), np.array([1] * 4 + [0] * 6, np.int64))
    assert any(r.startswith("white cells") for r in reasons(signals(mixed, NAMES, TH, 1e6, None)))
    one_wbc = Detections(boxes, np.full(10, 0.9, np.float32), np.array([1] + [0] * 9, np.int64))  # a field around one WBC
    assert reasons(signals(one_wbc, NAMES, TH, 1e6, None)) == []
    assert reasons(Signals(coverage=None, near=0.0, cells=0, wbc=0, rbc=0)) == []  # bare glass: nothing to judge


def test_cells_over_far_more_than_the_stained_area_is_a_faint_stain_and_bare_glass_is_not():
    """A stain paler than any trained on: the cells found (30 % of the field) cover 3x what stands out from the
    background, or stand on a field whose stain is under MIN_STAINED; glass without cells says nothing."""
    boxes = np.array([[i * 100, 0, i * 100 + 87, 87] for i in range(10)], np.float32)  # 10 discs of 5,945 px^2
    cells = Detections(boxes, np.full(10, 0.9, np.float32), np.zeros(10, np.int64))
    area = 10 * np.pi / 4 * 87**2 / 0.3
    assert any(r.startswith("faint") for r in reasons(signals(cells, NAMES, TH, area, 0.1)))
    assert not any(r.startswith("faint") for r in reasons(signals(cells, NAMES, TH, area, 0.3)))  # coverage 1: right
    faint = reasons(signals(cells, NAMES, TH, area, 0.02))  # under MIN_STAINED: still judged when cells are found
    assert any(r.startswith("faint") for r in faint) and not any(r.startswith("few cells") for r in faint)
    none = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert reasons(signals(none, NAMES, TH, area, 0.01)) == []


def test_qc_lines_show_under_quiet_and_in_json_and_csv(tmp_path, capsys, monkeypatch):
    import bccd_yolo.count.detector as detector_module
    from bccd_yolo.cli import main

    monkeypatch.setattr(detector_module, "Detector", lambda *a, **k: BlobDetector())
    BlobDetector.weights, BlobDetector.backend, BlobDetector.runs_at = "blob", "blob", "f32"
    unseen = field(tmp_path, (120, 60, 160), name="unseen.png")
    code = main(["count", str(unseen), "--quiet", "--mpp", "1.0", "--json", str(tmp_path / "c.json"),
                 "--csv", str(tmp_path / "c.csv")])
    out = capsys.readouterr().out
    assert code == 0 and "qc: unseen.png: few cells" in out
    assert json.loads((tmp_path / "c.json").read_text())["images"][0]["qc"][0].startswith("few cells")
    assert "few cells" in (tmp_path / "c.csv").read_text().splitlines()[1]


@pytest.mark.parametrize("weights", [None, [0, 1]])
def test_calibration_weighs_each_source_the_same(weights):
    from bccd_yolo.measure.calibrate import calibrate_thresholds

    # source A (8 images) wants a low RBC threshold, source B (2 images) a high one
    def image(scores, true):
        return Detections(np.zeros((len(scores), 4), np.float32), np.array(scores, np.float32), np.zeros(len(scores), np.int64)), true

    a = [image([0.9, 0.35], 2) for _ in range(8)]
    b = [image([0.9, 0.35, 0.36, 0.37], 1) for _ in range(2)]
    preds = [p for p, _ in a + b]
    true = np.array([[t, 0, 0] for _, t in a + b])
    groups = None if weights is None else [np.arange(8), np.arange(8, 10)]
    t = calibrate_thresholds(preds, true, NAMES, groups=groups).thresholds["RBC"]
    if groups is None:
        assert t <= 0.35  # eight images to two: A decides
    else:
        # both sources' MAE summed: a threshold in (0.37, 0.9] costs A 1 per image and B nothing, one at or below 0.35
        # costs A nothing and B 3: the mean of the two curves is lowest above 0.37
        assert 0.37 < t <= 0.9


def discs(path, colour, background=(235, 235, 235)):
    """24 stained discs on a pale background, as a field."""
    canvas = np.full((240, 320, 3), background, np.uint8)
    for k in range(24):
        cv2.circle(canvas, (25 + (k % 6) * 52, 30 + (k // 6) * 58), 18, colour, -1)
    Image.fromarray(canvas).save(path)
    return path


def test_a_stain_hue_outside_the_training_fields_is_a_reason_and_calibrate_records_the_range(tmp_path):
    """calibrate records the hue range of its train split's stain; a field whose stain has another hue (violet
    discs against pink ones) is `stain colour`, one of the trained hue is not, and grey stain has no hue."""
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.qc import stain_of
    from bccd_yolo.measure.calibrate import training_stain
    from bccd_yolo.measure.evaluate import load_ground_truth
    from bccd_yolo.yolo.data import resolve_data

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    for i in range(12):  # pink-red discs, a little darker each time
        discs(tmp_path / "images" / "train" / f"f{i}.png", (200 - 4 * i, 90, 120))
        (tmp_path / "labels" / "train" / f"f{i}.txt").write_text("")
    discs(tmp_path / "images" / "val" / "v.png", (176, 90, 120))  # as the middle train field
    (tmp_path / "labels" / "val" / "v.txt").write_text("")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: {NAMES}\n")
    record = training_stain(load_ground_truth(resolve_data(str(tmp_path / "data.yaml"))[1], "train"))
    assert record is not None
    hues = tuple(record["hue_deg"])

    def verdict(path):
        src = open_image(path)
        stain = stain_of(src)
        src.close()
        return stain, reasons(Signals(None, 0.0, 0, 0, 0, stain.share, stain.hue), hues)

    pink, said = verdict(tmp_path / "images" / "val" / "v.png")
    assert hues[0] <= pink.hue <= hues[1] and said == []
    violet, said = verdict(discs(tmp_path / "violet.png", (110, 70, 200)))
    assert any(r.startswith("stain colour") for r in said), (violet, hues)
    grey, said = verdict(discs(tmp_path / "grey.png", (120, 120, 120)))
    assert grey.hue is None and said == []


def finetuned_on(root):
    """What finetune leaves beside a checkpoint trained at 320 px on root's images/train: its sidecar (the scale and
    stain of the train split). Returns the checkpoint's path."""
    from bccd_yolo.train.finetune import record_scale

    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames: {NAMES}\n")
    weights = root / "run" / "weights" / "best.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"not read")
    record_scale(root / "run", str(root / "data.yaml"), 320)
    return weights


def test_a_checkpoint_only_finetuned_carries_its_training_stain_and_scale(tmp_path):
    """finetune's sidecar (before any calibrate) records the stain hues and the red cells' scale of its train
    split, so qc can say `stain colour` of a model nobody calibrated: pink train fields, violet outside."""
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.qc import stain_of
    from bccd_yolo.count.thresholds import read_model_scale, read_stain_hues

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    # each disc (radius 18, so 37 px across) labelled as a whole red cell of the 320 x 240 field
    lines = "".join(f"0 {(25 + (k % 6) * 52) / 320:.6f} {(30 + (k // 6) * 58) / 240:.6f} {37 / 320:.6f} {37 / 240:.6f}\n"
                    for k in range(24))
    for i in range(12):
        discs(tmp_path / "images" / "train" / f"f{i}.png", (184 - 2 * i, 90, 120))
        (tmp_path / "labels" / "train" / f"f{i}.txt").write_text(lines)
    weights = finetuned_on(tmp_path)
    hues, scale = read_stain_hues(weights), read_model_scale(weights)
    assert hues is not None and scale is not None
    assert abs(scale.rbc_px - 37) <= 1  # the labelled cells' size, at imgsz 320 = the fields' own width

    def hue(path):
        src = open_image(path)
        try:
            return stain_of(src).hue
        finally:
            src.close()

    assert hues[0] <= hue(tmp_path / "images" / "train" / "f6.png") <= hues[1]
    violet = hue(discs(tmp_path / "violet.png", (110, 70, 200)))
    assert not hues[0] <= violet <= hues[1]


def test_the_training_stain_is_measured_as_count_measures_a_field(tmp_path):
    """The hue range a checkpoint records is measured as `count` measures an input, knowing its red cells' size: a
    strip of bare grey-blue glass beside the train fields' smear is not stain. Counted, a field of the same smear
    without the strip lies inside the range; measured without the cells' size, the strip pulled the range 20
    degrees towards blue and left it outside."""
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.qc import stain_of
    from bccd_yolo.count.thresholds import read_stain_hues

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    # the four columns of discs left of the strip, labelled as whole red cells 37 px across
    lines = "".join(f"0 {(25 + c * 52) / 320:.6f} {(30 + r * 58) / 240:.6f} {37 / 320:.6f} {37 / 240:.6f}\n"
                    for r in range(4) for c in range(4))
    for i in range(12):
        path = discs(tmp_path / "images" / "train" / f"f{i}.png", (180 - i, 150, 165))
        field = np.asarray(Image.open(path)).copy()
        field[:, 200:] = (200, 200, 210)  # bare glass: colourless, wider than a cell
        Image.fromarray(field).save(path)
        (tmp_path / "labels" / "train" / f"f{i}.txt").write_text(lines)
    weights = finetuned_on(tmp_path)
    hues = read_stain_hues(weights)
    assert hues is not None

    src = open_image(discs(tmp_path / "middle.png", (174, 150, 165)))
    try:
        counted = stain_of(src, 37.0).hue  # count's measure at the model's scale: its red cells 37 px across
    finally:
        src.close()
    assert counted is not None and hues[0] - 1 <= counted <= hues[1] + 1, (counted, hues)


def banded(plasma, shades, radius=18):
    """24 discs (shades in turn) on plasma in vertical bands of the colours given, as a lamp lights a field unevenly."""
    field = np.zeros((240, 330, 3), np.uint8)
    for i, colour in enumerate(plasma):
        field[:, i * 330 // len(plasma) : (i + 1) * 330 // len(plasma)] = colour
    for k in range(24):
        cv2.circle(field, (25 + (k % 6) * 55, 30 + (k // 6) * 58), radius, shades[k % len(shades)], -1)
    return field


def test_the_background_is_the_plasma_when_its_colour_or_the_cells_spreads_over_shades():
    """Plasma lit in three shades (each a smaller share than the cells') is still the background, so the stain is the
    cells', as on the evenly lit field; counting only the commonest colour took the cells for background and the
    plasma for a yellow stain (hue 82, share 0.69). Cells in four shades, together more than the even plasma, do not
    become the background either (as counting neighbouring shades together alone would make them)."""
    from bccd_yolo.count.qc import stain_of_pixels

    even = stain_of_pixels(banded([(234, 222, 206)], [(200, 90, 120)]))
    shaded = stain_of_pixels(banded([(242, 230, 214), (234, 222, 206), (226, 214, 198)], [(200, 90, 120)]))
    assert even.hue is not None and shaded.hue == pytest.approx(even.hue, abs=1.0)
    assert shaded.share == pytest.approx(even.share, abs=0.01)
    field = banded([(234, 222, 206)], [(200 - 10 * i, 90 - 4 * i, 120 - 6 * i) for i in range(4)], radius=24)
    cells = float((field != (234, 222, 206)).any(axis=2).mean())  # 0.54 of the field, the plasma one colour
    assert stain_of_pixels(field).share == pytest.approx(cells, abs=0.01)


def test_hue_ranges_wrap_around_180_degrees():
    from bccd_yolo.count.qc import hue_outside

    assert hue_outside(0.0, (-40.0, 30.0)) == 0 and hue_outside(50.0, (-40.0, 30.0)) == pytest.approx(20)
    assert hue_outside(-60.0, (-40.0, 30.0)) == pytest.approx(20)
    assert hue_outside(180.0, (170.0, -170.0)) == 0 and hue_outside(0.0, (170.0, -170.0)) == pytest.approx(170)


def test_an_image_too_large_to_read_whole_is_judged_on_windows_of_what_was_predicted(tmp_path):
    """Over QC_WHOLE_PIXELS (a slide, stitched fields) the stain is measured on windows spread over the tiles
    predicted: cells found over the whole smear give no flag; cells the detector does not see are `few cells`,
    as on a photo. A strip of bare glass (a smear's edge) is neither smear nor stain."""
    from bccd_yolo.count.counting import QC_WHOLE_PIXELS

    h, w = 1900, 2400
    assert h * w > QC_WHOLE_PIXELS
    paths = []
    for colour, name in (((255, 0, 0), "seen.png"), ((120, 60, 160), "unseen.png")):
        canvas = np.full((h, w, 3), PLASMA, np.uint8)
        canvas[:, 1900:] = GLASS
        for y in range(40, h - 40, 70):
            for x in range(40, 1860, 70):
                cv2.circle(canvas, (x, y), 20, colour, -1)
        Image.fromarray(canvas).save(tmp_path / name)
        paths.append(tmp_path / name)
    (seen, unseen), _ = count_images(paths, BlobDetector(), CountOptions(mpp=1.0), progress=False)
    assert seen.tiles > 1 and seen.counts["RBC"] == 26 * 26 and seen.qc == [], seen.qc
    assert unseen.counts["RBC"] == 0 and any(r.startswith("few cells") for r in unseen.qc), unseen.qc


def test_windows_stains_pool_by_area_and_their_hues_by_direction():
    """Two windows of equal stained area with hues 20 degrees apart across -180/180 pool to the hue between them
    (an arithmetic mean would give 0, the opposite side); a window too grey for a hue adds area but no hue."""
    from bccd_yolo.count.qc import Stain, pooled

    s = pooled([Stain(0.5, 170.0), Stain(0.25, -170.0), Stain(0.5, None)], [1.0, 2.0, 1.0])
    assert s.share == pytest.approx(1.5 / 4) and abs(abs(s.hue) - 180) < 1e-6
    assert pooled([Stain(0.01, 30.0)], [1.0]).hue is None  # too little stain to tell a hue, as on a photo
    assert pooled([], []) == Stain(0.0, None)  # a slide all glass: no window predicted, nothing to judge
