"""Weights -> detections: an Ultralytics model (PyTorch or ONNX Runtime) with per-class thresholds."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import yolo_env
from .detections import Detections
from .errors import InputError

LOGGER = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
DEFAULT_CONF = 0.25  # Ultralytics' own default, used for classes without a calibrated threshold
RAW_CONF = 0.01  # tiles are predicted down to this, merged, and only then thresholded
# bccd_yolo/weights links to the repository's weights/ (the source of truth); wheels carry the files themselves
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "bccd_yolov3_tiny.pt"


def default_weights() -> Path:
    if not SHIPPED_WEIGHTS.is_file():
        raise InputError(SHIPPED_WEIGHTS, "shipped model not found; pass --weights PT")
    return SHIPPED_WEIGHTS


def thresholds_path(weights: Path) -> Path:
    """The calibration sidecar of a weights file: best.pt -> best.thresholds.json."""
    return Path(weights).with_suffix(".thresholds.json")


@dataclass(frozen=True)
class Thresholds:
    """A confidence threshold per class name, and where they came from."""

    by_class: dict[str, float]
    source: str

    @classmethod
    def for_model(cls, weights: Path, names: list[str], conf: str | None = None) -> "Thresholds":
        """Calibrated sidecar if present, else Ultralytics' default; `conf` overrides ("0.3" or "RBC=0.5,WBC=0.3")."""
        by_class, source = {n: DEFAULT_CONF for n in names}, "default"
        sidecar = thresholds_path(weights)
        if sidecar.is_file():
            try:
                saved = json.loads(sidecar.read_text())["thresholds"]
            except (ValueError, KeyError, TypeError):
                raise InputError(sidecar, "not a thresholds file (expected {\"thresholds\": {class: conf}})") from None
            if not isinstance(saved, dict):
                raise InputError(sidecar, "not a thresholds file (expected {\"thresholds\": {class: conf}})")
            known = {}
            for n, v in saved.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
                    raise InputError(sidecar, f"threshold of {n!r} is {v!r}; expected a number in [0, 1]")
                if n in by_class:
                    known[n] = float(v)
                else:
                    LOGGER.warning("%s: class %r is not one of the model's (%s); ignored", sidecar, n, ", ".join(names))
            by_class.update(known)
            if known:
                source = f"calibrated ({sidecar.name})"
        if conf:
            by_class.update(parse_conf(conf, names))
            source = f"--conf {conf}" + (f" over {source}" if source != "default" and "=" in conf else "")
        return cls(by_class, source)

    @property
    def lowest(self) -> float:
        return min(self.by_class.values())

    def keep(self, d: Detections, names: list[str]) -> Detections:
        return d.above([self.by_class[n] for n in names])


def parse_conf(text: str, names: list[str]) -> dict[str, float]:
    """"0.3" sets every class; "RBC=0.5,WBC=0.3" sets some."""
    out: dict[str, float] = {}
    try:
        if "=" not in text:
            return {n: _unit(float(text)) for n in names}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if name.strip() not in names:
                raise InputError(None, f"--conf {text}: unknown class {name.strip()!r} (model classes: {', '.join(names)})")
            out[name.strip()] = _unit(float(value))
    except ValueError:
        raise InputError(None, f"--conf {text}: expected a number in [0, 1] or CLASS=number pairs") from None
    return out


def _unit(v: float) -> float:
    if not 0 <= v <= 1:
        raise ValueError(v)
    return v


def onnx_path_for(weights: Path, imgsz: int) -> Path:
    """The export's name carries the weights' content hash: copying other weights over the file (even with
    `cp -p`, which keeps the time stamp) can never reuse a stale export."""
    import hashlib

    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]
    return Path(weights).with_name(f"{Path(weights).stem}.{imgsz}.{digest}.onnx")


def export_onnx(weights: Path, imgsz: int, quiet: bool = False) -> Path:
    """Export once, with a dynamic batch axis, beside the weights (or in the cache if that folder is read-only)."""
    import contextlib
    import io

    from ultralytics import YOLO

    from .download import cache_dir

    weights = Path(weights)
    target = onnx_path_for(weights, imgsz)
    if not os.access(target.parent, os.W_OK):
        target = cache_dir() / "onnx" / target.name
    if target.is_file():
        return target
    ultralytics_log = logging.getLogger("ultralytics")
    level = ultralytics_log.level
    if quiet:
        ultralytics_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                (contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()):
            local = Path(tmp) / weights.name  # Ultralytics writes the export beside the file it loaded
            shutil.copy2(weights, local)
            exported = YOLO(str(local)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, verbose=False)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(exported, target)
    finally:
        ultralytics_log.setLevel(level)
    return target


class Detector:
    """Batches of RGB arrays in, one Detections per image out."""

    def __init__(self, weights: Path, backend: str = "torch", imgsz: int | None = None, conf: str | None = None,
                 iou: float = 0.7, device: str | None = None, batch: int = 8, max_det: int = 300, quiet: bool = False):
        from ultralytics import YOLO

        from .finetune import load_checkpoint_model

        if backend not in BACKENDS:
            raise InputError(None, f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
        self.weights = Path(weights)
        model = load_checkpoint_model(str(self.weights))
        self.names: list[str] = [model.names[i] for i in range(len(model.names))]
        train_args = getattr(model, "args", {}) or {}
        self.imgsz = int(imgsz or train_args.get("imgsz", 640))
        self.thresholds = Thresholds.for_model(self.weights, self.names, conf)
        self.iou, self.device, self.batch, self.backend, self.max_det = iou, device, batch, backend, max_det
        path = export_onnx(self.weights, self.imgsz, quiet) if backend == "onnx" else self.weights
        self.model = YOLO(str(path), task="detect")
        self.model.add_callback("on_predict_start", yolo_env.use_all_cpu_threads)

    def __call__(self, images: list[np.ndarray], threshold: bool = True) -> list[Detections]:
        """Detections per image; with threshold=False, every box down to RAW_CONF (for merging tiles first)."""
        conf = self.thresholds.lowest if threshold else min(RAW_CONF, self.thresholds.lowest)
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = [np.ascontiguousarray(im[..., ::-1]) for im in images[i : i + self.batch]]  # Ultralytics wants BGR
            kwargs = {"device": self.device} if self.device is not None else {}
            results = self.model.predict(chunk, imgsz=self.imgsz, conf=conf, iou=self.iou,
                                         max_det=self.max_det, verbose=False, batch=len(chunk), **kwargs)
            for r in results:
                b = r.boxes
                d = Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                               b.cls.cpu().numpy().astype(np.int64))
                out.append(self.thresholds.keep(d, self.names) if threshold else d)
        return out
