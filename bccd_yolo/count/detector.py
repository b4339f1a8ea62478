"""Weights -> thresholded detections: the model (through `bccd_yolo.yolo.predict`) with per-class thresholds.

Inference only: nothing here imports training code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError
from ..model.exports import PRECISIONS
from .options import DEFAULT_PRECISION
from .thresholds import RAW_CONF, Conf, Thresholds, read_model_scale, read_stain_hues

LOGGER = logging.getLogger(__name__)
BACKENDS = ("torch", "onnx", "openvino")
UNSCALED_FRAME = 640  # a model with no recorded scale: inputs are taken to be frames this wide shown at imgsz

# bccd_yolo/weights links to the repository's weights/ (the source of truth); wheels carry the files themselves
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "bccd_yolov3_tiny.pt"


def default_weights() -> Path:
    if not SHIPPED_WEIGHTS.is_file():
        raise InputError(SHIPPED_WEIGHTS, "shipped model not found; pass {weights} PT")
    return SHIPPED_WEIGHTS


# A slide's tiles per forward pass. On CPU one 640 px tile already keeps the cores busy, so more tiles a pass only
# hold more of the runtime's buffers: benchmarks/batch_memory.py, a 10,000 px slide on 2 cores, OpenVINO batch 1
# against 8 in 19.8 s against 19.9 with a peak of 319 MB against 583; ONNX Runtime batch 2 in 36.3 s against 37.6,
# 440 MB against 854 (batch 1: 35.9 s and 375 MB in that run, 40.0 s in the run before: kept at 2). torch keeps 8,
# for GPUs. Many-core CPUs were not measured.
DEFAULT_BATCH = {"openvino": 1, "onnx": 2, "torch": 8}


class Detector:
    """Batches of RGB arrays in, one Detections per image out, at the model's per-class thresholds.

    OpenVINO and ONNX Runtime run the checkpoint's export (`runtime.ExportedModel`) without torch or Ultralytics;
    only a missing export (made once, then kept) or the torch backend opens `bccd_yolo.yolo`."""

    def __init__(self, weights: Path, backend: str = "auto", imgsz: int | None = None, conf: Conf = None,
                 iou: float = 0.7, device: str | None = None, batch: int | None = None, max_det: int = 300,
                 quiet: bool = False, precision: str = DEFAULT_PRECISION):
        """`batch`: a slide's tiles per forward pass (None: DEFAULT_BATCH for the backend). `precision`: fp32
        pinned (with OpenVINO, the torch backend's numbers); auto, the runtime's choice (OpenVINO's CPU plugin: bf16
        on CPUs with AVX512-BF16 or AMX, else fp32; other backends: fp32); int8, the NNCF-quantised OpenVINO export."""
        from .runtime import resolve_backend

        self.weights = Path(weights)
        if not self.weights.is_file():
            raise InputError(self.weights, "weights file not found")
        backend, self.backend_note = resolve_backend(backend, device)
        if backend not in BACKENDS:
            raise InputError(None, f"{backend}: choose one of auto, {', '.join(BACKENDS)}", option="backend")
        if precision not in (*PRECISIONS, "auto") or (precision == "int8" and backend != "openvino"):
            raise InputError(None, f"{precision}: choose fp32 or auto, or int8 with the openvino backend", option="precision")
        batch = batch or DEFAULT_BATCH[backend]
        self.predictor: Any = (_torch_predictor(self.weights, imgsz, iou, device, batch, max_det, quiet) if backend == "torch"
                               else _exported(self.weights, backend, precision, batch, iou, max_det, quiet))
        self.runs_at = getattr(self.predictor, "runs_at", "f32")  # what the runtime actually computes in
        self.names = self.predictor.names
        self.train_imgsz = self.predictor.train_imgsz
        self.imgsz, self.iou, self.batch, self.backend = int(imgsz or self.train_imgsz), iou, batch, backend
        self.precision = precision
        self.thresholds = Thresholds.for_model(self.weights, self.names, conf)
        self.scale = read_model_scale(self.weights)
        self.stain_hues = read_stain_hues(self.weights)

    def __call__(self, images: list[np.ndarray], threshold: bool = True, native: bool = False) -> list[Detections]:
        """Detections per image; with threshold=False, every box down to RAW_CONF (for merging tiles first).
        With `native`, images are already at the model's scale and are not resized (see Predictor)."""
        conf = self.thresholds.lowest if threshold else min(RAW_CONF, self.thresholds.lowest)
        found = self.predictor(images, conf, native, self.imgsz)
        return [self.thresholds.keep(d, self.names) for d in found] if threshold else found

    def release_memory(self) -> None:
        """Give back the runtime's buffers for the shapes it ran (OpenVINO); a long-running server calls it
        between counts."""
        getattr(self.predictor, "release_memory", lambda: None)()

    def factor(self, mpp: float | None) -> float:
        """Input pixels -> network pixels for an input at `mpp` um/px (None: the model's photo scale). An `imgsz`
        other than the training size shows everything that much smaller or larger (a speed/accuracy knob).
        Without a recorded model scale the input is taken to be a photo like BCCD's, 640 px wide."""
        if self.scale is None:
            return self.imgsz / UNSCALED_FRAME
        return (mpp if mpp is not None else self.scale.photo_mpp) / self.scale.mpp * self.imgsz / self.train_imgsz


def _torch_predictor(weights: Path, imgsz: int | None, iou: float, device: str | None, batch: int, max_det: int,
                     quiet: bool) -> Any:
    from ..yolo.predict import Predictor

    return Predictor(weights, imgsz, iou, device, batch, max_det, quiet)


def _exported(weights: Path, backend: str, precision: str, batch: int, iou: float, max_det: int, quiet: bool) -> Any:
    """The export of these weights, made first where there is none (that needs torch); one that cannot be read is
    made again where torch is there, else named in the error."""
    from ..model.exports import record_path
    from .runtime import ExportedModel, find_export, installed

    pin = precision == "fp32"
    precision = "int8" if precision == "int8" else "fp32"  # auto runs the fp32 export at the plugin's choice

    found = find_export(weights, backend, precision)
    if found is not None:
        try:
            return ExportedModel(found[0], found[1], batch, iou, max_det, pin)
        except InputError:
            if not installed("torch"):
                raise
            LOGGER.warning("%s: cannot be read; exporting it again from %s", found[0], weights.name)
            record_path(found[0]).unlink()
    if precision != "fp32":
        raise InputError(weights, f"no {precision} export of these weights: make one with bccd-yolo export --weights "
                                  f"{weights} --precision {precision} --data DATA.yaml (it calibrates on DATA's train split)")
    if not installed("torch"):
        raise InputError(weights, f"no {backend} export of these weights, and torch is not installed to make one "
                                  "(pip install torch, or count with weights that ship their export)")
    from ..yolo.export import export

    if not quiet:
        LOGGER.info("exporting %s to %s (once; kept beside the weights)", weights.name, backend)
    path = export(weights, backend, precision, quiet=quiet)
    found = find_export(weights, backend, precision)
    assert found is not None, path
    return ExportedModel(found[0], found[1], batch, iou, max_det, pin)
