"""Why red cells are missed or added: every missed and every extra red cell of a source, sorted by what can be seen.

    python benchmarks/rbc_misses.py [--weights W] [--source bccd] [--split val] [--worst 6]

Each field is counted as `count` counts it (per_source.py's loader and counting). A labelled red cell no counted
red cell matches at IoU 0.5 is a miss; it is put in the first of these that holds:
- `edge`: its box touches the field's border (a cut cell, which the labellers drew and the model may not);
- `near threshold`: a red-cell detection down to the evaluation floor matches it, scoring within 0.1 below the
  class threshold (a calibration question);
- `as other class`: a counted WBC or platelet covers it (IoU 0.5);
- `in a clump`: it overlaps another labelled red cell (IoU >= 0.1), so NMS or the network merged it away;
- `ranked lower`: a red-cell detection matches it, scoring more than 0.1 below the threshold;
- `unseen`: nothing at all.
Extra red cells (counted, matching no label) are `edge`, `on a labelled cell` (IoU >= 0.3 with one, a double or
split box) or `elsewhere`. Cut cells: how much of a red cell shows where the edge cuts it (the box's extent
across that edge, in the source's median whole red cell from its train labels), for the labelled train cells and
the counted ones (and of those, the ones matching no label), under 0.1, 0.15 and 0.2 of a diameter.
Writes benchmarks/results/rbc_misses/<source>_<split>.json and a sheet of the fields with the largest red-cell
count error (missed: red, extra: blue, found: thin green), docs/rbc_misses_<source>.jpg.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from bccd_yolo.core.edges import EDGE_MARGIN, EdgeRule, edge_mask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
NEAR = 0.1
CUT = (0.1, 0.15, 0.2)


def on_edge(d, w: int, h: int) -> np.ndarray:
    """Which boxes of `d` the field's edge cuts (count's own test: within EDGE_MARGIN of it)."""
    return ~edge_mask(d, EdgeRule.INTERIOR, 0, 0, w, h)


def cut_extent(xyxy: np.ndarray, w: int, h: int, diameter: float) -> np.ndarray:
    """Per box cut by an edge, its extent across the edge(s) it touches, in red-cell diameters; NaN if not cut."""
    m = EDGE_MARGIN
    across_x = np.where((xyxy[:, 0] <= m) | (xyxy[:, 2] >= w - m), xyxy[:, 2] - xyxy[:, 0], np.inf)
    across_y = np.where((xyxy[:, 1] <= m) | (xyxy[:, 3] >= h - m), xyxy[:, 3] - xyxy[:, 1], np.inf)
    extent = np.minimum(across_x, across_y) / diameter
    return np.where(np.isfinite(extent), extent, np.nan)


def train_cells(source: str, names: list[str]) -> tuple[float, np.ndarray]:
    """The source's median whole red cell (px; convert's own figure, from its train labels) and its labelled cut
    cells' extents."""
    from per_source import read_sources  # type: ignore[import-not-found]

    from bccd_yolo.data.labels import boxes_as_detections
    from bccd_yolo.data.sources import rbc_diameter

    data = read_sources(names, [source])[source]
    diameter = rbc_diameter(data, tuple(names))
    if diameter is None:
        raise SystemExit(f"{source}: fewer than 10 whole red cells labelled in its train split")
    k = names.index("RBC")
    cells = [(boxes_as_detections(a.boxes, names), a.width, a.height) for a in data.splits["train"]]
    extents = np.concatenate([cut_extent(d.xyxy[d.cls == k], w, h, diameter) for d, w, h in cells])
    return diameter, extents[~np.isnan(extents)]


def shares(extents: np.ndarray) -> dict[str, float]:
    return {f"under {t}": round(float((extents < t).mean()), 4) if len(extents) else 0.0 for t in CUT}


def explain(result, k: int, limit: float) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Reasons per missed and per extra red cell of one field, and the masks (missed labels, extra detections)."""
    from bccd_yolo.core.matching import iou_matrix, match

    f, counted, ranked = result.sample, result.counted, result.ranked
    truth = f.truth.subset(f.truth.cls == k)
    found = counted.subset(counted.cls == k)
    m = match(found, truth)
    missed, extra = ~m.truth, ~m.pred
    edge_t, edge_p = on_edge(truth, f.width, f.height), on_edge(found, f.width, f.height)
    low = ranked.subset((ranked.cls == k) & (ranked.score < limit))
    others = counted.subset(counted.cls != k)
    iou_low = iou_matrix(truth.xyxy, low.xyxy) if len(low) else np.zeros((len(truth), 0))
    iou_other = iou_matrix(truth.xyxy, others.xyxy) if len(others) else np.zeros((len(truth), 0))
    iou_self = iou_matrix(truth.xyxy, truth.xyxy) - np.eye(len(truth))
    reasons = []
    for i in np.flatnonzero(missed):
        best = low.score[iou_low[i] >= 0.5].max(initial=-1.0)
        if edge_t[i]:
            reasons.append("edge")
        elif best >= limit - NEAR:
            reasons.append("near threshold")
        elif (iou_other[i] >= 0.5).any():
            reasons.append("as other class")
        elif (iou_self[i] >= 0.1).any():
            reasons.append("in a clump")
        elif best >= 0:
            reasons.append("ranked lower")
        else:
            reasons.append("unseen")
    iou_found = iou_matrix(found.xyxy, truth.xyxy) if len(truth) else np.zeros((len(found), 0))
    extras = ["edge" if edge_p[j] else "on a labelled cell" if (iou_found[j] >= 0.3).any() else "elsewhere"
              for j in np.flatnonzero(extra)]
    return reasons, extras, missed, extra


def sheet(worst: list, k: int, path: Path) -> None:
    from PIL import Image, ImageDraw

    tiles = []
    for result, missed, extra, reasons in worst:
        f = result.sample
        im = Image.open(f.path).convert("RGB")
        draw = ImageDraw.Draw(im)
        truth = f.truth.subset(f.truth.cls == k)
        found = result.counted.subset(result.counted.cls == k)
        for b in found.xyxy[~extra]:
            draw.rectangle(b.tolist(), outline=(40, 170, 40), width=1)
        for b, why in zip(truth.xyxy[missed], reasons):
            draw.rectangle(b.tolist(), outline=(230, 20, 20), width=3)
            draw.text((b[0] + 3, b[1] + 2), why, fill=(230, 20, 20))
        for b in found.xyxy[extra]:
            draw.rectangle(b.tolist(), outline=(20, 60, 230), width=3)
        draw.text((4, 4), f"{f.path.name}: {len(found)} counted, {len(truth)} labelled", fill=(0, 0, 0))
        tiles.append(im.resize((480, round(480 * im.height / im.width))))
    cols = 3
    rows = (len(tiles) + cols - 1) // cols
    h = max(t.height for t in tiles)
    canvas = Image.new("RGB", (cols * 480, rows * h), "white")
    for i, t in enumerate(tiles):
        canvas.paste(t, ((i % cols) * 480, (i // cols) * h))
    canvas.save(path, quality=85)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--source", default="bccd")
    ap.add_argument("--split", default="val")
    ap.add_argument("--worst", type=int, default=6)
    a = ap.parse_args()
    from per_source import load_sources  # type: ignore[import-not-found]

    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.measure.evaluate import EVAL_CONF
    from bccd_yolo.measure.per_source import count_fields

    weights = a.weights or default_weights()
    det = Detector(weights)
    low = Detector(weights, conf=EVAL_CONF)
    k = det.names.index("RBC")
    limit = float(det.thresholds.by_class["RBC"])
    fields = load_sources(a.split, det.names, [a.source])[a.source]
    results = count_fields(fields, det, low)
    missed_why: Counter[str] = Counter()
    extra_why: Counter[str] = Counter()
    per_field = []
    diameter, labelled_cut = train_cells(a.source, det.names)
    counted_cut, unmatched_cut = [], []
    for r in results:
        reasons, extras, missed, extra = explain(r, k, limit)
        missed_why.update(reasons)
        extra_why.update(extras)
        per_field.append((r, missed, extra, reasons))
        found = r.counted.subset(r.counted.cls == k)
        ext = cut_extent(found.xyxy, r.sample.width, r.sample.height, diameter)
        counted_cut.append(ext[~np.isnan(ext)])
        unmatched_cut.append(ext[extra & ~np.isnan(ext)])
    cut = {"diameter_px": round(diameter, 1), "labelled_train": {"cells": len(labelled_cut), **shares(labelled_cut)},
           "counted": {f"under {t}": int((np.concatenate(counted_cut) < t).sum()) for t in CUT},
           "counted_matching_no_label": {f"under {t}": int((np.concatenate(unmatched_cut) < t).sum()) for t in CUT}}
    labelled = sum(int((r.sample.truth.cls == k).sum()) for r in results)
    counted = sum(int((r.counted.cls == k).sum()) for r in results)
    out = {"weights": str(weights), "source": a.source, "split": a.split, "fields": len(results), "rbc_threshold": limit,
           "labelled": labelled, "counted": counted, "missed": dict(missed_why.most_common()),
           "extra": dict(extra_why.most_common()), "cut_cells": cut}
    dest = ROOT / "benchmarks" / "results" / "rbc_misses"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{a.source}_{a.split}.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    worst = sorted(per_field, key=lambda t: -abs(int(t[2].sum()) - int(t[1].sum())) - 0.01 * (t[1].sum() + t[2].sum()))
    sheet(worst[:a.worst], k, ROOT / "docs" / f"rbc_misses_{a.source}.jpg")


if __name__ == "__main__":
    main()
