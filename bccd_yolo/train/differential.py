"""Typed white-cell fields -> crops of one physical size -> a type classifier -> its unclassified threshold.

`bccd-yolo train-differential FOLDER --mpp UM`: the study's protocol for the differential. The classifier is
the detector's backbone under a classification head, started from random weights, darknet's COCO weights or
the shipped blood-cell detector (`--weights`), with the backbone frozen (`--stage head`) or not (`--stage full`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InputError
from ..core.fsutil import atomic_write_text
from ..count.differential import types_sidecar
from ..data.cell_crops import CROP_PX, CROP_UM, CropDataset, CropGeometry, build_crops, read_bgr

LOGGER = logging.getLogger(__name__)
SCORE_FLOOR_PERCENTILE = 5  # count's qc warns when an image's white cells score under what 95 % of val cells score

STAGES = {"head": "backbone frozen; the classification head trains",
          "full": "everything trains from the starting weights"}


@dataclass
class DifferentialRequest:
    data: str  # folder-per-class fields: train/<class>/*.jpg, val/<class>/*.jpg
    mpp: float  # um per pixel of those fields
    weights: str | None = "shipped"  # "shipped" (the detector), a .pt, darknet .weights, or None (random)
    stage: str = "full"
    epochs: int = 20
    imgsz: int = 128
    batch: int = 32
    crop_um: float = CROP_UM
    stain: float = 0.5
    grey: float = 0.0
    blur: float = 0.2
    project: str = "runs"
    name: str = "differential"
    crops: str | None = None  # where the crops are kept (default: datasets/<data folder>-crops)
    resume: bool = False
    workers: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def check_request(req: DifferentialRequest) -> None:
    from ..core.scale import MPP_RANGE

    if req.stage not in STAGES:
        raise InputError(None, f"{req.stage}: choose one of {', '.join(STAGES)}", option="stage")
    if not MPP_RANGE[0] <= req.mpp <= MPP_RANGE[1]:
        raise InputError(None, f"{req.mpp}: micrometres per pixel between {MPP_RANGE[0]} and {MPP_RANGE[1]}", option="mpp")
    for name in ("stain", "grey", "blur"):
        if not 0 <= getattr(req, name) <= 1:
            raise InputError(None, f"{getattr(req, name)}: a share of training images, from 0 to 1", option=name)
    if req.epochs < 1 or req.imgsz < 32 or req.batch < 1:
        raise InputError(None, "epochs and batch must be at least 1 and imgsz at least 32", option="epochs")


def starting_weights(weights: str | None) -> tuple[str | None, dict | None]:
    """A .pt path the classifier starts from (None: random) and, for darknet weights, their provenance."""
    if weights in (None, "", "none", "scratch"):
        return None, None
    if weights == "shipped":
        from ..count.detector import default_weights

        return str(default_weights()), None
    if str(weights).endswith(".weights"):
        from ..core.fetching import cache_dir
        from ..model.darknet_files import resolve_darknet_weights
        from ..yolo.darknet import import_to_cache

        pt, imported = import_to_cache(resolve_darknet_weights(str(weights)), None, cache_dir() / "darknet")
        return str(pt), imported.provenance()
    if not Path(str(weights)).is_file():
        raise InputError(weights, "weights file not found")
    return str(weights), None


def crops_folder(req: DifferentialRequest) -> Path:
    return Path(req.crops) if req.crops else Path("datasets") / f"{Path(req.data).resolve().name}-crops"


def train_differential(req: DifferentialRequest, callbacks: dict[str, Callable[[Any], object]] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Crop, train, pick the unclassified threshold on val; returns the record written to timing.json."""
    from ..yolo.classify import backbone_layers, classifier_yaml, classify_augment_callback
    from ..yolo.models import checkpoint_finished
    from ..yolo.train import check_overrides, device_name, train
    from .finetune import default_workers

    check_request(req)
    check_overrides(req.overrides)
    run_dir = Path(req.project) / req.name
    crops = build_crops(Path(req.data), crops_folder(req), CropGeometry(req.crop_um, req.mpp, CROP_PX), progress)
    start_pt, darknet = (None, None) if req.resume else starting_weights(req.weights)
    args: dict[str, Any]
    if req.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise InputError(last, "nothing to resume (no last.pt in this run)")
        if checkpoint_finished(last):
            raise InputError(run_dir, "this run is finished (its last.pt holds no optimiser state): nothing to resume")
        model_file, args = str(last), {"resume": True}
    else:
        model_file = classifier_yaml(len(crops.classes))
        args = {"data": str(crops.root.resolve()), "epochs": req.epochs, "imgsz": req.imgsz, "batch": req.batch,
                "workers": req.workers if req.workers is not None else default_workers(),
                "project": str(Path(req.project).resolve()), "name": req.name, "exist_ok": True,
                "pretrained": start_pt or False,
                "freeze": backbone_layers() if req.stage == "head" else None,
                # a crop's side is fixed in micrometres: resize by at most ~13 % (area 0.75-1), no hue rotation
                # (stain jitter moves colour the way stains differ), and vertical flips (a cell has no up)
                "scale": 0.25, "flipud": 0.5, "hsv_h": 0.0, **req.overrides}
        args = {k: v for k, v in args.items() if v is not None}
    hooks: dict[str, list[Callable[[Any], object]]] = {e: [f] for e, f in (callbacks or {}).items()}
    hooks.setdefault("on_train_start", []).append(classify_augment_callback(req.stain, req.grey, req.blur))
    started = time.perf_counter()
    save_dir, seen = train(model_file, args, hooks)
    wall = time.perf_counter() - started
    best = save_dir / "weights" / "best.pt"
    scores = calibrate_types(best, crops, req.imgsz)
    record = {
        **{k: v for k, v in asdict(req).items() if k not in {"overrides", "resume"}},
        "resumed": req.resume, "overrides": json.loads(json.dumps(req.overrides, default=str)),
        "start": start_pt or ("resumed" if req.resume else "random"), "darknet": darknet,
        "device": device_name(), "wall_seconds": round(wall, 1), "train_images": seen.get("train_images"),
        "trainable_params": seen.get("trainable_params"), "frozen_params": seen.get("frozen_params"),
        "val": scores,
    }
    atomic_write_text(save_dir / "timing.json", json.dumps(record, indent=2) + "\n")
    return record


def calibrate_types(weights: Path, crops: CropDataset, imgsz: int, seed: int = 0) -> dict[str, Any]:
    """The unclassified threshold, written with the classes and crop geometry beside `weights`; returns the val
    scores. Val has one microscope's colours, where nearly every call is confident; counting meets others. So
    the threshold is chosen on the val crops together with a stain-shifted copy of them (each crop's stains
    jittered as in training, half of them blurred): calls at scores that shifted stains make unreliable are left
    unclassified. Scores are reported on val as it is ("val") and on the shifted copy ("shifted")."""
    import numpy as np

    from ..measure.differential import type_scores, unclassified_threshold
    from ..yolo.classify import load_classifier, predict_probs

    model = load_classifier(weights)
    names = [model.names[i] for i in range(len(model.names))]
    if sorted(names) != sorted(crops.classes):
        raise InputError(weights, f"classes {names} are not the crops' {crops.classes}")
    files = [(f, names.index(c)) for c in crops.classes for f in sorted((crops.root / "val" / c).glob("*.jpg"))]
    images = [read_bgr(f) for f, _ in files]
    shifted = _stain_shifted(images, seed)
    probs, moved = (np.concatenate([predict_probs(model, ims[i:i + 64], imgsz) for i in range(0, len(ims), 64)])
                    for ims in (images, shifted))
    truth = np.array([t for _, t in files])
    threshold = unclassified_threshold(np.concatenate([probs, moved]), np.concatenate([truth, truth]))
    scores = {"all": type_scores(probs, truth, names).as_dict(),
              "thresholded": type_scores(probs, truth, names, threshold).as_dict(),
              "shifted_all": type_scores(moved, truth, names).as_dict(),
              "shifted_thresholded": type_scores(moved, truth, names, threshold).as_dict()}
    floor = float(np.percentile(probs.max(axis=1), SCORE_FLOOR_PERCENTILE))
    sidecar = {"classes": names, "threshold": round(threshold, 4), "imgsz": imgsz, "score_floor": round(floor, 4),
               "geometry": asdict(crops.geometry), "source": crops.source, "val": scores}
    atomic_write_text(types_sidecar(weights), json.dumps(sidecar, indent=2) + "\n")
    LOGGER.info("val, unclassified below %.2f:\n%s", threshold, type_scores(probs, truth, names, threshold).table())
    return scores


def _stain_shifted(images: list[Any], seed: int) -> list[Any]:
    """BGR crops with each stain's density scaled and shifted as the training jitter does (StainTransform), half
    of them blurred as in training (BlurTransform), from a fixed seed."""
    import cv2
    import numpy as np

    from ..yolo.augment import BlurTransform, StainTransform, stain_jitter

    stain, blur = StainTransform(1.0), BlurTransform(1.0)
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        moved = stain_jitter(im, rng.uniform(1 - stain.scale, 1 + stain.scale, 3), rng.uniform(-stain.shift, stain.shift, 3))
        if rng.random() < 0.5:
            moved = cv2.GaussianBlur(moved, (0, 0), float(rng.uniform(*blur.sigmas)))
        out.append(moved)
    return out

