"""One-to-one matching of detections against labelled boxes (numpy only).

Greedy by score, as COCO and VOC evaluation match: each detection, best first, takes the unmatched
box of its class with the highest IoU, if that IoU reaches the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detections import Detections


def overlap_areas(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection areas (n, m) of every pair of rows of a (n, 4) and b (m, 4) (x1, y1, x2, y2), and each box's area."""
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    return inter, (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def iou_of(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Intersection over union from overlap_areas' output."""
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def ios_of(inter: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box from overlap_areas' output."""
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union for every pair of rows of a (n, 4) and b (m, 4), boxes as x1, y1, x2, y2."""
    return iou_of(*overlap_areas(a, b))


@dataclass(frozen=True)
class Match:
    """Which detections found a labelled box (`pred`) and which labelled boxes were found (`truth`)."""

    pred: np.ndarray  # bool per detection
    truth: np.ndarray  # bool per labelled box
    partner: np.ndarray  # per detection, the index of the labelled box it found, else -1


def match(pred: Detections, truth: Detections, iou: float = 0.5) -> Match:
    """Greedy one-to-one matching of same-class boxes at IoU >= `iou`."""
    matched_pred = np.zeros(len(pred), bool)
    matched_truth = np.zeros(len(truth), bool)
    partner = np.full(len(pred), -1, np.int64)
    if len(pred) and len(truth):
        m = iou_matrix(pred.xyxy, truth.xyxy)
        m[pred.cls[:, None] != truth.cls[None, :]] = -1
        for i in np.argsort(-pred.score, kind="stable"):
            row = np.where(matched_truth, -1, m[i])
            j = int(np.argmax(row))
            if row[j] >= iou:
                matched_pred[i] = matched_truth[j] = True
                partner[i] = j
    return Match(matched_pred, matched_truth, partner)
