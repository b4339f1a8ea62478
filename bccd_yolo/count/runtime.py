"""An exported detector (OpenVINO IR or ONNX) run without torch or Ultralytics: RGB arrays in, raw Detections out.

What Ultralytics' predictor does for these exports, done in numpy and OpenCV: letterbox (or, for images already at
the model's scale, padding at the bottom and right to a multiple of the stride), RGB scaled to [0, 1] in NCHW, the
network, then best-class scores, the `conf` filter and class-aware NMS (`cv2.dnn.NMSBoxesBatched`), at most
`max_det` boxes. The export and its record (`model.exports.ExportRecord`: class names, training size, stride, the checkpoint's
hash) are made once by `bccd_yolo.yolo.export`; the shipped model's come with the package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError
from ..core.images import PAD_VALUE, pad_to_stride
from ..model.exports import ExportRecord, export_candidates, record_path

MAX_NMS = 30000  # Ultralytics' non_max_suppression: boxes kept for NMS, best first


def installed(backend: str) -> bool:
    module = {"openvino": "openvino", "onnx": "onnxruntime", "torch": "torch"}[backend]
    return importlib.util.find_spec(module) is not None


def gpu_present() -> bool:
    """An NVIDIA GPU the torch backend could use, told without importing torch."""
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvidiactl")) and installed("torch")


def resolve_backend(backend: str, device: str | None) -> tuple[str, str | None]:
    """The backend to run and, for `auto`, why: torch on a GPU; on CPU OpenVINO where installed, else ONNX Runtime,
    else torch."""
    if backend != "auto":
        return backend, None
    if device not in (None, "cpu") or (device is None and gpu_present()):
        return "torch", "a GPU is present"
    for b in ("openvino", "onnx", "torch"):
        if installed(b):
            return b, None if b == "openvino" else "OpenVINO is not installed"
    raise InputError(None, "none of openvino, onnxruntime or torch is installed (pip install openvino)", option="backend")


class ExportedModel:
    """A loaded export: batched prediction of raw boxes (every box scoring over `conf`)."""

    def __init__(self, export: Path, record: ExportRecord, batch: int = 8, iou: float = 0.7, max_det: int = 300,
                 pin_fp32: bool = True):
        self.path, self.record = Path(export), record
        self.names, self.train_imgsz, self.stride = list(record.names), record.train_imgsz, record.stride
        self.backend, self.batch, self.iou, self.max_det = record.backend, batch, iou, max_det
        self.precision, self.pin_fp32 = record.precision, pin_fp32
        self._compiled: Any = None  # OpenVINO's compiled model (release_memory); None for ONNX Runtime
        self._run = self._load()

    def _load(self) -> Any:
        try:
            if self.backend == "openvino":
                return self._load_openvino()
            return self._load_onnx()
        except InputError:
            raise
        except Exception as e:  # a truncated .bin, a malformed .xml or .onnx: the runtimes raise their own types
            raise InputError(self.path, f"exported model cannot be read ({type(e).__name__}): delete it to re-export "
                                        "it from the checkpoint") from None

    def _load_openvino(self) -> Any:
        import openvino as ov

        xml = next(self.path.glob("*.xml"), None)
        if xml is None or not xml.with_suffix(".bin").is_file():
            raise InputError(self.path, "OpenVINO export without its .xml and .bin")
        core = ov.Core()
        # The LATENCY hint as Ultralytics compiles it. With pin_fp32 a CPU with BF16 or AMX does not round
        # activations to bf16 by itself (the counts then equal the torch backend's, see benchmarks/backend_diff.py)
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": "f32"} if self.pin_fp32 else {})}
        compiled = core.compile_model(core.read_model(str(xml), str(xml.with_suffix(".bin"))), "CPU", config)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        self.runs_at = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # f32, bf16, f16
        request = compiled.create_infer_request()
        self._compiled = compiled
        return lambda x: request.infer({0: x})[compiled.output(0)]

    def release_memory(self) -> None:
        """Give back the buffers OpenVINO keeps for the shapes it ran (a long-running server between counts)."""
        if self._compiled is not None:
            self._compiled.release_memory()

    def _load_onnx(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        self.runs_at = "f32"
        return lambda x: session.run(None, {name: x})[0]

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The network's output for a batch (n, 3, h, w) of floats in [0, 1]."""
        return np.asarray(self._run(x))

    def __call__(self, images: list[np.ndarray], conf: float, native: bool = False, imgsz: int | None = None) -> list[Detections]:
        """As `yolo.predict.Predictor`: letterboxed to `imgsz`, or with `native` padded to the stride, never resized."""
        out: list[Detections] = []
        for i in range(0, len(images), self.batch):
            chunk = images[i : i + self.batch]
            if native:
                batch, (h, w) = pad_to_stride(chunk, self.stride)
                boxes = [(1.0, 0.0, 0.0)] * len(chunk)
            else:
                batch, boxes = letterbox(chunk, imgsz or self.train_imgsz, self.stride)
            x = np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), dtype=np.float32) / 255
            raw = self.raw(x)
            for k, (pred, im) in enumerate(zip(raw, chunk)):
                d = decode(pred, conf, self.iou, self.max_det)
                gain, px, py = boxes[k]
                if not native:
                    d = Detections(((d.xyxy - [px, py, px, py]) / gain).astype(np.float32), d.score, d.cls)
                    out.append(d.clipped(im.shape[1], im.shape[0]))
                else:
                    out.append(d.clipped(batch[k].shape[1], batch[k].shape[0]))
        return out


def letterbox(images: list[np.ndarray], imgsz: int, stride: int) -> tuple[list[np.ndarray], list[tuple[float, float, float]]]:
    """Ultralytics' LetterBox for prediction (square `imgsz`, centred, bilinear): images and (gain, pad x, pad y)."""
    import cv2

    out, how = [], []
    for im in images:
        h0, w0 = im.shape[:2]
        r = min(imgsz / h0, imgsz / w0)
        w1, h1 = round(w0 * r), round(h0 * r)
        dw, dh = (imgsz - w1) / 2, (imgsz - h1) / 2
        if (w0, h0) != (w1, h1):
            im = cv2.resize(im, (w1, h1), interpolation=cv2.INTER_LINEAR)
        top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
        left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
        out.append(cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3))
        how.append((r, float(left), float(top)))
    return out, how


def decode(pred: np.ndarray, conf: float, iou: float, max_det: int) -> Detections:
    """One image's raw output (4 + classes, anchors; boxes as centre and size) -> boxes over `conf` after NMS."""
    import cv2

    scores = pred[4:]
    cls = scores.argmax(0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = best > conf
    if not keep.any():
        return Detections.empty()
    xywh, best, cls = pred[:4, keep].T, best[keep], cls[keep]
    if len(best) > MAX_NMS:
        top = np.argsort(-best, kind="stable")[:MAX_NMS]
        xywh, best, cls = xywh[top], best[top], cls[top]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    rects = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(rects.tolist(), best.tolist(), cls.tolist(), conf, iou), int).reshape(-1)
    idx = idx[np.argsort(-best[idx], kind="stable")][:max_det]
    return Detections(xyxy[idx].astype(np.float32), best[idx].astype(np.float32), cls[idx].astype(np.int64))


def find_export(weights: Path, backend: str, precision: str = "fp32") -> tuple[Path, ExportRecord] | None:
    """An export of exactly these weights with its record, if one exists (beside them or in the cache)."""
    for path in export_candidates(weights, backend, precision):
        record = ExportRecord.read(record_path(path))
        if path.exists() and record is not None:
            return path, record
    return None
