"""Regions and micrometres, with the deterministic disc detector of test_tiling (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import BlobDetector, UnscaledBlob, disc_canvas

from bccd_yolo.core.errors import InputError
from bccd_yolo.core.images import open_image
from bccd_yolo.count.counting import count_images
from bccd_yolo.count.options import CountOptions
from bccd_yolo.count.outputs import to_csv, to_json


class Meta:  # what outputs need of a detector
    weights, backend, names = Path("blob"), "test", BlobDetector.names
    thresholds, scale = BlobDetector.thresholds, BlobDetector.scale


def polygon(name, ring):
    return {"type": "Feature", "properties": {"name": name, "objectType": "annotation"},
            "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("regions") / "slide.tif"
    canvas = disc_canvas(2000, 1400, 150, seed=3)
    # 0.25 um per pixel, written as TIFF resolution: 40,000 pixels per centimetre
    tifffile.imwrite(path, canvas, tile=(256, 256), photometric="rgb", resolution=(40000, 40000),
                     resolutionunit="CENTIMETER")
    return path


def test_per_region_counts_follow_box_centres_and_add_up(slide, tmp_path):
    regions = tmp_path / "regions.geojson"
    left, right = [[0, 0], [1000, 0], [1000, 1400], [0, 1400]], [[1000, 0], [2000, 0], [2000, 1400], [1000, 1400]]
    tri = [[100, 100], [1500, 300], [600, 1300]]  # overlaps both
    regions.write_text(json.dumps({"type": "FeatureCollection", "features": [
        polygon("left", left), polygon("right", right), polygon("triangle", tri),
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [5, 5]}}]}))
    (result,), errors = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25, regions=regions), progress=False)
    assert not errors and [g.name for g in result.regions] == ["left", "right", "triangle"]
    cx = (result.detections.xyxy[:, 0] + result.detections.xyxy[:, 2]) / 2
    cy = (result.detections.xyxy[:, 1] + result.detections.xyxy[:, 3]) / 2
    assert not np.any(cx == 1000)  # no centre on the shared edge, so the halves must add up exactly
    left_n, right_n, tri_n = (g.detections.counts(3) for g in result.regions)
    assert (left_n + right_n).tolist() == result.detections.counts(3).tolist()
    assert left_n.sum() == (cx < 1000).sum()

    def in_triangle(x, y):  # barycentric sign test, independent of shapely
        (ax, ay), (bx, by), (qx, qy) = tri
        d1 = (x - bx) * (ay - by) - (ax - bx) * (y - by)
        d2 = (x - qx) * (by - qy) - (bx - qx) * (y - qy)
        d3 = (x - ax) * (qy - ay) - (qx - ax) * (y - ay)
        return ~(((d1 < 0) | (d2 < 0) | (d3 < 0)) & ((d1 > 0) | (d2 > 0) | (d3 > 0)))

    assert tri_n.sum() == in_triangle(cx, cy).sum()
    report = to_json([result], Meta(), [])["images"][0]
    tri_json = report["regions"][2]
    assert tri_json["name"] == "triangle" and sum(tri_json["counts"].values()) == tri_n.sum()
    assert tri_json["area_mm2"] == pytest.approx(0.5 * abs((1500 - 100) * (1300 - 100) - (600 - 100) * (300 - 100))
                                                 * 0.25 ** 2 / 1e6, rel=1e-6)
    rows = to_csv([result], Meta()).splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["", "left", "right", "triangle"]


def test_a_small_region_reads_only_the_tiles_it_touches(slide, tmp_path):
    regions = tmp_path / "small.geojson"
    regions.write_text(json.dumps(polygon("corner", [[10, 10], [300, 10], [300, 300], [10, 300]])))
    (whole,), _ = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25), progress=False)
    (part,), _ = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25, regions=regions), progress=False)
    from bccd_yolo.count.tiling import tile_grid

    assert whole.tiles == len(tile_grid(2000, 1400, 400, 0.25)) == 35 and part.tiles == 4  # the 2 x 2 at the corner
    inside = whole.detections.subset(((whole.detections.xyxy[:, 0] + whole.detections.xyxy[:, 2]) / 2 < 300)
                                     & ((whole.detections.xyxy[:, 1] + whole.detections.xyxy[:, 3]) / 2 < 300)
                                     & ((whole.detections.xyxy[:, 0] + whole.detections.xyxy[:, 2]) / 2 > 10)
                                     & ((whole.detections.xyxy[:, 1] + whole.detections.xyxy[:, 3]) / 2 > 10))
    assert part.regions[0].counts == dict(zip(BlobDetector.names, map(int, inside.counts(3))))


@pytest.mark.parametrize("geometry, needle", [
    ({"type": "Polygon", "coordinates": [[[0, 0], [2500, 0], [2500, 100], [0, 100], [0, 0]]]}, "outside the 2000 x 1400"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]]}, "invalid geometry"),
])
def test_bad_regions_are_one_line_errors(geometry, needle, slide, tmp_path):
    regions = tmp_path / "bad.geojson"
    regions.write_text(json.dumps({"type": "Feature", "properties": {"name": "r"}, "geometry": geometry}))
    _, errors = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25, regions=regions), progress=False)
    assert len(errors) == 1 and needle in str(errors[0]) and "bad.geojson" in str(errors[0])


def test_scale_from_tiff_tags_or_given(slide):
    src = open_image(slide)
    assert src.mpp == pytest.approx(0.25)
    (r,), _ = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25), progress=False)
    image = to_json([r], Meta(), [])["images"][0]
    assert image["mpp"] == 0.25 and image["units"] == "um"
    assert image["area_mm2"] == pytest.approx(2000 * 1400 * 0.0625 / 1e6)
    assert image["per_mm2"]["RBC"] == pytest.approx(image["counts"]["RBC"] / image["area_mm2"], rel=1e-3)
    d = r.detections.subset(r.detections.cls == 0)
    diam = ((d.xyxy[:, 2] - d.xyxy[:, 0]) + (d.xyxy[:, 3] - d.xyxy[:, 1])) / 2
    assert image["sizes"]["RBC"]["median"] == pytest.approx(float(np.median(diam)) * 0.25, abs=0.01)
    import csv
    import io

    row = next(csv.DictReader(io.StringIO(to_csv([r], Meta()))))
    assert float(row["RBC_size_median"]) == image["sizes"]["RBC"]["median"] and row["size_units"] == "um"
    assert float(row["RBC_size_q1"]) <= float(row["RBC_size_median"]) <= float(row["RBC_size_q3"])
    (g,), _ = count_images([slide], BlobDetector(), CountOptions(tile=400, overlap=0.25, mpp=0.5), progress=False)
    given = to_json([g], Meta(), [])["images"][0]
    assert given["mpp"] == 0.5 and given["area_mm2"] == pytest.approx(4 * image["area_mm2"])


def test_without_a_scale_units_are_pixels(tmp_path):
    from PIL import Image

    Image.fromarray(disc_canvas(300, 200, 5, seed=1)).save(tmp_path / "p.png")
    (r,), _ = count_images([tmp_path / "p.png"], UnscaledBlob(), progress=False)
    image = to_json([r], Meta(), [])["images"][0]
    assert image["mpp"] is None and image["units"] == "px" and image["area_mm2"] is None and image["per_mm2"] is None
    assert image["area_px"] == 60000 and image["mpp_source"] is None


def test_a_photo_without_its_own_scale_is_taken_at_the_models(tmp_path):
    from PIL import Image

    Image.fromarray(disc_canvas(300, 200, 5, seed=1)).save(tmp_path / "p.png")
    (r,), _ = count_images([tmp_path / "p.png"], BlobDetector(), progress=False)
    report = to_json([r], Meta(), [], tile=None, overlap=0.4)
    image = report["images"][0]
    assert image["mpp"] == BlobDetector.scale.photo_mpp and image["mpp_source"] == "model"
    assert report["model_mpp"] == BlobDetector.scale.mpp and report["overlap"] == 0.4 and report["tile"] is None
    assert image["tile"] == BlobDetector.imgsz  # the network's input size at the model's scale, in its pixels


def test_regions_file_errors_name_the_file(tmp_path):
    from bccd_yolo.count.regions import read_regions

    (tmp_path / "x.geojson").write_text("{not json")
    with pytest.raises(InputError, match="x.geojson: not a GeoJSON"):
        read_regions(tmp_path / "x.geojson", 100, 100)
