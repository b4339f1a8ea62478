"""Scale: the model's, an input's (given, read, estimated), tiles resampled to it, and the options (no torch)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BlobDetector, disc_canvas

from bccd_yolo.cli import main
from bccd_yolo.core.detections import Detections
from bccd_yolo.core.errors import InputError
from bccd_yolo.core.images import PhotoSource
from bccd_yolo.core.scale import RBC_DIAMETER_UM, check_mpp, model_scale, mpp_from_cells
from bccd_yolo.count.counting import count_images, detect_image, estimate_scale
from bccd_yolo.count.options import CountOptions
from bccd_yolo.count.tiling import Tile, merge_tiles


def boxes(xyxy, cls=None):
    xyxy = np.array(xyxy, np.float32).reshape(-1, 4)
    return Detections(xyxy, np.ones(len(xyxy), np.float32), np.zeros(len(xyxy), np.int64) if cls is None else np.array(cls))


def test_model_scale_takes_the_median_whole_red_cell_as_the_ruler():
    # 640 x 480 photos: three whole red cells of 100, 104 and 110 px, one cut by the edge (ignored), one WBC (ignored)
    photo = boxes([[10, 10, 110, 110], [200, 200, 304, 304], [300, 50, 410, 160], [0, 300, 60, 400],
                   [400, 300, 600, 460]], [0, 0, 0, 0, 1])
    scale, n = model_scale([(photo, 640, 480)] * 4, rbc=0, imgsz=320)
    assert n == 12
    assert scale.photo_mpp == pytest.approx(RBC_DIAMETER_UM / 104)   # as the photos are
    assert scale.rbc_px == pytest.approx(52) and scale.mpp == pytest.approx(RBC_DIAMETER_UM / 52)  # as the network saw them
    with pytest.raises(ValueError, match="needs"):
        model_scale([(photo, 640, 480)], rbc=0, imgsz=320)  # 3 cells say nothing


def test_cells_twice_as_large_mean_half_the_micrometres_per_pixel():
    model = BlobDetector.scale
    assert mpp_from_cells(np.full(20, 2 * model.rbc_px), model) == pytest.approx(model.mpp / 2)
    assert mpp_from_cells(np.full(5, model.rbc_px), model) is None  # too few cells


@pytest.mark.parametrize("value", [0, -1, 0.001, 50, float("nan")])
def test_absurd_scales_are_refused(value):
    with pytest.raises(InputError, match="outside 0.01-10"):
        check_mpp(value)


def test_tiles_reach_the_network_at_the_models_scale_whatever_their_size():
    """An input at 2 um/px (the model's is 1): every view is resampled to twice its size, for any tile size."""
    canvas = disc_canvas(1200, 900, 40, seed=3, rmax=12)
    for tile in (200, 300, 500):
        det = BlobDetector()
        _, n = detect_image(PhotoSource(Path("c.png"), canvas), det, tile=tile, overlap=0.25, progress=False, mpp=2.0)
        assert n > 1
        assert max(max(v) for v in det.views) == 2 * tile  # full tiles, doubled


def test_a_shrunk_image_at_its_scale_counts_as_the_original():
    canvas = disc_canvas(1500, 1000, 60, seed=4, rmax=30)
    small = cv2.resize(canvas, (750, 500), interpolation=cv2.INTER_AREA)
    full, _ = detect_image(PhotoSource(Path("a.png"), canvas), BlobDetector(), tile=400, overlap=0.3, progress=False)
    half, _ = detect_image(PhotoSource(Path("b.png"), small), BlobDetector(), tile=200, overlap=0.3, progress=False, mpp=2.0)
    assert half.counts(3).tolist() == full.counts(3).tolist()
    # boxes come back in the small image's pixels: half the size
    assert np.median(half.area) == pytest.approx(np.median(full.area) / 4, rel=0.15)


def red_cells(width, height, radius, spacing, seed=0):
    """A field of red discs of one radius on a jittered grid: red cells of one size."""
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for y in range(spacing, height - spacing, spacing):
        for x in range(spacing, width - spacing, spacing):
            jx, jy = rng.integers(-spacing // 6, spacing // 6 + 1, 2)
            cv2.circle(canvas, (int(x + jx), int(y + jy)), radius, (255, 0, 0), -1)
    return canvas


def test_auto_scale_reads_the_red_cells_and_is_used(tmp_path, caplog):
    """Red cells of radius 10 (21 px) where the model's are 41 px: the input is at about 41/21 of the model's scale."""
    from PIL import Image

    Image.fromarray(red_cells(1600, 1200, 10, 40)).save(tmp_path / "field.png")
    src = PhotoSource(tmp_path / "field.png", red_cells(1600, 1200, 10, 40))
    estimate, n = estimate_scale(src, BlobDetector(), assumed=1.0)
    assert n >= 10 and estimate == pytest.approx(41 / 21, rel=0.05)
    det = BlobDetector()
    with caplog.at_level(logging.INFO, logger="bccd_yolo"):
        (r,), errors = count_images([tmp_path / "field.png"], det, CountOptions(mpp="auto"), progress=False)
    assert not errors and r.mpp_source == "auto" and r.mpp == pytest.approx(estimate, rel=1e-4)
    assert "estimated from" in caplog.text
    # the views the model saw were enlarged by the estimate: its red cells look 41 px across
    assert max(max(v) for v in det.views) > 1.8 * r.tile


class SizedBlob(BlobDetector):
    """A blob detector that, like a network, finds red cells only within 2x of its own size (41 px)."""

    def __call__(self, images, threshold=True, native=False):
        out = super().__call__(images, threshold, native)
        return [d.subset((d.xyxy[:, 2] - d.xyxy[:, 0] <= 2 * self.RBC_PX) & (d.xyxy[:, 2] - d.xyxy[:, 0] >= self.RBC_PX / 2))
                for d in out]


def test_red_cells_too_large_to_find_at_the_assumed_scale_are_found_at_another(tmp_path):
    """A camera four times finer than the model's scale: red cells of 161 px where the model finds 41 +- 2x. The
    first pass at the assumed scale finds none; the estimate starts again as if the input were finer, so the field
    is counted at its own scale (about 41/161 um/px), not at the model's with no cell found."""
    from PIL import Image

    Image.fromarray(red_cells(1600, 1300, 80, 320)).save(tmp_path / "fine.png")
    assert estimate_scale(PhotoSource(tmp_path / "fine.png", red_cells(1600, 1300, 80, 320)), SizedBlob(), 1.0)[0] is None
    (r,), errors = count_images([tmp_path / "fine.png"], SizedBlob(), progress=False)  # count's default: auto
    assert not errors and r.mpp_source == "auto" and r.mpp == pytest.approx(41 / 161, rel=0.05)
    assert r.counts["RBC"] == 9  # a 3 x 3 grid


class PulledBlob(SizedBlob):
    """As a network shown red cells far larger than it learnt: boxes of cells over 1.25x its own size pulled halfway
    (geometrically) towards it, so an estimate from them moves only part of the way to the truth (a BCCD photo at
    4x: 0.080 -> 0.045 -> 0.027 -> 0.019 um/px, one pass after another); nearer its own size, measured true."""

    def __call__(self, images, threshold=True, native=False):
        out = []
        for d in super().__call__(images, threshold, native):
            side = d.xyxy[:, 2:] - d.xyxy[:, :2]
            pulled = np.where(side > 1.25 * self.RBC_PX, np.sqrt(side * self.RBC_PX), side)
            centre = (d.xyxy[:, :2] + d.xyxy[:, 2:]) / 2
            out.append(Detections(np.hstack([centre - pulled / 2, centre + pulled / 2]), d.score, d.cls))
        return out


def test_the_scale_estimate_keeps_looking_until_the_cells_agree_with_it(tmp_path):
    """Red cells four times the model's size, found with boxes pulled towards its own: the passes' estimates go
    0.36, 0.30, then 0.255 um/px (the truth, 41/161), and another pass follows while an estimate differs from the
    scale of its pass by over 10 %. Stopping after two passes left it 19 % off; the area and the diameters `count`
    reports in micrometres rest on it. 3 % leaves room for the passes' resampling, as above."""
    from PIL import Image

    Image.fromarray(red_cells(1600, 1300, 80, 320)).save(tmp_path / "fine.png")
    (r,), errors = count_images([tmp_path / "fine.png"], PulledBlob(), progress=False)
    assert not errors and r.mpp_source == "auto"
    assert r.mpp == pytest.approx(41 / 161, rel=0.03), r.mpp


def test_an_estimate_within_snap_keeps_the_scale_its_pass_ran_at():
    """estimate_scale's `snap` (benchmarks/auto_snap.py; counting uses none): red cells of radius 19 (39 px) where
    the model's are 41 px are 5 % off the model's scale, so 0.1 keeps the assumed 1.0 and none estimates anew."""
    src = PhotoSource(Path("field.png"), red_cells(380, 300, 19, 60))
    kept, n = estimate_scale(src, BlobDetector(), assumed=1.0, snap=0.1)
    estimated, m = estimate_scale(src, BlobDetector(), assumed=1.0)
    assert n >= 10 and kept == 1.0
    # discs of one size measure 2r + 1 px each: 3 % leaves room for the pass's resampling and excludes 1.0
    assert m >= 10 and estimated == pytest.approx(41 / 39, rel=0.03)


def test_a_scale_the_red_cells_contradict_is_a_qc_reason(tmp_path):
    from PIL import Image

    Image.fromarray(red_cells(1200, 900, 20, 60)).save(tmp_path / "field.png")  # 41 px cells: 1 um/px
    (near,), _ = count_images([tmp_path / "field.png"], BlobDetector(), CountOptions(mpp=1.1), progress=False)
    assert not any(r.startswith("scale") for r in near.qc), near.qc  # 10 % off: within the 25 % allowed
    (far,), _ = count_images([tmp_path / "field.png"], BlobDetector(), CountOptions(mpp=0.5), progress=False)
    assert any("counted at 0.5000 um/px (--mpp)" in r and "measure as if at 1.0" in r for r in far.qc), far.qc


def test_a_cell_larger_than_the_overlap_is_one_cell_with_its_whole_extent():
    """A 250 px cell across three 320 px tiles overlapping by 128 px: no tile sees it whole."""
    tiles = [Tile(0, 0, 0, 0, 320, 320), Tile(0, 1, 192, 0, 320, 320), Tile(0, 2, 320, 0, 320, 320)]
    cell = [130, 40, 380, 260]
    views = [boxes([[130, 40, 320, 260]]), boxes([[192, 40, 380, 260]]), boxes([[320, 40, 380, 260]])]
    merged = merge_tiles(list(zip(tiles, views)), 640, 320)
    assert merged.xyxy.tolist() == [cell]


def test_a_cut_piece_labelled_as_another_class_joins_the_whole_cell():
    """Half a white cell, cut by one tile's edge, looks like a platelet there; the other tile sees the WBC whole."""
    a, b = Tile(0, 0, 0, 0, 320, 320), Tile(0, 1, 192, 0, 320, 320)
    piece = boxes([[250, 100, 320, 160]], [2])
    whole = boxes([[250, 95, 390, 230]], [1])
    merged = merge_tiles([(a, piece), (b, whole)], 640, 320)
    assert merged.cls.tolist() == [1] and merged.xyxy.tolist() == [[250, 95, 390, 230]]
    # a whole platelet beside a whole WBC stays a platelet
    beside = boxes([[200, 100, 240, 140]], [2])
    assert sorted(merge_tiles([(a, beside), (b, whole)], 640, 320).cls.tolist()) == [1, 2]


def test_scale_options_are_checked_on_the_command_line(tmp_path, capsys):
    for value, message in (("0", "micrometres per pixel"), ("-1", "micrometres per pixel"), ("20", "micrometres per pixel"),
                           ("abc", "not a number")):
        with pytest.raises(SystemExit) as e:
            main(["count", str(tmp_path), "--mpp", value])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["count", str(tmp_path), "--overlap", "0.95"])
    assert "expected a number in [0, 0.9]" in capsys.readouterr().err


def test_a_tile_under_64_px_at_the_models_scale_is_an_error_naming_the_file(tmp_path):
    from PIL import Image

    Image.fromarray(disc_canvas(1200, 900, 20, seed=1)).save(tmp_path / "big.png")
    # 100 px tiles at 0.5 um/px are 50 px at the model's 1 um/px
    results, errors = count_images([tmp_path / "big.png"], BlobDetector(), CountOptions(tile=100, mpp=0.5), progress=False)
    assert not results and len(errors) == 1
    assert errors[0].render(lambda n: f"--{n}").startswith("--tile ") and "big.png" in str(errors[0])
    assert "50 px at the model's scale" in str(errors[0])


def test_an_ome_tiff_gives_its_scale_in_any_unit(tmp_path):
    import tifffile

    from bccd_yolo.core.images import open_image

    image = np.full((600, 800, 3), 200, np.uint8)
    tifffile.imwrite(tmp_path / "s.ome.tif", image, tile=(256, 256), photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm"})
    src = open_image(tmp_path / "s.ome.tif")
    assert src.mpp == pytest.approx(0.25)
    src.close()


def test_a_pyramidal_tiff_is_read_from_the_level_closest_above_the_scale_wanted(tmp_path):
    import tifffile

    from bccd_yolo.core.images import open_image, read_scaled

    base = np.zeros((2048, 2048, 3), np.uint8)
    base[:, :, 0] = np.arange(2048)[None, :] // 8  # a ramp across
    half = cv2.resize(base, (1024, 1024), interpolation=cv2.INTER_AREA)
    half[:, :, 2] = 77  # marks pixels read from level 1
    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        tif.write(base, tile=(256, 256), photometric="rgb", subifds=1)
        tif.write(half, tile=(256, 256), photometric="rgb", subfiletype=1)
    src = open_image(tmp_path / "p.tif")
    view = read_scaled(src, 512, 256, 1024, 512, 0.5)  # half resolution wanted: level 1 serves it
    assert view.shape == (256, 512, 3) and (view[:, :, 2] == 77).all()
    assert np.abs(view[:, :, 0].astype(int) - cv2.resize(base[256:768, 512:1536], (512, 256),
                                                          interpolation=cv2.INTER_AREA)[:, :, 0]).max() <= 1
    finer = read_scaled(src, 512, 256, 1024, 512, 0.8)  # more than level 1 holds: from level 0
    assert finer.shape == (410, 819, 3) and (finer[:, :, 2] == 0).all()
    src.close()


@pytest.mark.parametrize("pyramid", [True, False])
def test_a_tiled_tiff_wanted_larger_than_it_is_is_enlarged_from_its_full_resolution(tmp_path, pyramid):
    """A slide scanned coarser than the model's scale (or whose red cells --mpp auto finds a little small) is
    enlarged: no pyramid level is finer than level 0, which must serve it (a level search that only looked
    at finer levels found none and crashed)."""
    import tifffile

    from bccd_yolo.core.images import open_image, read_scaled, resize, scaled_size

    base = np.zeros((1024, 1024, 3), np.uint8)
    base[:, :, 0] = np.arange(1024)[None, :] // 4
    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        tif.write(base, tile=(256, 256), photometric="rgb", subifds=int(pyramid))
        if pyramid:
            tif.write(base[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    src = open_image(tmp_path / "p.tif")
    for factor in (1.008, 3.3):  # an estimate 1 % off the model's scale; a 0.25 um/px scan (about 3x)
        view = read_scaled(src, 300, 200, 100, 60, factor)
        assert view.shape[:2] == scaled_size(100, 60, factor)[::-1]
        assert np.array_equal(view, resize(base[200:260, 300:400], scaled_size(100, 60, factor)))
    src.close()


@pytest.mark.parametrize("resolution, unit, mpp", [((40000, 40000), "CENTIMETER", 0.25), ((101600, 101600), "INCH", 0.25),
                                                    ((1000, 1000), "NONE", None)])
def test_a_tiffs_resolution_tags_give_its_scale_only_in_absolute_units(tmp_path, resolution, unit, mpp):
    import tifffile

    from bccd_yolo.core.images import open_image

    for tile in ((256, 256), None):  # tiled (read region by region) and strip TIFFs
        path = tmp_path / f"r{tile is None}.tif"
        tifffile.imwrite(path, np.full((300, 400, 3), 200, np.uint8), tile=tile, photometric="rgb",
                         resolution=resolution, resolutionunit=getattr(tifffile.RESUNIT, unit))
        src = open_image(path)
        assert src.mpp == (None if mpp is None else pytest.approx(mpp))
        src.close()


def test_a_scale_auto_cannot_estimate_is_said_under_quiet_and_only_asked_for_is_a_qc_reason(tmp_path, capsys, monkeypatch):
    """Two red cells are too few to measure (MIN_AUTO_CELLS): by default (nothing records the scale) the field is
    counted at the model's scale and a note says so under the table, in JSON and CSV; with --mpp auto, which the
    user asked for, it is a qc reason instead."""
    import csv
    import json

    from PIL import Image

    import bccd_yolo.count.detector as detector_module

    monkeypatch.setattr(detector_module, "Detector", lambda *a, **k: BlobDetector())
    monkeypatch.setattr(BlobDetector, "weights", "blob", raising=False)
    monkeypatch.setattr(BlobDetector, "backend", "blob", raising=False)
    monkeypatch.setattr(BlobDetector, "runs_at", "f32", raising=False)
    Image.fromarray(red_cells(160, 120, 10, 40)).save(tmp_path / "few.png")
    said = "scale unknown: auto found 2 measurable red cells (needs 6); counted at the model's scale"
    for mpp, qc, notes in ((None, [], [said]), ("auto", [said.replace("auto", "--mpp auto", 1)], [])):
        report, table = tmp_path / f"{mpp}.json", tmp_path / f"{mpp}.csv"
        code = main(["count", str(tmp_path / "few.png"), "--quiet", "--json", str(report), "--csv", str(table),
                     *(["--mpp", mpp] if mpp else [])])
        out = capsys.readouterr().out
        image = json.loads(report.read_text())["images"][0]
        assert code == 0 and image["mpp_source"] == "model" and image["counts"]["RBC"] == 2
        assert (image["qc"], image["notes"]) == (qc, notes)
        assert all(f"qc: few.png: {q}" in out for q in qc) and all(f"note: few.png: {n}" in out for n in notes)
        row = next(csv.DictReader(table.open()))
        assert (row["qc"], row["notes"]) == ("; ".join(qc), "; ".join(notes))
