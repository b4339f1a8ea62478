"""Counting measured per source: each source's fields counted as a user would count them, against complete labels.

A pooled figure hides the source that fails, so every figure here is per source (BCCD, PBC, Raabin, ...) and per
class: count MAE and bias, AP50 (pycocotools, IoU 0.5), recall and precision at IoU 0.5 (greedy one-to-one), the
red cells' count MAE away from the image edge, and the share of fields the qc verdict flags.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.edges import apply_edge_rule
from ..core.matching import match
from ..data.labels import boxes_as_detections
from ..data.voc import ImageAnnotation


@dataclass
class LabelledField:
    """One field as the user has it (its own file, its own pixels) and its complete labels."""

    path: Path
    width: int
    height: int
    truth: Detections


@dataclass
class FieldResult:
    sample: LabelledField
    counted: Detections  # at the model's thresholds, as `count` reports them
    ranked: Detections  # down to the evaluation floor, for AP
    qc: list[str] = field(default_factory=list)


def count_fields(fields: list[LabelledField], counter: Any, ranker: Any, options: Any = None) -> list[FieldResult]:
    """Each field counted as `count` counts it (`counter`, a Detector at its thresholds, and CountOptions), and
    predicted down to the evaluation floor (`ranker`) at the scale it was counted at, for AP."""
    from ..core.images import open_image
    from ..count.counting import count_images, detect_image
    from ..count.options import CountOptions

    counted, errors = count_images([f.path for f in fields], counter, options or CountOptions(), progress=False)
    if errors:
        raise errors[0]
    results = []
    for f, c in zip(fields, counted):
        src = open_image(f.path)
        try:
            ranked = detect_image(src, ranker, tile=0, progress=False, mpp=c.mpp)[0]
        finally:
            src.close()
        results.append(FieldResult(f, c.detections, ranked, c.qc))
    return results


def fields_of(annotations: list[ImageAnnotation], names: list[str]) -> list[LabelledField]:
    return [LabelledField(a.image_path, a.width, a.height, boxes_as_detections(a.boxes, names)) for a in annotations]


def ap50(results: list[FieldResult], names: list[str]) -> dict[str, float]:
    """AP at IoU 0.5 per class (COCO's 101-point interpolation), from the ranked detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from .evaluate import GroundTruth, coco_ground_truth, coco_predictions

    gts = [GroundTruth(r.sample.path, r.sample.width, r.sample.height, r.sample.truth) for r in results]
    truth = COCO()
    truth.dataset = coco_ground_truth(gts, names)
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        preds = coco_predictions([r.ranked for r in results])
        if not preds:
            return {n: 0.0 for n in names}
        found = truth.loadRes(preds)
        ev = COCOeval(truth, found, "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [1, 10, 1000]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, 2]  # (recall points, classes) at maxDets 1000, all areas
    out = {}
    for k, n in enumerate(names):
        p = precision[:, k]
        out[n] = round(float(p[p > -1].mean()), 4) if (p > -1).any() else float("nan")
    return out


def summarise(results: list[FieldResult], names: list[str]) -> dict[str, Any]:
    """Per class: count MAE, bias and means, recall and precision at IoU 0.5; RBC interior MAE; AP50; qc share."""
    n = len(names)
    true = np.array([r.sample.truth.counts(n) for r in results]).reshape(-1, n)
    pred = np.array([r.counted.counts(n) for r in results]).reshape(-1, n)
    per_class: dict[str, dict[str, float]] = {}
    aps = ap50(results, names)
    for k, name in enumerate(names):
        hits_t = hits_p = n_t = n_p = 0
        for r in results:
            t, p = r.sample.truth.subset(r.sample.truth.cls == k), r.counted.subset(r.counted.cls == k)
            m = match(p, t, 0.5)
            hits_t, hits_p, n_t, n_p = hits_t + int(m.truth.sum()), hits_p + int(m.pred.sum()), n_t + len(t), n_p + len(p)
        per_class[name] = {
            "count_mae": round(float(np.abs(pred[:, k] - true[:, k]).mean()), 3),
            "bias": round(float((pred[:, k] - true[:, k]).mean()), 3),
            "true_mean": round(float(true[:, k].mean()), 3), "counted_mean": round(float(pred[:, k].mean()), 3),
            "ap50": aps[name],
            "recall": round(hits_t / n_t, 3) if n_t else float("nan"),
            "precision": round(hits_p / n_p, 3) if n_p else float("nan"),
        }
    out: dict[str, Any] = {"fields": len(results), "classes": per_class}
    if "RBC" in names:
        k = names.index("RBC")
        interior = [abs(int(apply_edge_rule(r.counted, "interior", r.sample.width, r.sample.height).counts(n)[k])
                        - int(apply_edge_rule(r.sample.truth, "interior", r.sample.width, r.sample.height).counts(n)[k]))
                    for r in results]
        out["rbc_interior_mae"] = round(float(np.mean(interior)), 3) if interior else float("nan")
        out["rbc_off_25pct"] = int(sum(abs(pred[i, k] - true[i, k]) > 0.25 * max(1, true[i, k]) for i in range(len(results))))
    out["qc_flagged"] = int(sum(bool(r.qc) for r in results))
    return out


def table(summaries: dict[str, dict[str, Any]], names: list[str]) -> str:
    """One Markdown row per source and class."""
    rows = ["| source | fields | class | count MAE | bias | AP50 | recall | precision | counted / true per field |",
            "|---|---|---|---|---|---|---|---|---|"]
    for source, s in summaries.items():
        for name in names:
            c = s["classes"][name]
            rows.append(f"| {source} | {s['fields']} | {name} | {c['count_mae']:.2f} | {c['bias']:+.2f} | {c['ap50']:.3f} | "
                        f"{c['recall']:.3f} | {c['precision']:.3f} | {c['counted_mean']:.2f} / {c['true_mean']:.2f} |")
    return "\n".join(rows)
