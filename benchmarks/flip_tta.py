"""Would test-time flips count better? Each field predicted as it is and mirrored left-right, the two looks joined.

    python benchmarks/flip_tta.py [--sources bccd,pbc,raabin]

A lever for #34's BCCD red-cell targets that needs no training: two looks at every field (twice the network time),
a cell's boxes in the two matched greedily (same class, IoU >= 0.55, best first) and scored by the mean of its
looks (a look that missed it counts 0) or by the better look. Each field is predicted at the scale `count` chose for
it (`--mpp auto`), down to the evaluation floor; per source and class, the count MAE at the shipped threshold and at
the threshold of least count MAE on that source (so a fused score's other calibration is not held against it), with
RBC recall and precision at IoU 0.5 there. Val only. Writes benchmarks/results/flip_tta.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
GRID = np.round(np.arange(0.10, 0.90, 0.01), 2)
SAME_CELL_IOU = 0.55


def mirrored(d, width: float):
    from bccd_yolo.core.detections import Detections

    x = d.xyxy.copy()
    x[:, 0], x[:, 2] = width - d.xyxy[:, 2], width - d.xyxy[:, 0]
    return Detections(x, d.score, d.cls)


def joined(a, b, score: str):
    """One box per cell of two looks: score-weighted mean box; `mean` or `max` of the looks' scores."""
    from bccd_yolo.core.detections import Detections
    from bccd_yolo.core.matching import iou_matrix

    d = Detections.concat([a, b])
    if not len(d):
        return d
    look = np.r_[np.zeros(len(a), int), np.ones(len(b), int)]
    m = iou_matrix(d.xyxy, d.xyxy)
    used = np.zeros(len(d), bool)
    boxes, scores, classes = [], [], []
    for i in np.argsort(-d.score, kind="stable"):
        if used[i]:
            continue
        group = [i]
        other = np.flatnonzero(~used & (look != look[i]) & (d.cls == d.cls[i]) & (m[i] >= SAME_CELL_IOU))
        if len(other):
            group.append(other[np.argmax(m[i, other])])
        used[group] = True
        w = d.score[group]
        boxes.append((d.xyxy[group] * w[:, None]).sum(0) / w.sum())
        scores.append(w.max() if score == "max" else w.sum() / 2)
        classes.append(d.cls[i])
    return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, d.cls.dtype))


class Flipped:
    """A Detector that looks twice (as it is, mirrored) and joins the looks; everything else is the Detector's."""

    def __init__(self, detector, score: str):
        self.detector, self.score = detector, score

    def __getattr__(self, name: str):
        return getattr(self.detector, name)

    def __call__(self, images, threshold: bool = True, native: bool = False):
        plain = self.detector(images, threshold=False, native=native)
        mirror = self.detector([np.ascontiguousarray(im[:, ::-1]) for im in images], threshold=False, native=native)
        out = [joined(a, mirrored(b, im.shape[1]), self.score) for im, a, b in zip(images, plain, mirror)]
        return [self.detector.thresholds.keep(d, self.detector.names) for d in out] if threshold else out


def curve(fields, ranked, k: int) -> list[tuple[float, float, float, float]]:
    """(threshold, count MAE, recall, precision at IoU 0.5) of class k over GRID."""
    from bccd_yolo.core.matching import match

    truth = [f.truth.subset(f.truth.cls == k) for f in fields]
    rows = []
    for t in GRID:
        kept = [d.subset((d.cls == k) & (d.score >= t)) for d in ranked]
        mae = float(np.mean([abs(len(d) - len(g)) for d, g in zip(kept, truth)]))
        found = [match(d, g) for d, g in zip(kept, truth)]
        tp = sum(int(m.pred.sum()) for m in found)
        n_pred, n_true = sum(len(d) for d in kept), sum(len(g) for g in truth)
        rows.append((float(t), mae, tp / max(n_true, 1), tp / max(n_pred, 1)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", default="bccd,pbc,raabin")
    args = p.parse_args()

    from per_source import shipped_on_val

    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images, detect_image
    from bccd_yolo.count.options import CountOptions

    det, low, sources = shipped_on_val(args.sources.split(","))
    out: dict = {"weights": str(det.weights), "thresholds": det.thresholds.by_class, "sources": {}}
    for name, fields in sources.items():
        counted, errors = count_images([f.path for f in fields], det, CountOptions(), progress=False)
        if errors:
            raise errors[0]
        looks: list[tuple[str, Any]] = [("once", low), ("flip-mean", Flipped(low, "mean")), ("flip-max", Flipped(low, "max"))]
        for look, ranker in looks:
            start = time.perf_counter()
            ranked = []
            for f, c in zip(fields, counted):
                src = open_image(f.path)
                try:
                    ranked.append(detect_image(src, ranker, tile=0, progress=False, mpp=c.mpp)[0])
                finally:
                    src.close()
            row: dict = {"seconds": round(time.perf_counter() - start, 1)}
            for k, cls in enumerate(det.names):
                rows = curve(fields, ranked, k)
                at = next(r for r in rows if abs(r[0] - det.thresholds.by_class[cls]) < 1e-6)
                best = min(rows, key=lambda r: r[1])
                row[cls] = {"shipped": dict(zip(("threshold", "mae", "recall", "precision"), np.round(at, 3).tolist())),
                            "best": dict(zip(("threshold", "mae", "recall", "precision"), np.round(best, 3).tolist()))}
            out["sources"].setdefault(name, {})[look] = row
            print(name, look, json.dumps({c: row[c]["best"] for c in det.names}), flush=True)
    path = ROOT / "benchmarks" / "results" / "flip_tta.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
