"""The model architectures bccd-yolo trains, and the parts of each: read from the model's YAML.

Module indices come from the model's YAML: `backbone` is the backbone, the final `Detect` layer is the detection
head, and everything in between is the multi-scale neck. `darknet_variant` writes the YAML that holds darknet's
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import InputError

MODELS = ("yolov3", "yolov3-spp", "yolov3-tiny")
DARKNET_SUFFIX = "-darknet"  # e.g. yolov3-tiny-darknet: the Ultralytics model with darknet's activation and kernels
DARKNET_ACTIVATION = "nn.LeakyReLU(0.1)"
PARTS = ("backbone", "neck", "head")



@dataclass(frozen=True)
class ModelParts:
    """Layer indices of each part of one model."""

    model: str
    backbone: tuple[int, ...]
    neck: tuple[int, ...]
    head: tuple[int, ...]

    def indices(self, parts: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(sorted(i for p in parts for i in getattr(self, p)))


def model_parts_from_yaml(model: str, cfg: dict) -> ModelParts:
    """Split a model YAML dict into backbone / neck / head indices."""
    n_backbone, n_head = len(cfg["backbone"]), len(cfg["head"])
    last = n_backbone + n_head - 1
    if cfg["head"][-1][2] != "Detect":
        raise InputError(model, f"last layer is {cfg['head'][-1][2]}, not Detect: not a detection model")
    return ModelParts(model, tuple(range(n_backbone)), tuple(range(n_backbone, last)), (last,))


def darknet_variant(cfg: dict) -> dict:
    """Ultralytics' YOLOv3 YAML made to hold darknet weights: darknet's LeakyReLU(0.1) everywhere, and
    residual blocks of a 1x1 then a 3x3 convolution (Ultralytics' Bottleneck defaults to 3x3, 3x3)."""
    out = {k: v for k, v in cfg.items() if k not in ("yaml_file", "scale")}
    out["activation"] = DARKNET_ACTIVATION

    def layer(entry: list) -> list:
        frm, n, module, args = entry
        if module == "Bottleneck":
            c2, shortcut = args[0], (args[1] if len(args) > 1 else True)
            args = [c2, shortcut, 1, [1, 3]]
        return [frm, n, module, list(args)]

    out["backbone"] = [layer(e) for e in cfg["backbone"]]
    out["head"] = [layer(e) for e in cfg["head"]]
    return out
