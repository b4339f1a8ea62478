"""Stage plan -> Ultralytics training run -> weights and timing.json.

The plan is plain data; Ultralytics is reached only through `bccd_yolo.yolo` (models, data, train).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..core.errors import InputError
from ..core.fsutil import atomic_write_text
from ..model.architectures import PARTS, ModelParts, model_parts_from_yaml
from ..model.stages import STAGES, Stage, freeze_names, frozen_indices

LOGGER = logging.getLogger(__name__)

PROFILES: dict[str, dict[str, Any]] = {
    # A stage-3 or scratch run on BCCD that finishes in minutes on a laptop CPU.
    "cpu-demo": {"model": "yolov3-tiny", "imgsz": 320, "epochs": 10, "batch": 16},
}
DEFAULTS: dict[str, Any] = {"model": "yolov3", "imgsz": 416, "epochs": 100, "batch": 16}


def default_workers() -> int:
    """Loader workers: none on a 2-core machine, where workers compete with torch for the cores."""
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus // 2)


@dataclass
class FinetuneRequest:
    """Everything `bccd-yolo finetune` was asked for; unset fields are filled from the profile and defaults."""

    stage: str  # "1", "2", "3" or "scratch"
    model: str | None = None
    data: str | None = None
    weights: str | None = None
    epochs: int | None = None
    imgsz: int | None = None
    batch: int | None = None
    device: str | None = None
    workers: int | None = None
    project: str = "runs"
    name: str | None = None
    resume: bool = False
    profile: str | None = None
    cfg: str | None = None  # darknet cfg of --weights X.weights (default: beside the weights)
    resample: float | None = None  # share of training images shrunk and resampled back (yolo.augment)
    refill: float | None = None  # share of training images whose padding is repainted (yolo.augment)
    frame: float | None = None  # share of training images cut to a random frame (yolo.augment)
    stain: float | None = None  # share of training images with jittered stain densities (yolo.augment)
    grey: float | None = None  # share of training images in grey (yolo.augment)
    blur: float | None = None  # share of training images blurred (yolo.augment)
    overrides: dict[str, Any] = field(default_factory=dict)

    def filled(self) -> "FinetuneRequest":
        if self.profile and self.profile not in PROFILES:
            raise InputError(None, f"{self.profile}: unknown; choose one of {', '.join(PROFILES)}", option="profile")
        base = {**DEFAULTS, **PROFILES.get(self.profile or "", {})}
        values = {k: (getattr(self, k) if getattr(self, k) is not None else base[k]) for k in base}
        workers = self.workers if self.workers is not None else default_workers()
        name = self.name or STAGES[self.stage].run_name
        return FinetuneRequest(**{**asdict(self), **values, "workers": workers, "name": name})


@dataclass
class RunPlan:
    """A resolved run: what starts it, what is frozen, and the Ultralytics arguments."""

    stage: Stage
    parts: ModelParts
    data: str
    data_info: dict
    weights: str | None
    transferred: int | None
    total_tensors: int
    fresh_in_frozen: list[str]
    freeze: list
    trainable_params: int
    frozen_params: int
    notes: list[str]

    def describe(self) -> str:
        lines = [
            f"Stage {self.stage.key}: {self.stage.description}",
            f"  model {self.parts.model}; data {self.data} ({self.data_info['nc']} classes)",
            f"  starts from {self.weights or 'random initialisation'}"
            + (f": {self.transferred}/{self.total_tensors} tensors transferred" if self.weights else ""),
            f"  trains {', '.join(self.stage.trains)}; frozen layers {_ranges([i for i in self.freeze if isinstance(i, int)]) or 'none'}"
            + (f" and parts of {', '.join(sorted({str(i).split('.')[0] for i in self.freeze if isinstance(i, str)}))}"
               if any(isinstance(i, str) for i in self.freeze) else ""),
            f"  parameters: {self.trainable_params:,} trainable, {self.frozen_params:,} frozen "
            f"({self.trainable_params / max(1, self.trainable_params + self.frozen_params):.1%} trainable)",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _ranges(indices: list[int]) -> str:
    out, start = [], None
    for i, v in enumerate(indices):
        if start is None:
            start = v
        if i + 1 == len(indices) or indices[i + 1] != v + 1:
            out.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(out)


def starting_weights(req: FinetuneRequest, stage: Stage) -> str | None:
    """--weights, else the previous stage's best.pt, else (stage 3) Ultralytics' COCO-pretrained weights."""
    if req.weights:
        return req.weights
    if stage.key in {"1", "scratch"}:
        return None
    if stage.key == "full":
        raise InputError(None, "stage full trains everything from pretrained weights: pass {weights}")
    previous = Path(req.project) / STAGES[str(int(stage.key) - 1)].run_name / "weights" / "best.pt"
    if previous.is_file():
        return str(previous)
    if stage.key == "3":
        from ..core.fetching import cache_dir, fetch_ultralytics_weights

        name = f"{Path(str(req.model)).stem}u.pt"
        LOGGER.info("%s not found: starting stage 3 from COCO-pretrained %s", previous, name)
        try:
            return str(fetch_ultralytics_weights(name, cache_dir() / "weights"))
        except InputError as e:
            raise InputError(None, f"no weights to start stage 3 from: {previous} is missing and {e.path}: {e.template}") from None
    raise InputError(previous, f"previous stage's weights not found; run stage {int(stage.key) - 1} first or pass "
                               "{weights}")


def plan_run(req: FinetuneRequest) -> RunPlan:
    """Resolve data, weights and the freeze list, without creating any run folder."""
    from ..yolo.data import resolve_data
    from ..yolo.models import load_model_yaml, transfer_report

    assert req.model is not None
    stage = STAGES[req.stage]
    cfg = load_model_yaml(req.model)
    parts = model_parts_from_yaml(req.model, cfg)
    data, info = resolve_data(req.data or stage.default_data)
    weights = starting_weights(req, stage)
    frozen = frozen_indices(parts, stage)
    found = transfer_report(cfg, info["nc"], weights, frozen)
    fresh: set[str] = found["fresh"]
    fresh_in_frozen = sorted(k for k in fresh if int(k.split(".")[1]) in frozen)
    freeze = freeze_names(found["modules"], frozen, set(fresh_in_frozen)) if weights else list(frozen)
    notes: list[str] = []
    if fresh_in_frozen:
        notes.append(
            f"{len(fresh_in_frozen)} tensors of frozen layers could not be loaded (class count changes to {info['nc']}): "
            f"{', '.join(sorted({k.rsplit('.', 1)[0] for k in fresh_in_frozen}))} are trained, the rest of those layers stays frozen"
        )
    params: dict[str, tuple[int, bool]] = found["params"]
    frozen_params = sum(n for k, (n, grad) in params.items() if not grad or is_frozen(k, freeze))
    total = sum(n for n, _ in params.values())
    return RunPlan(stage, parts, data, info, weights, found["transferred"], found["total_tensors"], fresh_in_frozen, freeze,
                   total - frozen_params, frozen_params, notes)


def is_frozen(name: str, freeze: list[int | str]) -> bool:
    """Whether the parameter `name` lies in a frozen entry (a layer index or a submodule path), by prefix.
    timing.json records the trainer's own count beside the plan's."""
    return any(name.startswith(f"model.{x}.") for x in freeze)


def _train_args(req: FinetuneRequest, plan: RunPlan) -> dict[str, Any]:
    args = {
        "data": plan.data, "epochs": req.epochs, "imgsz": req.imgsz, "batch": req.batch, "workers": req.workers,
        "project": str(Path(req.project).resolve()), "name": req.name, "exist_ok": True,
        "freeze": plan.freeze, "pretrained": plan.weights or False,
    }
    if req.device is not None:
        args["device"] = req.device
    return {**args, **req.overrides}


def finetune(req: FinetuneRequest, callbacks: dict[str, Callable[[Any], object]] | None = None) -> dict[str, Any]:
    """Run one stage; returns the timing record also written to <project>/<name>/timing.json.

    `callbacks` are extra Ultralytics callbacks, {event: function(trainer)}.
    """
    from ..yolo.models import checkpoint_finished, load_checkpoint_model, model_yaml_file
    from ..yolo.train import check_overrides, train

    check_overrides(req.overrides)
    darknet = None
    if req.weights and req.weights.endswith(".weights") and not req.resume:
        from ..core.fetching import cache_dir
        from ..model.darknet_files import resolve_darknet_weights
        from ..yolo.darknet import import_to_cache

        pt, imported = import_to_cache(resolve_darknet_weights(req.weights), Path(req.cfg) if req.cfg else None,
                                       cache_dir() / "darknet")
        LOGGER.info(imported.describe())
        darknet = imported.provenance()
        req = replace(req, weights=str(pt), model=req.model or imported.variant)
    req = req.filled()
    assert req.name is not None and req.model is not None
    run_dir = Path(req.project) / req.name
    plan: RunPlan | None = None
    if req.resume:
        last = run_dir / "weights" / "last.pt"
        if not last.is_file():
            raise InputError(last, "nothing to resume (no last.pt in this run)")
        load_checkpoint_model(last)
        if checkpoint_finished(last):
            raise InputError(run_dir, "this run is finished (its last.pt holds no optimiser state): nothing to resume")
        model_file, args = str(last), {"resume": True}
        LOGGER.info("Resuming %s", run_dir)
    else:
        plan = plan_run(req)
        LOGGER.info(plan.describe())
        model_file, args = model_yaml_file(req.model), _train_args(req, plan)
    shares = run_augment(run_dir, req)
    req = replace(req, **shares)  # type: ignore[arg-type]
    hooks = training_hooks(callbacks, shares, plan.notes if plan else [])
    start_segment(run_dir, req.resume)
    start = time.perf_counter()
    save_dir, seen = train(model_file, args, hooks)
    wall = time.perf_counter() - start
    record = timing_record(req, plan, save_dir, wall, seen, darknet)
    atomic_write_text(save_dir / "timing.json", json.dumps(record, indent=2) + "\n")
    _append_csv(Path(req.project) / "timing.csv", record)
    if record["data"]:
        record_scale(save_dir, str(record["data"]), req.imgsz)
    LOGGER.info("timing: %.1f s total, %.1f s/epoch -> %s", record["wall_seconds"], record["seconds_per_epoch"],
                save_dir / "timing.json")
    return record


def record_scale(save_dir: Path, data: str, imgsz: int | None) -> None:
    """Every trained checkpoint carries the scale it learnt and its training stain (a sidecar with no thresholds
    yet, which `calibrate` fills in): without the scale, `count --mpp` would have nothing to resample to and would
    change nothing; without the stain, qc could not say that a field's colour is unlike anything trained on."""
    from ..count.thresholds import thresholds_path, write_sidecar
    from ..measure.calibrate import training_record
    from ..measure.evaluate import load_ground_truth
    from ..yolo.data import resolve_data

    try:
        _, info = resolve_data(data)
        names = [info["names"][i] for i in range(len(info["names"]))]
        trained = training_record(load_ground_truth(info, "train"), names, int(imgsz or 640))
    except (InputError, KeyError, TypeError):
        trained = {"scale": None}
    for weights in (save_dir / "weights").glob("*.pt"):
        sidecar = thresholds_path(weights)
        if trained["scale"] is not None and not sidecar.exists():
            write_sidecar(sidecar, {}, {**trained, "note": "scale and stain from the training data; thresholds: run calibrate"})


def training_hooks(callbacks: dict[str, Callable[[Any], object]] | None, shares: dict[str, float],
                   notes: list[str]) -> dict[str, list[Callable[[Any], object]]]:
    """Ultralytics callbacks for a run: the caller's, the augmentation transforms asked for, and the plan's notes."""
    hooks: dict[str, list[Callable[[Any], object]]] = {event: [fn] for event, fn in (callbacks or {}).items()}
    if any(shares.values()):
        from ..yolo.augment import augment_callback

        hooks.setdefault("on_train_start", []).append(augment_callback(**{f"{k}_p": v for k, v in shares.items()}))
    if notes:
        def say_notes(_trainer: Any) -> None:
            for n in notes:
                LOGGER.info("note: %s", n)

        hooks.setdefault("on_train_start", []).append(say_notes)
    return hooks


AUGMENT = "augment.json"  # the run's augmentation shares (--resample, --stain, ...), so that a resume keeps them
AUGMENTS = ("resample", "refill", "frame", "stain", "grey", "blur")  # FinetuneRequest fields, yolo.augment transforms


def run_augment(run_dir: Path, req: FinetuneRequest) -> dict[str, float]:
    """The shares of each augmentation this run trains with: as asked, else (on resume) as the run started, else 0."""
    asked = {k: getattr(req, k) for k in AUGMENTS}
    for name, p in asked.items():
        if p is not None and not 0 <= p <= 1:
            raise InputError(None, f"{p}: a share of training images, from 0 to 1", option=name)
    saved = run_dir / AUGMENT
    before = json.loads(saved.read_text()) if req.resume and saved.is_file() else {}
    shares = {k: float(v if v is not None else before.get(k, 0.0)) for k, v in asked.items()}
    if not req.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(shares) + "\n")
    return shares


SEGMENTS = "segments.json"  # epochs already in results.csv when each training segment (first run, resumes) began


def start_segment(run_dir: Path, resume: bool) -> None:
    rows = run_dir / "results.csv"
    done = max(0, len(rows.read_text().splitlines()) - 1) if resume and rows.is_file() else 0
    starts = json.loads((run_dir / SEGMENTS).read_text()) if resume and (run_dir / SEGMENTS).is_file() else [0]
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / SEGMENTS, json.dumps(sorted({*starts, done})) + "\n")


def training_seconds(times: list[float], starts: list[int]) -> float:
    """Total training time: results.csv's `time` restarts from zero in each resumed segment, so add each
    segment's last value."""
    ends = [s - 1 for s in starts[1:] if 0 < s <= len(times)] + [len(times) - 1]
    return sum(times[e] for e in ends)


def timing_record(req: FinetuneRequest, plan: RunPlan | None, save_dir: Path, wall: float, seen: dict[str, int],
                  darknet: dict | None = None) -> dict:
    """What a run cost, from the wall clock and Ultralytics' results.csv (seconds since training start per epoch)."""
    from ..yolo.train import device_name

    rows = list(csv.DictReader((save_dir / "results.csv").open())) if (save_dir / "results.csv").is_file() else []
    n_train = seen.get("train_images")
    epochs = len(rows)
    starts = json.loads((save_dir / SEGMENTS).read_text()) if (save_dir / SEGMENTS).is_file() else [0]
    train_seconds = training_seconds([float(r["time"]) for r in rows], starts) if rows else wall
    return {
        "stage": req.stage,
        "model": req.model,
        "data": plan.data if plan else req.data,
        "imgsz": req.imgsz,
        "epochs": epochs,
        "batch": req.batch,
        "device": req.device or device_name(),
        "wall_seconds": round(wall, 3),
        "train_seconds": round(train_seconds, 3),
        "seconds_per_epoch": round(train_seconds / max(1, epochs), 3),
        "train_images": n_train,
        "images_per_second": round(n_train * epochs / train_seconds, 3) if n_train and train_seconds else None,
        "trainable_params": seen.get("trainable_params"),
        "frozen_params": seen.get("frozen_params"),
        "planned_trainable_params": plan.trainable_params if plan else None,
        "weights": plan.weights if plan else "resumed",
        "transferred_tensors": plan.transferred if plan else None,
        "freeze": [str(x) for x in plan.freeze] if plan else None,
        "overrides": json.loads(json.dumps(req.overrides, default=str)),
        **{k: getattr(req, k) or 0.0 for k in AUGMENTS},
        "resumed": req.resume,
        "darknet": darknet,
    }


def _append_csv(path: Path, record: dict) -> None:
    keys = [k for k in record if k not in {"freeze", "overrides", "darknet"}]
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(record)


def describe_stages(model: str) -> str:
    """`bccd-yolo stages`: indices and parameter counts per part, and what each stage trains."""
    from ..yolo.models import build_model, layer_params, load_model_yaml

    cfg = load_model_yaml(model)
    parts = model_parts_from_yaml(model, cfg)
    net = build_model(cfg)
    count = {p: sum(layer_params(net, i) for i in getattr(parts, p)) for p in PARTS}
    total = sum(count.values())
    lines = [f"{model}: {total:,} parameters"]
    for p in PARTS:
        idx = getattr(parts, p)
        lines.append(f"  {p:<8} layers {_ranges(list(idx)):<8} {count[p]:>12,} parameters ({count[p] / total:.1%})")
    for stage in STAGES.values():
        trained = sum(count[p] for p in stage.trains)
        lines.append(
            f"  {stage.run_name:<8} trains {'+'.join(stage.trains):<20} freeze={_ranges(list(frozen_indices(parts, stage))) or '-':<8} "
            f"trainable {trained / total:.1%}  default data {stage.default_data}"
        )
    lines.append(
        "  When a stage loads weights trained for another class count, the class-prediction convolutions of a\n"
        "  frozen head cannot be loaded; they are trained and the rest of the head stays frozen."
    )
    return "\n".join(lines)
