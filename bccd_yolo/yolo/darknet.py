"""Darknet YOLOv3 weights -> an Ultralytics YOLOv3 model with darknet's activation.

The Ultralytics model is built from Ultralytics' own YAML (see `stages.darknet_variant`), so the
import maps tensors only: every convolution and batch norm of backbone and neck, in cfg order onto
the model's `Conv` modules in module order, each shape checked. Darknet's output convolutions
(the ones feeding [yolo]) are read and skipped: the Ultralytics Detect head is anchor-free and
starts fresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.fsutil import atomic_save
from ..model.architectures import DARKNET_SUFFIX, MODELS
from ..model.darknet import ConvLayer, DarknetCfg, DarknetWeights, find_cfg, parse_cfg, read_weights
from .models import build_model, load_model_yaml

LOGGER = logging.getLogger(__name__)


@dataclass
class DarknetImport:
    """An imported model and what went into it."""

    model: Any  # ultralytics DetectionModel
    variant: str  # e.g. yolov3-tiny-darknet
    cfg: Path
    weights: Path
    sha256: str
    layers: int  # convolutions loaded
    tensors: int  # tensors set (kernel + 4 batch-norm tensors per layer)
    skipped: int  # darknet output convolutions not loaded

    def provenance(self) -> dict[str, Any]:
        return {"cfg": str(self.cfg), "weights": str(self.weights), "sha256": self.sha256, "variant": self.variant,
                "layers_loaded": self.layers, "tensors_loaded": self.tensors, "output_convs_skipped": self.skipped}

    def describe(self) -> str:
        return (f"darknet {self.weights.name} ({self.sha256[:12]}) -> {self.variant}: {self.layers} convolutions, "
                f"{self.tensors} tensors loaded; {self.skipped} YOLO output convolutions skipped (the head starts fresh)")


def feature_convs(model) -> list[tuple[str, Any]]:
    """The model's Conv modules outside the Detect head, in module order."""
    from ultralytics.nn.modules.conv import Conv

    head = len(model.model) - 1
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, Conv) and not n.startswith(f"model.{head}.")]


def _mismatch(cfg: DarknetCfg, convs: list[ConvLayer], targets: list[tuple[str, Any]]) -> str | None:
    if len(convs) != len(targets):
        return f"{len(convs)} feature convolutions, the model has {len(targets)}"
    for c, (name, m) in zip(convs, targets):
        shape = tuple(m.conv.weight.shape)
        if shape != c.kernel_shape or m.conv.stride[0] != c.stride:
            return (f"layer {c.index} (line {cfg.layers[c.index].line}) is {c.kernel_shape} stride {c.stride}, "
                    f"{name} is {shape} stride {m.conv.stride[0]}")
    return None


def _input_order(cfg: DarknetCfg, conv: ConvLayer) -> np.ndarray | None:
    """Channel order for a convolution reading darknet's SPP route ([maxpool 13, 9, 5, input]).

    Ultralytics' SPP concatenates [input, pool 5, pool 9, pool 13]: sort the route's blocks by pool size.
    """
    route = cfg.layers[conv.index - 1] if conv.index > 0 else None
    if route is None or route.kind != "route":
        return None
    sources = route.sources
    sizes = [cfg.layers[s].get_int("size", 1) if cfg.layers[s].kind == "maxpool" else 1 for s in sources]
    if sizes == sorted(sizes):
        return None
    width = [cfg.channels[s] for s in sources]
    starts = np.cumsum([0, *width[:-1]])
    return np.concatenate([np.arange(starts[i], starts[i] + width[i]) for i in np.argsort(sizes, kind="stable")])


def load_into(model, cfg: DarknetCfg, weights: DarknetWeights) -> int:
    """Copy darknet tensors into `model`'s feature convolutions; returns the number of tensors set."""
    import torch

    pairs = [(c, t) for c, t in zip(cfg.convs, weights.convs) if not c.output]
    targets = feature_convs(model)
    problem = _mismatch(cfg, [c for c, _ in pairs], targets)
    if problem:
        raise InputError(cfg.path, f"does not match {model.yaml.get('yaml_file', 'the model')}: {problem}")
    n = 0
    with torch.no_grad():
        for (c, t), (name, m) in zip(pairs, targets):
            if not c.batch_normalize or t.scale is None:
                raise InputError(cfg.path, f"layer {c.index}: a feature convolution without batch_normalize=1")
            kernel = t.kernel
            order = _input_order(cfg, c)
            if order is not None:
                kernel = kernel[:, order]
            for dst, src in ((m.conv.weight, kernel), (m.bn.weight, t.scale), (m.bn.bias, t.bias),
                             (m.bn.running_mean, t.mean), (m.bn.running_var, t.var)):
                dst.copy_(torch.tensor(np.asarray(src)))
                n += 1
    return n


def check_activations(cfg: DarknetCfg) -> None:
    for c in cfg.convs:
        want = "linear" if c.output else "leaky"
        if c.activation != want:
            raise InputError(cfg.path, f"layer {c.index} (line {cfg.layers[c.index].line}): activation={c.activation}; "
                                       f"a YOLOv3 cfg has {want} here")


def import_darknet(weights: Path, cfg_path: Path | None = None, variant: str | None = None) -> DarknetImport:
    """Read a darknet model and load it into the matching Ultralytics YOLOv3 variant (or the one named)."""
    cfg = parse_cfg(find_cfg(weights, cfg_path))
    check_activations(cfg)
    data = read_weights(weights, cfg)
    feature = [c for c in cfg.convs if not c.output]
    candidates = [variant] if variant else [m + DARKNET_SUFFIX for m in MODELS]
    problems = []
    for name in candidates:
        model = build_model(load_model_yaml(name), cfg.classes)
        problem = _mismatch(cfg, feature, feature_convs(model))
        if problem is None:
            tensors = load_into(model, cfg, data)
            model.names = _class_names(Path(weights), cfg.classes)
            result = DarknetImport(model, name, cfg.path, Path(weights), data.sha256, len(feature), tensors,
                                   len(cfg.convs) - len(feature))
            LOGGER.info(result.describe())
            return result
        problems.append(f"{name}: {problem}")
    raise InputError(cfg.path, "not a YOLOv3 variant this importer knows (" + "; ".join(problems) + ")")


def _class_names(weights: Path, nc: int) -> dict[int, str]:
    """coco.names (or <stem>.names) beside the weights when it lists nc names, else class0, class1, ..."""
    for candidate in (weights.with_suffix(".names"), weights.parent / "coco.names"):
        if candidate.is_file():
            names = [n.strip() for n in candidate.read_text().splitlines() if n.strip()]
            if len(names) == nc:
                return dict(enumerate(names))
    return {i: f"class{i}" for i in range(nc)}


def save_checkpoint(result: DarknetImport, out: Path) -> Path:
    """An Ultralytics checkpoint (fp32, exact darknet tensors) that `YOLO(out)` and `finetune --weights` load."""
    import datetime

    import torch
    from ultralytics import __version__

    ckpt = {"model": result.model.float(), "ema": None, "train_args": {}, "date": datetime.datetime.now().isoformat(),
            "version": __version__, "darknet": result.provenance()}
    return atomic_save(Path(out), lambda tmp: torch.save(ckpt, tmp))


def import_to_cache(weights: Path, cfg_path: Path | None, cache: Path) -> tuple[Path, DarknetImport]:
    """Import a darknet file into a checkpoint in `cache`, named by the content of weights and cfg."""
    import hashlib

    result = import_darknet(Path(weights), cfg_path)
    key = hashlib.sha256((result.sha256 + result.cfg.read_text(errors="replace")).encode()).hexdigest()[:16]
    return save_checkpoint(result, Path(cache) / f"{Path(weights).stem}-{key}.pt"), result
