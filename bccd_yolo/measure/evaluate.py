"""A split's ground truth and low-threshold predictions, and what counting makes of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.detections import Detections
from ..core.matching import iou_matrix
from ..data.labels import read_yolo_detections

EVAL_CONF = 0.001  # keep nearly every box: AP needs the whole ranking, counts re-threshold per class


@dataclass(frozen=True)
class GroundTruth:
    """One image of a split with its labelled boxes in pixels."""

    path: Path
    width: int
    height: int
    boxes: Detections  # score 1.0


def load_ground_truth(info: dict, split: str) -> list[GroundTruth]:
    """YOLO labels of a split, de-normalised to pixels."""
    from ..core.images import read_image_size
    from ..yolo.data import label_paths, split_images

    images = split_images(info, split)
    out = []
    for image, label in zip(images, label_paths(images)):
        w, h = read_image_size(image)
        out.append(GroundTruth(image, w, h, read_yolo_detections(label, w, h)))
    return out


def count_matrix(dets: list[Detections], n_classes: int) -> np.ndarray:
    return np.array([d.counts(n_classes) for d in dets]).reshape(len(dets), n_classes)


def counts_at(preds: list[Detections], thresholds: dict[str, float], names: list[str]) -> np.ndarray:
    """Per-image, per-class counts of predictions at or above each class's threshold."""
    limits = [thresholds[n] for n in names]
    return count_matrix([p.above(limits) for p in preds], len(names))


def count_errors(true: np.ndarray, pred: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Per class: MAE, mean bias (pred - true), mean relative error, Pearson r of per-image counts."""
    rows = []
    for k, n in enumerate(names):
        t, p = true[:, k].astype(float), pred[:, k].astype(float)
        rel = np.abs(p - t)[t > 0] / t[t > 0]
        r = float(np.corrcoef(t, p)[0, 1]) if t.std() > 0 and p.std() > 0 else float("nan")
        rows.append({"class": n, "mae": np.abs(p - t).mean(), "bias": (p - t).mean(),
                     "rel_error": rel.mean() if len(rel) else float("nan"), "pearson_r": r,
                     "true_mean": t.mean(), "pred_mean": p.mean()})
    return pd.DataFrame(rows).set_index("class").round(4)


def coco_ground_truth(gts: list[GroundTruth], names: list[str]) -> dict:
    """COCO instances JSON: image ids 1..N in split order, category ids 1..C (as Ultralytics numbers them)."""
    images: list[dict] = []
    annotations: list[dict] = []
    for i, g in enumerate(gts, 1):
        images.append({"id": i, "file_name": g.path.name, "width": g.width, "height": g.height})
        for (x1, y1, x2, y2), c in zip(g.boxes.xyxy.tolist(), g.boxes.cls.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c) + 1, "iscrowd": 0,
                                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                "area": round((x2 - x1) * (y2 - y1), 2)})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_predictions(preds: list[Detections]) -> list[dict]:
    return [
        {"image_id": i, "category_id": int(c) + 1, "score": round(float(s), 5),
         "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)]}
        for i, p in enumerate(preds, 1)
        for (x1, y1, x2, y2), s, c in zip(p.xyxy, p.score, p.cls)
    ]


def predict_split(detector, gts: list[GroundTruth], progress: bool = True) -> list[Detections]:
    """Low-threshold predictions for every image of the split (the detector must run at EVAL_CONF)."""
    from tqdm import tqdm

    from ..core.images import open_image
    from ..count.counting import detect_image

    out = []
    for g in tqdm(gts, desc="predicting", unit="img", disable=not progress):
        src = open_image(g.path)
        try:
            out.append(detect_image(src, detector, tile=0, progress=False)[0])
        finally:
            src.close()
    return out


def unannotated_share(gts: list[GroundTruth], preds: list[Detections], thresholds: dict[str, float],
                      names: list[str], iou: float = 0.1) -> dict[str, float]:
    """Per class, the share of kept detections that overlap no annotated box of their class (IoU < `iou`).

    On BCCD most of these are real but unlabelled cells (see the report's worst-image overlays),
    which puts a floor under the RBC count error measured against the annotations.
    """
    limits = [thresholds[n] for n in names]
    kept = np.zeros(len(names))
    lone = np.zeros(len(names))
    for g, p in zip(gts, preds):
        p = p.above(limits)
        for k in range(len(names)):
            pk, gk = p.xyxy[p.cls == k], g.boxes.xyxy[g.boxes.cls == k]
            kept[k] += len(pk)
            if len(pk) and len(gk):
                best = iou_matrix(pk, gk).max(1)
                lone[k] += int((best < iou).sum())
            else:
                lone[k] += len(pk)
    return {n: round(float(lone[k] / kept[k]), 4) if kept[k] else float("nan") for k, n in enumerate(names)}
