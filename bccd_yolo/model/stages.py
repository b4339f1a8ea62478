"""The transfer-learning protocol as data: which parts of a model each stage trains, and the freeze list."""

from __future__ import annotations

from dataclasses import dataclass

from .architectures import PARTS, ModelParts


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
