"""The transfer-learning protocol as data: which modules of a YOLOv3 variant each stage trains.

Module indices come from the model's YAML: `backbone` is the backbone, the final `Detect` layer is
the detection head, and everything in between is the multi-scale neck.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

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


@dataclass(frozen=True)
class Stage:
    """One arm of the study: what it trains and on which data by default."""

    key: str  # "1", "2", "3" or "scratch"
    trains: tuple[str, ...]
    default_data: str
    description: str

    @property
    def run_name(self) -> str:
        return f"stage{self.key}" if self.key.isdigit() else self.key


STAGES: dict[str, Stage] = {
    "1": Stage("1", ("backbone",), "coco.yaml", "Darknet backbone on MS COCO; neck and head frozen"),
    "2": Stage("2", ("neck",), "VOC.yaml", "multi-scale neck on Pascal VOC; backbone and head frozen"),
    "3": Stage("3", ("neck", "head"), "datasets/bccd/data.yaml", "neck and head on blood cells; backbone frozen"),
    "full": Stage("full", PARTS, "datasets/bccd/data.yaml", "everything trained, from pretrained weights (nothing frozen)"),
    "scratch": Stage("scratch", PARTS, "datasets/bccd/data.yaml", "everything from random initialisation"),
}


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


def frozen_indices(parts: ModelParts, stage: Stage) -> tuple[int, ...]:
    return parts.indices(tuple(p for p in PARTS if p not in stage.trains))


def freeze_names(modules: dict[str, list[str]], frozen: tuple[int, ...], fresh: set[str]) -> list[int | str]:
    """Ultralytics `freeze=` entries: frozen layer indices, with fresh tensors carved out.

    `modules` maps each layer index (as str) to its submodule paths, outermost first
    (e.g. "28", "28.cv2", "28.cv2.0", ...); `fresh` holds the parameter names that were not
    loaded from the checkpoint. A frozen layer holding fresh tensors is replaced by its largest
    submodules that hold none, so the fresh tensors train and everything else stays frozen.
    """
    out: list[str | int] = []
    for index in frozen:
        key = str(index)
        if not any(f.startswith(f"model.{key}.") for f in fresh):
            out.append(index)
            continue
        out.extend(_clean_submodules(key, modules[key], fresh))
    return out


def _clean_submodules(path: str, submodules: list[str], fresh: set[str]) -> list[str]:
    children = [m for m in submodules if m.count(".") == path.count(".") + 1 and m.startswith(path + ".")]
    found = []
    for child in children:
        if any(f.startswith(f"model.{child}.") for f in fresh):
            found.extend(_clean_submodules(child, submodules, fresh))
        else:
            found.append(child)
    return found
