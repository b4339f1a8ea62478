"""Model YAMLs and checkpoints, through Ultralytics: load safely, build, and describe layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..model.architectures import DARKNET_SUFFIX, MODELS, ModelParts, darknet_variant, model_parts_from_yaml

ALLOW_PICKLE_HINT = "set BCCD_YOLO_ALLOW_PICKLE=1 only for files you trust: a full pickle can run any command"


def load_model_yaml(model: str) -> dict:
    """The YAML dict Ultralytics ships for `model` (yolov3, yolov3-spp, yolov3-tiny), its darknet
    variant (`yolov3-tiny-darknet`), or a path to a YAML."""
    from ultralytics.nn.tasks import yaml_model_load

    if model.endswith(DARKNET_SUFFIX) and model[: -len(DARKNET_SUFFIX)] in MODELS:
        return {**darknet_variant(load_model_yaml(model[: -len(DARKNET_SUFFIX)])), "yaml_file": f"{model}.yaml"}
    name = model if model.endswith((".yaml", ".yml")) else f"{model}.yaml"
    if model not in MODELS and not Path(name).is_file():
        raise InputError(None, f"{model}: unknown model; choose one of {', '.join(MODELS)} (add {DARKNET_SUFFIX} "
                               "for darknet's activation) or a model YAML path", option="model")
    try:
        return yaml_model_load(name)
    except (FileNotFoundError, OSError) as e:
        raise InputError(name, f"cannot read model YAML ({e})") from None


def model_yaml_file(model: str) -> str:
    """What `YOLO(...)` builds `model` from: Ultralytics' name, the user's YAML, or a derived darknet YAML."""
    if model.endswith((".yaml", ".yml")):
        return model
    if not model.endswith(DARKNET_SUFFIX):
        return f"{model}.yaml"
    import yaml

    from ..core.fetching import cache_dir
    from ..core.fsutil import atomic_write_text

    path = cache_dir() / "models" / f"{model}.yaml"
    body = {k: v for k, v in load_model_yaml(model).items() if k != "yaml_file"}
    text = f"# {model}: derived by bccd-yolo from Ultralytics' {model[: -len(DARKNET_SUFFIX)]}.yaml\n" + yaml.safe_dump(
        body, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    return str(path)


def model_parts(model: str) -> ModelParts:
    return model_parts_from_yaml(model, load_model_yaml(model))


def build_model(cfg: dict, nc: int | None = None) -> Any:
    """An untrained DetectionModel from a YAML dict."""
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg, nc=nc, verbose=False) if nc is not None else DetectionModel(cfg, verbose=False)


def layer_params(model: Any, index: int) -> int:
    return sum(p.numel() for p in model.model[index].parameters())


def layer_modules(model: Any, index: int) -> list[str]:
    """Submodule paths of layer `index`, outermost first ("28", "28.cv2", ...)."""
    return [n[len("model."):] for n, _ in model.model[index].named_modules(prefix=f"model.{index}")]


def unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a checkpoint's pickle names that the weights-only allow-list does not hold."""
    import torch
    from ultralytics.nn.tasks import _SafeLoad

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip checkpoint at all
        return []
    allowed: dict[str, object] = _SafeLoad._registry or {}
    return sorted(g for g in found if g not in allowed)


def load_checkpoint_model(path: str | Path) -> Any:
    """The model inside an Ultralytics checkpoint (weights-only unpickling), or a clear error."""
    from ultralytics.nn.tasks import load_checkpoint

    p = Path(path)
    if not p.is_file():
        raise InputError(path, "weights file not found")
    try:
        model, _ = load_checkpoint(str(p))
    except TypeError as e:
        if "references types outside" not in str(e):
            raise InputError(path, "not an Ultralytics checkpoint (empty, truncated or corrupted)") from None
        raise InputError(path, f"refused: loading it would build {', '.join(unsafe_globals(p)) or 'objects'}, outside "
                               f"Ultralytics' checkpoint classes ({ALLOW_PICKLE_HINT})") from None
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise InputError(path, f"not an Ultralytics checkpoint ({type(e).__name__})") from None
    if not hasattr(model, "state_dict") or not hasattr(model, "yaml"):
        raise InputError(path, "not an Ultralytics detection checkpoint")
    return model


def checkpoint_finished(path: Path) -> bool:
    """Ultralytics strips the optimiser from last.pt when a run ends; a killed run's last.pt still has it."""
    from ultralytics.nn.tasks import torch_safe_load

    ckpt, _ = torch_safe_load(str(path))
    return ckpt.get("optimizer") is None


def transfer_report(cfg: dict, nc: int, weights: str | None, frozen: tuple[int, ...]) -> dict[str, Any]:
    """What loading `weights` into a fresh model of `cfg` would transfer: tensor counts, the parameters left fresh,
    and per frozen layer its submodules; raises if the checkpoint holds another architecture or activation."""
    target = build_model(cfg, nc)
    state = target.state_dict()
    fresh: set[str] = set()
    transferred = None
    if weights:
        source_model = load_checkpoint_model(weights)
        keys = ("backbone", "head", "activation")
        if [source_model.yaml.get(k) for k in keys] != [cfg.get(k) for k in keys]:
            other = Path(source_model.yaml.get("yaml_file", "another model")).stem
            model_name = Path(cfg.get("yaml_file", "this model")).stem
            raise InputError(weights, f"holds a {other} model, not {model_name}; pass {{model}} to match it")
        source = source_model.float().state_dict()
        matching = {k for k, v in state.items() if k in source and source[k].shape == v.shape}
        transferred = len(matching)
        fresh = {k for k, _ in target.named_parameters() if k not in matching}
    return {
        "total_tensors": len(state), "transferred": transferred, "fresh": fresh,
        "modules": {str(i): layer_modules(target, i) for i in frozen},
        "params": {k: (p.numel(), p.requires_grad) for k, p in target.named_parameters()},
    }
