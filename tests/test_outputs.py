"""Outputs: ratio intervals on known cases, and QuPath GeoJSON that matches the detections (no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bccd_yolo.core.detections import Detections
from bccd_yolo.count.counting import ImageCount
from bccd_yolo.count.outputs import ratio_ci, ratios, to_geojson

NAMES = ["RBC", "WBC", "Platelets"]


def test_ratio_intervals_on_known_cases():
    # Newcombe (1998), Wilson interval for 81 of 263: 0.2553 to 0.3662; as WBC per 1,000 RBC (81 per 182 others)
    low, high = ratio_ci(81, 182)
    assert low == pytest.approx(1000 * 0.2553 / (1 - 0.2553), abs=0.5)
    assert high == pytest.approx(1000 * 0.3662 / (1 - 0.3662), abs=0.5)
    # none of 100: from 0 up to Wilson's z^2 / (n + z^2)
    z2 = 1.959964 ** 2
    p = z2 / (100 + z2)
    assert ratio_ci(0, 100) == (0.0, pytest.approx(round(1000 * p / (1 - p), 2), abs=0.01))
    assert ratio_ci(5, 0) is None and ratio_ci(0, 0) is None  # no reference cells: no ratio
    r = ratios({"RBC": 150, "WBC": 3, "Platelets": 0}, NAMES)
    assert r["WBC_per_1000_RBC"]["value"] == 20.0 and r["WBC_per_1000_RBC"]["ci95"][0] < 20 < r["WBC_per_1000_RBC"]["ci95"][1]
    assert ratios({"RBC": 0, "WBC": 1, "Platelets": 1}, NAMES) == {"WBC_per_1000_RBC": None, "Platelets_per_1000_RBC": None}
    # the same ratio from a thousand times the cells is a thousand times surer
    wide, narrow = ratio_ci(2, 150), ratio_ci(2000, 150000)
    assert (narrow[1] - narrow[0]) < (wide[1] - wide[0]) / 10


def test_the_written_out_wilson_interval_is_scipys():
    from scipy.stats import binomtest

    from bccd_yolo.count.outputs import wilson

    for k, n in [(0, 1), (1, 1), (0, 37), (3, 150), (81, 263), (149, 150), (2000, 152000)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k, n) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))


def test_geojson_has_one_valid_polygon_per_detection_at_the_json_boxes():
    from shapely.geometry import shape

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 900, (25, 2)).astype(np.float32)
    d = Detections(np.hstack([xy, xy + rng.uniform(5, 90, (25, 2)).astype(np.float32)]),
                   rng.uniform(0.2, 1, 25).astype(np.float32), rng.integers(0, 3, 25))
    result = ImageCount("slide.svs", 1000, 1000, NAMES, d, 4)
    colours = {"RBC": (255, 0, 0), "WBC": (0, 200, 0), "Platelets": (0, 64, 255)}
    fc = json.loads(json.dumps(to_geojson(result, colours, offset=(100, 40))))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(d)
    for f, box, c, s in zip(fc["features"], d.xyxy, d.cls, d.score):
        geom = shape(f["geometry"])
        assert geom.is_valid and f["geometry"]["type"] == "Polygon"
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        assert geom.bounds == pytest.approx((box[0] - 100, box[1] - 40, box[2] - 100, box[3] - 40), abs=0.01)
        props = f["properties"]
        assert props["objectType"] == "detection" and props["classification"]["name"] == NAMES[c]
        assert props["classification"]["color"] == list(colours[NAMES[c]])
        assert props["measurements"]["score"] == pytest.approx(float(s), abs=1e-4)


def test_the_total_density_pools_cells_over_the_area_and_needs_every_images_scale():
    """Cells per mm^2 of all images together: total cells over total area (a small field with few cells must not
    weigh as much as a slide); without one image's scale there is no total area, so no total density."""
    from bccd_yolo.count.outputs import total_density, totals

    def image(n_rbc: int, side: int, mpp: float | None) -> ImageCount:
        boxes = np.array([[0, 0, 5, 5]] * n_rbc, np.float32).reshape(-1, 4)
        return ImageCount("x.png", side, side, NAMES, Detections(boxes, np.ones(n_rbc, np.float32),
                                                                 np.zeros(n_rbc, np.int64)), 1, mpp=mpp)

    small, large = image(1, 1000, 0.1), image(300, 10000, 0.1)  # 0.01 mm^2 and 1 mm^2
    pooled = total_density([small, large], totals([small, large], NAMES))
    assert pooled["total_area_mm2"] == pytest.approx(1.01)
    assert pooled["total_per_mm2"]["RBC"] == pytest.approx(301 / 1.01, abs=0.05)  # not (100 + 300) / 2
    unscaled = total_density([small, image(5, 1000, None)], {"RBC": 6, "WBC": 0, "Platelets": 0})
    assert unscaled == {"total_area_mm2": None, "total_per_mm2": None}
