"""One confidence threshold per class, chosen on the validation split to minimise per-image count error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError

if TYPE_CHECKING:
    from .evaluate import GroundTruth

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


@dataclass(frozen=True)
class Calibration:
    thresholds: dict[str, float]
    mae_curve: dict[str, list[float]]  # per class, MAE at each GRID threshold
    bias_curve: dict[str, list[float]]

    def mae_at(self, name: str, t: float) -> float:
        return self.mae_curve[name][grid_index(t)]


def grid_index(t: float) -> int:
    """The GRID position nearest to threshold t."""
    return int(np.argmin(np.abs(GRID - t)))


def count_curves(preds: list[Detections], true: np.ndarray, k: int, grid: np.ndarray = GRID) -> tuple[np.ndarray, np.ndarray]:
    """MAE and mean bias of class k's per-image count at each threshold of `grid`."""
    counts = np.stack([
        len(s) - np.searchsorted(s, grid, side="left")
        for s in (np.sort(p.score[p.cls == k]) for p in preds)
    ])  # (images, thresholds): boxes scoring >= t
    err = counts - true[:, k][:, None]
    return np.abs(err).mean(0), err.mean(0)


def source_curves(preds: list[Detections], true: np.ndarray, k: int, groups: list[np.ndarray] | None,
                  grid: np.ndarray = GRID) -> tuple[np.ndarray, np.ndarray]:
    """count_curves, or with `groups` (image indices per source) the mean of each source's curves: every source
    weighs the same, however many images it brings, so the threshold does not serve the largest source alone."""
    if not groups:
        return count_curves(preds, true, k, grid)
    curves = [count_curves([preds[i] for i in g], true[g], k, grid) for g in groups if len(g)]
    return np.mean([c[0] for c in curves], 0), np.mean([c[1] for c in curves], 0)


def calibrate_thresholds(preds: list[Detections], true: np.ndarray, names: list[str], grid: np.ndarray = GRID,
                         groups: list[np.ndarray] | None = None) -> Calibration:
    """Per class, the threshold of least count MAE (with `groups`, the least mean of the sources' MAEs); among ties,
    those of least absolute bias, and of these the middle one: a plateau's edge (WBC is often flat from 0.06 to
    0.56) is the choice most easily upset by other photos, its middle the least."""
    thresholds, maes, biases = {}, {}, {}
    for k, n in enumerate(names):
        mae, bias = source_curves(preds, true, k, groups, grid)
        key = [(round(float(mae[g]), 9), round(abs(float(bias[g])), 9)) for g in range(len(grid))]
        best = min(key)
        tied = [g for g in range(len(grid)) if key[g] == best]
        thresholds[n] = float(grid[tied[(len(tied) - 1) // 2]])
        maes[n], biases[n] = mae.round(4).tolist(), bias.round(4).tolist()
    return Calibration(thresholds, maes, biases)


def training_scale(train: list[GroundTruth], names: list[str], imgsz: int) -> dict | None:
    """The model's scale (see scale.py) from the red cells of the data's train split (`load_ground_truth(info,
    "train")`), as a sidecar record."""
    from ..core.scale import RBC_DIAMETER_UM, model_scale

    if "RBC" not in names:
        return None
    try:
        scale, n = model_scale(((g.boxes, g.width, g.height) for g in train), names.index("RBC"), imgsz)
    except ValueError:
        return None
    return {**scale.as_dict(), "from": f"median of {n} whole red cells in the train split's labels, taken as "
                                      f"{RBC_DIAMETER_UM} um across; the model saw them at {imgsz} px"}


STAIN_SAMPLE = 300  # train images whose stain hue is measured, spread over the split


def training_stain(train: list[GroundTruth], rbc_px: float | None = None, imgsz: int = 640) -> dict | None:
    """The hue range of the train split's stain (1st to 99th percentile of the fields' hues, see count.qc), as a
    sidecar record: the qc verdict's `stain colour` reason compares each counted field with it. Given the model's
    red cell (`rbc_px` network pixels at `imgsz`), each field is measured as `count` measures an input: knowing its
    red cells' size, so bare ground is left out and the light evened."""
    from ..core.images import open_image
    from ..core.sampling import spread
    from ..count.qc import stain_of

    picks = spread(train, STAIN_SAMPLE)
    hues = []
    for g in picks:
        src = open_image(g.path)
        try:
            hue = stain_of(src, rbc_px * max(g.width, g.height) / imgsz if rbc_px else None).hue
        finally:
            src.close()
        if hue is not None:
            hues.append(hue)
    if len(hues) < 10:
        return None
    lo, hi = (round(float(v), 1) for v in np.percentile(hues, [1, 99]))  # the sources' hues lie within +-60 degrees
    return {"hue_deg": [lo, hi], "from": f"1st-99th percentile of {len(hues)} train fields' stain hue (CIELAB a*b*)"}


def training_record(train: list[GroundTruth], names: list[str], imgsz: int) -> dict:
    """What a model's sidecar records of its train split: the scale (None where it has no red cells to tell it)
    and, where enough fields show one, the stain's hue range."""
    scale = training_scale(train, names, imgsz)
    stain = training_stain(train, scale["rbc_px"] if scale else None, imgsz)
    return {"scale": scale, **({"stain": stain} if stain else {})}


def source_groups(info: dict, gts: list) -> list[np.ndarray] | None:
    """Image indices per source of data converted from several sources (data.yaml `sources:`), else None."""
    from ..data.sources import source_of

    sources = list(info.get("sources") or {}) if isinstance(info.get("sources"), dict) else []
    if len(sources) < 2:
        return None
    of = np.array([source_of(g.path.name, sources) for g in gts])
    return [np.flatnonzero(of == s) for s in sources]


def calibrate(weights: Path, data: str, split: str = "val", force: bool = False, imgsz: int | None = None,
              device: str | None = None, progress: bool = True, overwrite: bool = False) -> tuple[Path, dict]:
    """Choose and save thresholds for `weights`; returns the sidecar path and a before/after summary.

    The shipped model's calibration is part of the package: it is replaced only with `overwrite`."""
    import os

    from ..count.detector import SHIPPED_WEIGHTS, Detector
    from ..count.thresholds import DEFAULT_CONF, thresholds_path, write_sidecar
    from ..yolo.data import resolve_data
    from .evaluate import EVAL_CONF, count_matrix, load_ground_truth, predict_split

    if split == "test" and not force:
        raise InputError(None, "test: calibrating on the test split leaks it into the reported results; use val, "
                               "or {force} if you mean it", option="split")
    sidecar = thresholds_path(weights)
    if Path(weights).resolve() == SHIPPED_WEIGHTS.resolve() and sidecar.is_file() and not overwrite:
        raise InputError(sidecar, "is the shipped model's calibration; pass {overwrite} to replace it, or calibrate a "
                                  "copy of the weights (the sidecar is written beside them)")
    data, info = resolve_data(data)
    detector = Detector(weights, imgsz=imgsz, conf=EVAL_CONF, device=device, precision="fp32")  # the same on every CPU
    gts = load_ground_truth(info, split)
    preds = predict_split(detector, gts, progress)
    names = detector.names
    true = count_matrix([g.boxes for g in gts], len(names))
    groups = source_groups(info, gts)
    cal = calibrate_thresholds(preds, true, names, groups=groups)
    summary = {n: {"threshold": cal.thresholds[n], "mae_default": round(cal.mae_at(n, DEFAULT_CONF), 3),
                   "mae_calibrated": round(cal.mae_at(n, cal.thresholds[n]), 3)} for n in names}
    # paths relative to the sidecar: the file travels with the weights to other machines
    trained = training_record(load_ground_truth(info, "train"), names, detector.train_imgsz)
    weighting = "each source the same" if groups else "each image the same"
    write_sidecar(sidecar, cal.thresholds, {**trained, "split": split,
                                 "data": os.path.relpath(data, sidecar.parent), "images": len(gts), "weighting": weighting, "imgsz": detector.imgsz,
                                 "default_conf": DEFAULT_CONF, "count_mae": summary,
                                 "grid": GRID.tolist(), "mae_curve": cal.mae_curve, "bias_curve": cal.bias_curve})
    return sidecar, summary
