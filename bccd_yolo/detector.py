"""Weights -> thresholded detections: the model (through `bccd_yolo.yolo.predict`) with per-class thresholds.

Inference only: nothing here imports training code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detections import Detections
from .errors import InputError
from .thresholds import RAW_CONF, Conf, Thresholds

# bccd_yolo/weights links to the repository's weights/ (the source of truth); wheels carry the files themselves
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "bccd_yolov3_tiny.pt"


def default_weights() -> Path:
    if not SHIPPED_WEIGHTS.is_file():
        raise InputError(SHIPPED_WEIGHTS, "shipped model not found; pass {weights} PT")
    return SHIPPED_WEIGHTS


class Detector:
    """Batches of RGB arrays in, one Detections per image out, at the model's per-class thresholds."""

    def __init__(self, weights: Path, backend: str = "torch", imgsz: int | None = None, conf: Conf = None,
                 iou: float = 0.7, device: str | None = None, batch: int = 8, max_det: int = 300, quiet: bool = False):
        from .yolo.predict import Predictor

        self.weights = Path(weights)
        self.predictor = Predictor(self.weights, backend, imgsz, iou, device, batch, max_det, quiet)
        self.names = self.predictor.names
        self.imgsz, self.iou, self.batch, self.backend = self.predictor.imgsz, iou, batch, backend
        self.thresholds = Thresholds.for_model(self.weights, self.names, conf)

    def __call__(self, images: list[np.ndarray], threshold: bool = True) -> list[Detections]:
        """Detections per image; with threshold=False, every box down to RAW_CONF (for merging tiles first)."""
        conf = self.thresholds.lowest if threshold else min(RAW_CONF, self.thresholds.lowest)
        found = self.predictor(images, conf)
        return [self.thresholds.keep(d, self.names) for d in found] if threshold else found
