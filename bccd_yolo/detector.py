"""Weights -> thresholded detections: the model (through `bccd_yolo.yolo.predict`) with per-class thresholds.

Inference only: nothing here imports training code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .detections import Detections
from .errors import InputError
from .thresholds import RAW_CONF, Conf, Thresholds, read_model_scale

UNSCALED_FRAME = 640  # a model with no recorded scale: inputs are taken to be frames this wide shown at imgsz

# bccd_yolo/weights links to the repository's weights/ (the source of truth); wheels carry the files themselves
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "bccd_yolov3_tiny.pt"


def default_weights() -> Path:
    if not SHIPPED_WEIGHTS.is_file():
        raise InputError(SHIPPED_WEIGHTS, "shipped model not found; pass {weights} PT")
    return SHIPPED_WEIGHTS


class Detector:
    """Batches of RGB arrays in, one Detections per image out, at the model's per-class thresholds."""

    def __init__(self, weights: Path, backend: str = "auto", imgsz: int | None = None, conf: Conf = None,
                 iou: float = 0.7, device: str | None = None, batch: int = 8, max_det: int = 300, quiet: bool = False):
        from .yolo.predict import Predictor

        self.weights = Path(weights)
        self.predictor = Predictor(self.weights, backend, imgsz, iou, device, batch, max_det, quiet)
        self.names = self.predictor.names
        self.imgsz, self.iou, self.batch, self.backend = self.predictor.imgsz, iou, batch, self.predictor.backend
        self.train_imgsz = self.predictor.train_imgsz
        self.thresholds = Thresholds.for_model(self.weights, self.names, conf)
        self.scale = read_model_scale(self.weights)

    def __call__(self, images: list[np.ndarray], threshold: bool = True, native: bool = False) -> list[Detections]:
        """Detections per image; with threshold=False, every box down to RAW_CONF (for merging tiles first).
        With `native`, images are already at the model's scale and are not resized (see Predictor)."""
        conf = self.thresholds.lowest if threshold else min(RAW_CONF, self.thresholds.lowest)
        found = self.predictor(images, conf, native)
        return [self.thresholds.keep(d, self.names) for d in found] if threshold else found

    def factor(self, mpp: float | None) -> float:
        """Input pixels -> network pixels for an input at `mpp` um/px (None: the model's photo scale). An `imgsz`
        other than the training size shows everything that much smaller or larger (a speed/accuracy knob).
        Without a recorded model scale the input is taken to be a photo like BCCD's, 640 px wide."""
        if self.scale is None:
            return self.imgsz / UNSCALED_FRAME
        return (mpp if mpp is not None else self.scale.photo_mpp) / self.scale.mpp * self.imgsz / self.train_imgsz
