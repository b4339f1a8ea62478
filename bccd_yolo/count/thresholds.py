"""Per-class confidence thresholds: the calibration sidecar beside the weights (read and written here only)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar, Union

from ..core.detections import Detections
from ..core.errors import InputError
from ..core.fsutil import atomic_write_text
from ..core.scale import ModelScale

LOGGER = logging.getLogger(__name__)

DEFAULT_CONF = 0.25  # Ultralytics' own default, used for classes without a calibrated threshold
RAW_CONF = 0.01  # tiles are predicted down to this, merged, and only then thresholded
T = TypeVar("T")
Conf = Union[float, dict[str, float], None]  # one threshold for every class, some classes', or none given


def thresholds_path(weights: Path) -> Path:
    """The calibration sidecar of a weights file: best.pt -> best.thresholds.json."""
    return Path(weights).with_suffix(".thresholds.json")


def parse_conf(text: str) -> float | dict[str, float]:
    """`0.3` (every class) or `RBC=0.5,WBC=0.3` (some), each a number in [0, 1]."""
    try:
        if "=" not in text:
            return _unit(float(text))
        out = {}
        for item in text.split(","):
            name, _, value = item.partition("=")
            if not name.strip():
                raise ValueError(item)
            out[name.strip()] = _unit(float(value))
        return out
    except ValueError:
        raise InputError(None, f"thresholds {text!r}: expected a number in [0, 1] or CLASS=number pairs",
                         option="conf") from None


def format_conf(conf: float | dict[str, float]) -> str:
    return f"{conf:g}" if isinstance(conf, float) else ",".join(f"{n}={v:g}" for n, v in conf.items())


def _unit(v: float) -> float:
    if not 0 <= v <= 1:
        raise ValueError(v)
    return v


def read_sidecar(sidecar: Path, names: list[str]) -> dict[str, float]:
    """The thresholds a sidecar holds for the model's classes; numbers must be in [0, 1], other classes are ignored."""
    try:
        saved = json.loads(sidecar.read_text())["thresholds"]
    except (ValueError, KeyError, TypeError):
        saved = None
    if not isinstance(saved, dict):
        raise InputError(sidecar, "not a thresholds file (expected {\"thresholds\": {class: conf}})")
    known = {}
    for n, v in saved.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise InputError(sidecar, f"threshold of {n!r} is {v!r}; expected a number in [0, 1]")
        if n in names:
            known[n] = float(v)
        else:
            LOGGER.warning("%s: class %r is not one of the model's (%s); ignored", sidecar, n, ", ".join(names))
    return known


def _recorded(weights: Path, key: str, parse: Callable[[Any], T], expected: str) -> T | None:
    """One record of a model's sidecar, parsed; None where there is no sidecar or it lacks the record (a model
    calibrated before the record existed); a malformed record is one line naming the sidecar."""
    sidecar = thresholds_path(weights)
    if not sidecar.is_file():
        return None
    try:
        rec = json.loads(sidecar.read_text()).get(key)
        return None if rec is None else parse(rec)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise InputError(sidecar, f"{key} is not {expected}") from None


def read_model_scale(weights: Path) -> ModelScale | None:
    """The scale recorded in a model's sidecar by calibrate (or finetune)."""
    return _recorded(weights, "scale", lambda r: ModelScale(float(r["mpp"]), float(r["photo_mpp"]), float(r["rbc_px"])),
                     "{\"mpp\": um/px, \"photo_mpp\": um/px, \"rbc_px\": px}")


def read_stain_hues(weights: Path) -> tuple[float, float] | None:
    """The hue range (CIELAB degrees, lo to hi) of the stain on the model's training fields, recorded by calibrate."""
    return _recorded(weights, "stain", lambda r: (float(r["hue_deg"][0]), float(r["hue_deg"][1])),
                     "{\"hue_deg\": [lo, hi]}")


def write_sidecar(path: Path, thresholds: dict[str, float], meta: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({"thresholds": thresholds, **meta}, indent=2) + "\n")


@dataclass(frozen=True)
class Thresholds:
    """A confidence threshold per class name, and where they came from."""

    by_class: dict[str, float]
    source: str

    @classmethod
    def for_model(cls, weights: Path, names: list[str], conf: Conf = None) -> Thresholds:
        """Calibrated sidecar if present, else Ultralytics' default; `conf` overrides all classes or some."""
        by_class, source = {n: DEFAULT_CONF for n in names}, "default"
        sidecar = thresholds_path(weights)
        if sidecar.is_file():
            known = read_sidecar(sidecar, names)
            by_class.update(known)
            if known:
                source = f"calibrated ({sidecar.name})"
        if conf is not None:
            if isinstance(conf, dict):
                unknown = [n for n in conf if n not in names]
                if unknown:
                    raise InputError(None, f"{format_conf(conf)}: unknown class {unknown[0]!r} (model classes: "
                                           f"{', '.join(names)})", option="conf")
                by_class.update(conf)
            else:
                by_class = {n: float(conf) for n in names}
            partial = isinstance(conf, dict) and source != "default"
            source = f"conf {format_conf(conf)}" + (f" over {source}" if partial else "")
        return cls(by_class, source)

    @property
    def lowest(self) -> float:
        return min(self.by_class.values())

    def keep(self, d: Detections, names: list[str]) -> Detections:
        return d.above([self.by_class[n] for n in names])
