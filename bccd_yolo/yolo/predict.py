"""Ultralytics prediction, PyTorch or ONNX Runtime: RGB arrays in, raw Detections out (no thresholds)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
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

BACKENDS = ("torch", "onnx", "openvino")


def resolve_backend(backend: str, device: str | None) -> str:
    """`auto`: torch on a GPU; on CPU OpenVINO where installed (3x torch per photo here, see README), else torch."""
    if backend != "auto":
        return backend
    import torch

    gpu = device not in (None, "cpu") or (device is None and torch.cuda.is_available())
    if gpu:
        return "torch"
    return "openvino" if importlib.util.find_spec("openvino") else "torch"
EXPORT_SUFFIX = {"onnx": ".onnx", "openvino": "_openvino_model"}  # what Ultralytics' AutoBackend recognises


def export_path_for(weights: Path, imgsz: int, backend: str) -> Path:
    """The export's name carries the weights' content hash: copying other weights over the file (even with
    `cp -p`, which keeps the time stamp) can never reuse a stale export."""
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]
    return Path(weights).with_name(f"{Path(weights).stem}.{imgsz}.{digest}{EXPORT_SUFFIX[backend]}")


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


def export(weights: Path, imgsz: int, backend: str, quiet: bool = False) -> Path:
    """Export once, with dynamic batch and image size (tiles come at any size), beside the weights (or in the
    cache if that folder is read-only); written under a temporary name and moved into place whole."""
    from ultralytics import YOLO

    from ..download import cache_dir

    weights = Path(weights)
    target = export_path_for(weights, imgsz, backend)
    if not os.access(target.parent, os.W_OK):
        target = cache_dir() / backend / target.name
    if target.exists():
        return target
    if backend == "openvino" and not importlib.util.find_spec("openvino"):
        raise InputError(None, "openvino: not installed (pip install 'bccd-yolo[openvino]')", option="backend")
    with tempfile.TemporaryDirectory() as tmp, _quiet(quiet):
        local = Path(tmp) / weights.name  # Ultralytics writes the export beside the file it loaded
        shutil.copy2(weights, local)
        exported = YOLO(str(local)).export(format=backend, imgsz=imgsz, dynamic=True, simplify=True, verbose=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(exported, staged)
        os.replace(staged, target)
    return target


PAD_VALUE = 114  # Ultralytics' letterbox grey


def pad_to_stride(images: list[np.ndarray], stride: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Every image padded at the bottom and right to one (h, w), the smallest multiple of `stride` holding them
    all, so Ultralytics' letterbox has nothing left to resize and box coordinates stay the image's own."""
    h = -(-max(im.shape[0] for im in images) // stride) * stride
    w = -(-max(im.shape[1] for im in images) // stride) * stride
    out = []
    for im in images:
        if im.shape[:2] != (h, w):
            canvas = np.full((h, w, 3), PAD_VALUE, np.uint8)
            canvas[: im.shape[0], : im.shape[1]] = im
            im = canvas
        out.append(im)
    return out, (h, w)


class Predictor:
    """A loaded model: its class names and training size, and batched prediction."""

    def __init__(self, weights: Path, backend: str = "torch", imgsz: int | None = None, iou: float = 0.7,
                 device: str | None = None, batch: int = 8, max_det: int = 300, quiet: bool = False):
        from ultralytics import YOLO

        backend = resolve_backend(backend, device)
        if backend not in BACKENDS:
            raise InputError(None, f"{backend}: choose one of auto, {', '.join(BACKENDS)}", option="backend")
        self.weights = Path(weights)
        model = load_checkpoint_model(self.weights)
        self.names: list[str] = [model.names[i] for i in range(len(model.names))]
        train_args = getattr(model, "args", {}) or {}
        self.train_imgsz = int(train_args.get("imgsz", 640))
        self.imgsz = int(imgsz or self.train_imgsz)
        self.iou, self.device, self.batch, self.backend, self.max_det = iou, device, batch, backend, max_det
        path = export(self.weights, self.imgsz, backend, quiet) if backend != "torch" else self.weights
        self.stride = int(max(getattr(model, "stride", [32])))
        self._model: Any = YOLO(str(path), task="detect")
        self._model.add_callback("on_predict_start", use_all_cpu_threads)
        self._loaded = False

    def __call__(self, images: list[np.ndarray], conf: float, native: bool = False) -> list[Detections]:
        """Every box scoring at least `conf`, per image. Images are letterboxed to the model's `imgsz` (as
        Ultralytics validates), or with `native` seen at their own size: padded at the bottom and right to a
        multiple of the stride, never resized (the caller has resampled them to the model's scale)."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[i : i + self.batch]]  # Ultralytics wants BGR
            imgsz: int | tuple[int, int] = self.imgsz
            if native:
                chunk, imgsz = pad_to_stride(chunk, self.stride)
            kwargs = {"device": self.device} if self.device is not None else {}
            with _quiet(not self._loaded):  # the first call loads the backend, which Ultralytics announces
                results = self._model.predict(chunk, imgsz=imgsz, conf=conf, iou=self.iou,
                                              max_det=self.max_det, verbose=False, batch=len(chunk), **kwargs)
            self._loaded = True
            for r in results:
                b = r.boxes
                out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                      b.cls.cpu().numpy().astype(np.int64)))
        return out
