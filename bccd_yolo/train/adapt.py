"""A lab's labelled fields -> a model for its microscope: hold back, resample to the model's scale, fine-tune,
calibrate on the held-back fields, and say what changed.

`bccd-yolo adapt FOLDER --out MODEL.pt`. FOLDER is a VOC folder, a YOLO folder (with classes.txt, as
`count --labels-out` writes) or a COCO JSON beside its images. The settings for small data (`SMALL_DATA`) come
from benchmarks/adapt_curve.py (README "How many fields to label").
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from ..core.fsutil import atomic_write_text, staged_dir
from ..core.scale import RBC_DIAMETER_UM
from ..data.convert import ClassSpec, data_yaml_text, read_source, write_source_images
from ..data.sources import SourceData, SourceSpec, rbc_diameter
from ..data.voc import ImageAnnotation

LOGGER = logging.getLogger(__name__)

# Repairs that leave every cell as the labeller meant it: said, then adapt goes on. Any other defect (a box outside
# its image, a field without a label file) may be a cell lost or a field not labelled: adapt stops and names it.
HARMLESS = ("exact repeat of an earlier line", "<size> says", "segmentation only", "crowd annotation")
MIN_FIELDS = 4  # three to check on and at least one to learn from
MIN_HELD_BACK = 3
HELD_BACK_SHARE = 0.25
CANVAS = (640, 480)  # the shipped model's training canvas (BCCD's photo size): fields are centred on it, as in training
ORIGIN = "bccd-yolo adapt"  # the marker in a model's sidecar: `--out` may replace only a file that carries it
# For a few fields. The optimiser, on PBC val after 10 and 20 PBC fields (benchmarks/adapt_settings.py): SGD at
# 0.002 had the lowest mean RBC count error (1.23 against AdamW's 1.30 at Ultralytics' rate; AdamW 0.0005 and SGD
# 0.01 worse at 10 fields) in less time. The stage: full and 3 split on the learning curve (benchmarks/adapt_curve.py:
# full better on Raabin-WBC at 10 fields, 3 better on PBC), so full, the study's last step, stays. Steps: at batch =
# fields an epoch is one optimiser step, and 30 epochs stopped early were 11-30 steps; the fields repeated to 64 an
# epoch (5 steps), 15 epochs, no early stop, counted 100 unseen Raabin-WBC *train* fields (not its val fields, which
# the learning curve reports) with RBC / WBC MAE 0.90 / 0.08 and 1.44 / 0.21 on two draws of 10 fields, against
# 1.34 / 0.43 and 1.86 / 0.50 before, in 8.3-8.7 minutes on 2 cores; SGD 0.01 at 64 x 15: 1.17 / 0.03 and 1.63 / 0.32,
# worse by the mean of each class's MAE over its goal (2.0, 0.15), chosen in advance (settings_raabin_n10_rest.json).
# The weights: the last epoch's, not the epoch the three held-back fields scored best (noise at three fields: it
# picked epoch 2 or 3 of 15 in the learning-curve runs that over-counted white cells most). Judged again on the
# same rest fields with their last epochs (benchmarks/adapt_last.py, last_epoch.json), SGD 0.01 scored best by
# that rule: RBC / WBC 0.96 / 0.07 and 1.13 / 0.13 against SGD 0.002's 0.88 / 0.06 and 1.57 / 0.20.
SMALL_DATA: dict[str, Any] = {"stage": "full", "epochs": 15, "imgsz": 640, "patience": 15, "optimizer": "SGD",
                              "lr0": 0.01, "warmup_epochs": 0, "stain": 0.5, "blur": 0.2, "images_per_epoch": 64}


@dataclass
class AdaptRequest:
    folder: str
    out: str
    classes: str | None = None  # output class order and mapping (default: the model's classes)
    source_classes: str | None = None  # class order of YOLO label files without classes.txt
    weights: str | None = None  # the model to adapt (default: the shipped model)
    stage: str | None = None
    epochs: int | None = None
    imgsz: int | None = None
    batch: int | None = None
    images_per_epoch: int | None = None  # the train fields repeated (each copy augmented anew) to at least this many
    hold_back: int | None = None
    seed: int = 0
    project: str = "runs"
    name: str | None = None
    resume: bool = False
    overwrite: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


def hold_back(fields: list[ImageAnnotation], count: int | None, seed: int) -> tuple[list[ImageAnnotation], list[ImageAnnotation]]:
    """(train, held back): a quarter of the fields, at least three, at most all but one; drawn with `seed`."""
    n = len(fields)
    if n < MIN_FIELDS:
        raise InputError(None, f"{n} labelled field{'s' if n != 1 else ''} found; adapt needs at least {MIN_FIELDS} "
                               f"({MIN_HELD_BACK} to check the new model on and at least one to learn from)")
    k = count if count is not None else max(MIN_HELD_BACK, round(HELD_BACK_SHARE * n))
    if not MIN_HELD_BACK <= k <= n - 1:
        raise InputError(None, f"{k}: hold back from {MIN_HELD_BACK} to {n - 1} of these {n} fields", option="hold_back")
    order = sorted(fields, key=lambda a: a.image_id)
    random.Random(seed).shuffle(order)
    return sorted(order[k:], key=lambda a: a.image_id), sorted(order[:k], key=lambda a: a.image_id)


def check_out(out: Path, overwrite: bool) -> None:
    """`--out` may be new, or a model an earlier adapt wrote; anything else only with --overwrite."""
    from ..count.thresholds import thresholds_path

    if out.is_dir():
        raise InputError(out, "is a folder; give the model file to write (e.g. mylab.pt)")
    if out.suffix != ".pt":
        raise InputError(out, "the model file must end in .pt")
    if out.exists() and not overwrite:
        try:
            ours = json.loads(thresholds_path(out).read_text()).get("origin") == ORIGIN
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise InputError(out, "exists and was not written by bccd-yolo adapt; pass {overwrite} to replace it")


def read_fields(req: AdaptRequest, names: list[str]) -> SourceData:
    spec = SourceSpec("lab", Path(req.folder))
    classes = ClassSpec.parse(req.classes or ",".join(names))
    if list(classes.names) != names:
        raise InputError(None, f"{req.classes}: the model counts {', '.join(names)}; map your classes onto those names "
                               "in that order (e.g. RBC,WBC=leukocyte,Platelets)", option="classes")
    data, _ = read_source(spec, classes, req.source_classes, "random", req.seed, 0.0, 0.0, "drop")
    serious = [d for d in data.defects if not d.problem.startswith(HARMLESS)]
    if serious:
        d = serious[0]
        raise InputError(d.file, f"{d.problem} (object {d.object}); fix the labels, nothing was written"
                         + (f" ({len(serious) - 1} more)" if len(serious) > 1 else ""))
    for d in data.defects:
        LOGGER.warning("%s: %s (object %s): %s", d.file, d.problem, d.object, d.action)
    return data


def write_dataset(data: SourceData, train: list[ImageAnnotation], held: list[ImageAnnotation], names: list[str],
                  model_rbc_px: float | None, out: Path, repeat: int = 1) -> dict[str, Any]:
    """The fields resampled to the model's red-cell size and centred on its training canvas, as data.yaml; each
    train field `repeat` times."""
    data = replace(data, spec=replace(data.spec, repeat=repeat), splits={"train": train, "val": held, "test": []})
    data.rbc_px = rbc_diameter(data, tuple(names))
    data.factor = 1.0 if not (model_rbc_px and data.rbc_px) else model_rbc_px / data.rbc_px
    with staged_dir(out, overwrite=True) as tmp:
        for s in ("train", "val", "test"):
            (tmp / "images" / s).mkdir(parents=True)
            (tmp / "labels" / s).mkdir(parents=True)
        write_source_images(tmp, data, tuple(names), "copy", "", CANVAS, {})
        (tmp / "data.yaml").write_text(data_yaml_text(tuple(names)))
    return {"rbc_px": None if data.rbc_px is None else round(data.rbc_px, 2), "factor": round(data.factor, 4)}


def held_back_errors(weights: Path, held: list[ImageAnnotation], names: list[str]) -> dict[str, float]:
    """Count MAE per class on the held-back fields, each counted as `count` counts it (its own file and pixels)."""
    import numpy as np

    from ..count.counting import count_images
    from ..count.detector import Detector
    from ..data.labels import boxes_as_detections
    from ..measure.evaluate import count_matrix

    det = Detector(weights, backend="torch", quiet=True)  # no export of a model that may be a step on the way
    counted, errors = count_images([a.image_path for a in held], det, progress=False)
    if errors:
        raise errors[0]
    true = count_matrix([boxes_as_detections(a.boxes, names) for a in held], len(names))
    pred = count_matrix([c.detections for c in counted], len(names))
    return {n: round(float(np.abs(pred[:, k] - true[:, k]).mean()), 3) for k, n in enumerate(names)}


def adapt(req: AdaptRequest) -> dict[str, Any]:
    """Run it all; returns the summary also written beside the run (adapt.json)."""
    from ..count.detector import default_weights
    from ..count.thresholds import read_model_scale, thresholds_path
    from ..measure.calibrate import calibrate
    from ..yolo.models import load_checkpoint_model
    from .finetune import FinetuneRequest, finetune

    started = time.perf_counter()
    out = Path(req.out)
    check_out(out, req.overwrite)
    base = Path(req.weights) if req.weights else default_weights()
    names = [str(n) for n in load_checkpoint_model(base).names.values()]
    data = read_fields(req, names)
    fields = [a for anns in data.splits.values() for a in anns]
    train, held = hold_back(fields, req.hold_back, req.seed)
    name = req.name or f"adapt-{out.stem}"
    run_root = Path(req.project) / name
    scale = read_model_scale(base)
    photo_rbc = None if scale is None else RBC_DIAMETER_UM / scale.photo_mpp  # the model's red cell in photo pixels
    LOGGER.info("%d fields: %d to train on, %d held back to check on: %s", len(fields), len(train), len(held),
                ", ".join(a.image_path.name for a in held))
    settings = {**SMALL_DATA, **{k: v for k, v in (("stage", req.stage), ("epochs", req.epochs), ("imgsz", req.imgsz),
                                                   ("images_per_epoch", req.images_per_epoch)) if v is not None}}
    repeat = max(1, math.ceil(int(settings["images_per_epoch"]) / len(train)))
    resampled = write_dataset(data, train, held, names, photo_rbc, run_root / "data", repeat)
    batch = req.batch or max(1, min(16, len(train) * repeat))
    ft = FinetuneRequest(stage=str(settings["stage"]), model="yolov3-tiny-darknet", data=str(run_root / "data" / "data.yaml"),
                         weights=str(base), epochs=int(settings["epochs"]), imgsz=int(settings["imgsz"]), batch=batch,
                         project=str(run_root), name="train", resume=req.resume, stain=settings["stain"],
                         blur=settings["blur"], overrides={**small_data_overrides(settings, batch), **req.overrides})
    timing = finetune(ft)
    final = run_root / "train" / "weights" / "last.pt"  # see SMALL_DATA: three fields cannot choose an epoch
    calibrate(final, str(run_root / "data" / "data.yaml"), progress=False)
    before, after = held_back_errors(base, held, names), held_back_errors(final, held, names)
    summary = {"origin": ORIGIN, "fields": len(fields), "trained_on": [a.image_path.name for a in train],
               "held_back": [a.image_path.name for a in held], "resampled": resampled, "settings": settings,
               "repeat": repeat, "batch": batch, "base": str(base), "held_back_mae": {"before": before, "after": after},
               "train_seconds": timing["train_seconds"], "wall_seconds": round(time.perf_counter() - started, 1)}
    sidecar = json.loads(thresholds_path(final).read_text())
    _publish(final, out, {**sidecar, "origin": ORIGIN, "adapt": summary})
    atomic_write_text(run_root / "adapt.json", json.dumps(summary, indent=2) + "\n")
    return summary


def small_data_overrides(settings: dict[str, Any], batch: int) -> dict[str, Any]:
    """Ultralytics arguments for a few fields. `nbs` (the batch Ultralytics accumulates gradients to, 64 by default)
    is the batch itself: with 7 fields, accumulating to 64 would step the optimiser once every 9 epochs."""
    keys = ("patience", "warmup_epochs", "optimizer", "lr0")
    return {"nbs": batch, **{k: settings[k] for k in keys if k in settings}}


def _publish(weights: Path, out: Path, sidecar: dict) -> None:
    """The model and its sidecar into place, each whole: a copy under a temporary name, then renamed."""
    from ..count.thresholds import thresholds_path

    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.partial")
    shutil.copyfile(weights, staged)
    atomic_write_text(thresholds_path(out), json.dumps(sidecar, indent=2) + "\n")
    os.replace(staged, out)


def describe(summary: dict[str, Any], names: list[str]) -> str:
    b, a = summary["held_back_mae"]["before"], summary["held_back_mae"]["after"]
    width = max(len(n) for n in names)
    lines = [f"held-back fields ({len(summary['held_back'])}): {', '.join(summary['held_back'])}",
             f"{'class':<{width}}  count MAE before  after"]
    lines += [f"{n:<{width}}  {b[n]:16.2f}  {a[n]:5.2f}" for n in names]
    lines.append(f"trained on {len(summary['trained_on'])} fields in {summary['train_seconds'] / 60:.1f} min "
                 f"({summary['wall_seconds'] / 60:.1f} min in all)")
    return "\n".join(lines)

