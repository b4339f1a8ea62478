"""Checkpoint -> OpenVINO IR or ONNX, made once and kept beside the weights with its `ExportRecord`.

The only place exports are made: counting runs them with `count.runtime`, which needs neither torch nor Ultralytics.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..core.errors import InputError
from ..model.exports import ExportRecord, export_candidates, record_path, weights_digest
from .models import load_checkpoint_model


@contextlib.contextmanager
def quiet_ultralytics(enabled: bool):
    log = logging.getLogger("ultralytics")
    level = log.level
    if enabled:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()) if enabled else contextlib.nullcontext():
            yield
    finally:
        log.setLevel(level)


def export(weights: Path, backend: str, precision: str = "fp32", data: str | None = None, quiet: bool = False) -> Path:
    """Export once, with dynamic batch and image size (tiles come at any size), beside the weights (or in the
    cache if that folder is read-only); written under a temporary name and moved into place whole. OpenVINO
    weights are stored in FP16 (the checkpoints are half precision: nothing is lost); `int8` quantises with NNCF,
    calibrating on the train split of `data`."""
    from ultralytics import YOLO

    weights = Path(weights)
    target = next((p for p in export_candidates(weights, backend, precision) if os.access(p.parent, os.W_OK)), None)
    if target is None:
        raise InputError(weights.parent, "neither this folder nor the cache can be written: nowhere to export to")
    if target.exists() and record_path(target).is_file():
        return target
    if backend == "openvino" and not importlib.util.find_spec("openvino"):
        raise InputError(None, "openvino: not installed (pip install openvino)", option="backend")
    if precision == "int8" and not importlib.util.find_spec("nncf"):
        raise InputError(None, "int8: NNCF is not installed (pip install 'bccd-yolo[int8]')", option="precision")
    model = load_checkpoint_model(weights)
    record = ExportRecord(weights_digest(weights), [model.names[i] for i in range(len(model.names))],
                          int((getattr(model, "args", {}) or {}).get("imgsz", 640)), int(max(getattr(model, "stride", [32]))),
                          backend, precision)
    quantize = {"fp32": 16 if backend == "openvino" else None, "int8": 8}[precision]
    with tempfile.TemporaryDirectory() as tmp, quiet_ultralytics(quiet):
        local = Path(tmp) / weights.name  # Ultralytics writes the export beside the file it loaded
        shutil.copy2(weights, local)
        extra = {"data": data, "split": "train"} if precision == "int8" else {}
        exported = YOLO(str(local)).export(format=backend, imgsz=record.train_imgsz, dynamic=True, simplify=True,
                                           quantize=quantize, verbose=False, **extra)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(exported, staged)
        if target.exists():  # an export without its record: unfinished or damaged; ours to replace
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staged, target)
        record.write(record_path(target))
    return target
