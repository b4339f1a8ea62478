"""Ultralytics prediction with PyTorch (CPU or GPU): RGB arrays in, raw Detections out (no thresholds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.images import pad_to_stride
from .env import use_all_cpu_threads
from .export import quiet_ultralytics
from .models import load_checkpoint_model


class Predictor:
    """A loaded model: its class names and training size, and batched prediction."""

    def __init__(self, weights: Path, imgsz: int | None = None, iou: float = 0.7, device: str | None = None,
                 batch: int = 8, max_det: int = 300, quiet: bool = False):
        from ultralytics import YOLO

        self.weights = Path(weights)
        model = load_checkpoint_model(self.weights)
        self.names: list[str] = [model.names[i] for i in range(len(model.names))]
        train_args = getattr(model, "args", {}) or {}
        self.train_imgsz = int(train_args.get("imgsz", 640))
        self.imgsz = int(imgsz or self.train_imgsz)
        self.iou, self.device, self.batch, self.max_det = iou, device, batch, max_det
        self.stride = int(max(getattr(model, "stride", [32])))
        self._model: Any = YOLO(str(self.weights), task="detect")
        self._model.add_callback("on_predict_start", use_all_cpu_threads)
        self._loaded = False

    def __call__(self, images: list[np.ndarray], conf: float, native: bool = False, imgsz: int | None = None) -> list[Detections]:
        """Every box scoring at least `conf`, per image. Images are letterboxed to the model's `imgsz` (as
        Ultralytics validates), or with `native` seen at their own size: padded at the bottom and right to a
        multiple of the stride, never resized (the caller has resampled them to the model's scale)."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[i : i + self.batch]]  # Ultralytics wants BGR
            size: int | tuple[int, int] = imgsz or self.imgsz
            if native:
                chunk, size = pad_to_stride(chunk, self.stride)
            kwargs = {"device": self.device} if self.device is not None else {}
            with quiet_ultralytics(not self._loaded):  # the first call loads the backend, which Ultralytics announces
                results = self._model.predict(chunk, imgsz=size, conf=conf, iou=self.iou,
                                              max_det=self.max_det, verbose=False, batch=len(chunk), **kwargs)
            self._loaded = True
            for r in results:
                b = r.boxes
                out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                      b.cls.cpu().numpy().astype(np.int64)))
        return out
