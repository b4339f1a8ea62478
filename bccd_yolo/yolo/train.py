"""Ultralytics training: argument checks up front, the run itself, and the device it ran on."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InputError
from .env import use_all_cpu_threads


def check_overrides(overrides: dict[str, Any]) -> None:
    """Reject Ultralytics arguments it would not accept (unknown keys, wrong types or ranges), through
    Ultralytics' own config checks, before any run folder exists."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg

    for key in overrides:  # checked here: Ultralytics' own check prints its whole CLI help first
        if key not in DEFAULT_CFG_DICT:
            near = difflib.get_close_matches(key, list(DEFAULT_CFG_DICT), n=3)
            raise InputError(None, f"unknown Ultralytics train argument {key!r}"
                                   + (f" (did you mean {', '.join(near)}?)" if near else ""))
    try:
        get_cfg(DEFAULT_CFG_DICT, dict(overrides))
    except (TypeError, ValueError) as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise InputError(None, f"Ultralytics train argument: {first}") from None


def train(model_file: str | Path, args: dict[str, Any],
          callbacks: dict[str, list[Callable[[Any], object]]] | None = None) -> tuple[Path, dict[str, int]]:
    """Build (or resume) `model_file` and train it with Ultralytics; returns the run folder and what was trained:
    images in the train split, trainable and frozen parameter counts as the trainer set them."""
    from ultralytics import YOLO

    model = YOLO(str(model_file))
    seen: dict[str, int] = {}

    def record(trainer: Any) -> None:
        seen["train_images"] = len(trainer.train_loader.dataset)
        params = list(trainer.model.parameters())
        seen["trainable_params"] = sum(p.numel() for p in params if p.requires_grad)
        seen["frozen_params"] = sum(p.numel() for p in params if not p.requires_grad)

    model.add_callback("on_pretrain_routine_start", use_all_cpu_threads)
    model.add_callback("on_val_start", use_all_cpu_threads)
    model.add_callback("on_train_start", record)
    for event, fns in (callbacks or {}).items():
        for fn in fns:
            model.add_callback(event, fn)
    model.train(**args)
    assert model.trainer is not None
    return Path(model.trainer.save_dir), seen


def device_name() -> str:
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
