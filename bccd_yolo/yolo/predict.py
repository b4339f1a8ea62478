"""Ultralytics prediction, PyTorch or ONNX Runtime: RGB arrays in, raw Detections out (no thresholds)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..detections import Detections
from ..errors import InputError
from .env import use_all_cpu_threads
from .models import load_checkpoint_model

BACKENDS = ("torch", "onnx")


def onnx_path_for(weights: Path, imgsz: int) -> Path:
    """The export's name carries the weights' content hash: copying other weights over the file (even with
    `cp -p`, which keeps the time stamp) can never reuse a stale export."""
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]
    return Path(weights).with_name(f"{Path(weights).stem}.{imgsz}.{digest}.onnx")


@contextlib.contextmanager
def _quiet(enabled: bool):
    log = logging.getLogger("ultralytics")
    level = log.level
    if enabled:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()) if enabled else contextlib.nullcontext():
            yield
    finally:
        log.setLevel(level)


def export_onnx(weights: Path, imgsz: int, quiet: bool = False) -> Path:
    """Export once, with a dynamic batch axis, beside the weights (or in the cache if that folder is read-only)."""
    from ultralytics import YOLO

    from ..download import cache_dir

    weights = Path(weights)
    target = onnx_path_for(weights, imgsz)
    if not os.access(target.parent, os.W_OK):
        target = cache_dir() / "onnx" / target.name
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp, _quiet(quiet):
        local = Path(tmp) / weights.name  # Ultralytics writes the export beside the file it loaded
        shutil.copy2(weights, local)
        exported = YOLO(str(local)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, verbose=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, target)
    return target


class Predictor:
    """A loaded model: its class names and training size, and batched prediction."""

    def __init__(self, weights: Path, backend: str = "torch", imgsz: int | None = None, iou: float = 0.7,
                 device: str | None = None, batch: int = 8, max_det: int = 300, quiet: bool = False):
        from ultralytics import YOLO

        if backend not in BACKENDS:
            raise InputError(None, f"{backend}: choose one of {', '.join(BACKENDS)}", option="backend")
        self.weights = Path(weights)
        model = load_checkpoint_model(self.weights)
        self.names: list[str] = [model.names[i] for i in range(len(model.names))]
        train_args = getattr(model, "args", {}) or {}
        self.imgsz = int(imgsz or train_args.get("imgsz", 640))
        self.iou, self.device, self.batch, self.backend, self.max_det = iou, device, batch, backend, max_det
        path = export_onnx(self.weights, self.imgsz, quiet) if backend == "onnx" else self.weights
        self._model: Any = YOLO(str(path), task="detect")
        self._model.add_callback("on_predict_start", use_all_cpu_threads)

    def __call__(self, images: list[np.ndarray], conf: float) -> list[Detections]:
        """Every box scoring at least `conf`, per image."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[i : i + self.batch]]  # Ultralytics wants BGR
            kwargs = {"device": self.device} if self.device is not None else {}
            results = self._model.predict(chunk, imgsz=self.imgsz, conf=conf, iou=self.iou,
                                          max_det=self.max_det, verbose=False, batch=len(chunk), **kwargs)
            for r in results:
                b = r.boxes
                out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                      b.cls.cpu().numpy().astype(np.int64)))
        return out
