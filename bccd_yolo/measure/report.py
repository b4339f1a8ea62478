"""Weights + split (+ training runs) -> AP, counting-error and timing tables, plots, report.md and report.html."""

from __future__ import annotations

import base64
import html
import json
import logging
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.errors import InputError
from ..core.fsutil import check_output_dir, staged_dir

LOGGER = logging.getLogger(__name__)

PLOTS_FROM_VAL = {"BoxPR_curve.png": "Precision-recall curves", "confusion_matrix.png": "Confusion matrix"}


def training_runs(root: Path) -> list[Path]:
    """Every training run under `root`: the folders Ultralytics wrote a results.csv into."""
    return sorted(p.parent for p in Path(root).glob("*/results.csv"))


def load_timings(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """timing.json of each run folder; folders without one are skipped with a warning."""
    rows, skipped = [], []
    for d in run_dirs:
        f = Path(d) / "timing.json"
        if not f.is_file():
            skipped.append(f"{d}: no timing.json, skipped")
            continue
        t = json.loads(f.read_text())
        t["run"] = Path(d).name
        results = Path(d) / "results.csv"
        if results.is_file():
            r = pd.read_csv(results)
            r.columns = [c.strip() for c in r.columns]
            t["best_val_map50"] = float(r["metrics/mAP50(B)"].max()) if "metrics/mAP50(B)" in r else None
        rows.append(t)
    cols = ["run", "stage", "model", "data", "imgsz", "epochs", "wall_seconds", "seconds_per_epoch",
            "images_per_second", "trainable_params", "best_val_map50"]
    df = pd.DataFrame(rows)
    return (df.reindex(columns=cols) if len(df) else pd.DataFrame(columns=cols)), skipped


STUDY_TIME_RATIO = 2.5 / 6.8  # the study: 2.5 h of training with transfer vs 6.8 h from scratch, at equal or better AP
TRANSFER_STAGES = ("3", "full")


def seconds_to_reach(results_csv: Path, target: float) -> tuple[float | None, int | None]:
    """Training seconds and epoch at which a run's val mAP50 first reached `target` (None, None if never)."""
    if not Path(results_csv).is_file():
        return None, None
    r = pd.read_csv(results_csv)
    r.columns = [c.strip() for c in r.columns]
    hit = r[r["metrics/mAP50(B)"] >= target - 1e-9]
    return (float(hit["time"].iloc[0]), int(hit["epoch"].iloc[0])) if len(hit) else (None, None)


def scratch_vs_transfer(timing: pd.DataFrame, run_dirs: dict[str, Path] | None = None) -> pd.DataFrame:
    """The study's comparison: scratch and transfer (stage 3, or full from pretrained weights) runs on the same data.

    `time_ratio` is whole-run wall time, scratch over transfer. With the run folders, `transfer_time_to_scratch_best`
    is the transfer run's training time until its val mAP50 first reached the scratch run's best, and
    `time_ratio_at_equal_ap` that time over the scratch run's own time to its best: the study's 2.5 h / 6.8 h = 0.37.
    """
    out = []
    for data, group in timing.groupby("data"):
        scratch, transfer = group[group.stage == "scratch"], group[group.stage.isin(TRANSFER_STAGES)]
        for _, s in scratch.iterrows():
            for _, t in transfer.iterrows():
                row = {"data": Path(str(data)).parent.name or data, "scratch_run": s.run, "stage3_run": t.run,
                       "scratch_hours": s.wall_seconds / 3600, "stage3_hours": t.wall_seconds / 3600,
                       "time_ratio": s.wall_seconds / t.wall_seconds,
                       "scratch_map50": s.best_val_map50, "stage3_map50": t.best_val_map50}
                if run_dirs and s.run in run_dirs and t.run in run_dirs:
                    s_time, _ = seconds_to_reach(run_dirs[s.run] / "results.csv", s.best_val_map50)
                    t_time, t_epoch = seconds_to_reach(run_dirs[t.run] / "results.csv", s.best_val_map50)
                    row.update({"transfer_epoch_to_scratch_best": t_epoch, "transfer_time_to_scratch_best": t_time,
                                "time_ratio_at_equal_ap": (t_time / s_time) if t_time and s_time else None,
                                "study_ratio": STUDY_TIME_RATIO})
                out.append(row)
    return pd.DataFrame(out).round(4)


def _pyplot():
    """pyplot on the Agg backend: plots are files, and a machine without a display must draw them too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_scatter(true: np.ndarray, pred: np.ndarray, names: list[str], path: Path) -> None:
    plt = _pyplot()

    from ..count.overlay import colour

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4))
    for k, (ax, n) in enumerate(zip(np.atleast_1d(axes), names)):
        hi = max(1, true[:, k].max(), pred[:, k].max()) * 1.05
        ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--")
        ax.scatter(true[:, k], pred[:, k], s=14, color=np.array(colour(n, k)) / 255, alpha=0.7)
        ax.set(title=n, xlabel="annotated count", ylabel="predicted count", xlim=(0, hi), ylim=(0, hi))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_threshold_curves(curves: dict[str, tuple], names: list[str], marks: dict[str, dict[str, float]], path: Path) -> None:
    plt = _pyplot()

    from ..count.overlay import colour
    from .calibrate import GRID, grid_index

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, n in enumerate(names):
        rgb = np.array(colour(n, k)) / 255
        ax.plot(GRID, curves[n][0], color=rgb, label=n)
        for label, th in marks.items():
            t = th[n]
            ax.plot([t], [curves[n][0][grid_index(t)]], "o" if label == "calibrated" else "x", color=rgb)
    ax.set(xlabel="confidence threshold", ylabel="per-image count MAE", title="Count error vs threshold (x default, o calibrated)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_timing(timing: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(timing)))
    ax.barh(timing["run"].astype(str), timing["wall_seconds"] / 3600, color="#4477aa")
    ax.set(xlabel="training wall time (hours)", title="Training time per run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _worst_overlays(gts, preds, names, thresholds, true, pred, out: Path, k: int = 0, n: int = 3) -> list[str]:
    """The images with the largest over-count of class k: predictions in class colours, annotations in white."""
    from PIL import Image, ImageDraw

    from ..count.overlay import draw_detections

    files = []
    for i in np.argsort(-(pred[:, k] - true[:, k]))[:n]:
        g, p = gts[i], preds[i]
        im = Image.open(g.path).convert("RGB")
        draw = ImageDraw.Draw(im)
        for box in g.boxes.xyxy.tolist():
            draw.rectangle(box, outline=(255, 255, 255), width=1)
        draw_detections(im, p.above([thresholds[c] for c in names]), names, line=2)
        name = f"worst_{names[k]}_{g.path.stem}.jpg"
        im.save(out / name, quality=90)
        files.append(name)
    return files


def _code(text: str) -> str:
    return f"<code>{html.escape(str(text))}</code>"


def markdown_table(df: pd.DataFrame) -> str:
    df = df.reset_index() if df.index.name else df
    cells = [[str(c) for c in df.columns]] + [["" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row]
                                                for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])


def _html(sections: list[tuple[str, str | pd.DataFrame | Path]], title: str, folder: Path) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:100%}code{background:#f3f3f3;padding:2px 4px}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(float_format=lambda v: f"{v:.4g}", na_rep="", index=False))
        elif isinstance(body, Path):
            data = base64.b64encode((folder / body).read_bytes()).decode()
            mime = "image/png" if body.suffix == ".png" else "image/jpeg"
            parts.append(f"<img alt='{html.escape(body.name)}' src='data:{mime};base64,{data}'>")
        else:
            parts.append(f"<p>{body}</p>")  # text sections are built as HTML, their values escaped by _code
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections, title: str) -> str:
    out = [f"# {title}", ""]
    for heading, body in sections:
        out += [f"## {heading}", ""]
        if isinstance(body, pd.DataFrame):
            out.append(markdown_table(body))
        elif isinstance(body, Path):
            out.append(f"![{body.stem}]({body.as_posix()})")
        else:
            out.append(html.unescape(body.replace("<code>", "`").replace("</code>", "`")))
        out.append("")
    return "\n".join(out)


def label_sets_table(sets: Sequence[tuple[str, Sequence[Any], pd.DataFrame | None]], preds_by_image: dict,
                     thresholds: dict[str, float],
                     names: list[str]) -> pd.DataFrame:
    """Count error (and AP where given) of the same predictions against each label set, side by side.

    `sets`: (label, ground truths, per-class AP table or None). Where a set covers fewer photos than the
    first, the first set's error on those photos is added, so both truths are compared on the same images.
    """
    from .evaluate import count_errors, count_matrix, counts_at

    rows = []

    def add(label: str, gts: Sequence[Any], ap: pd.DataFrame | None) -> None:
        preds = [preds_by_image[g.path.name] for g in gts]
        err = count_errors(count_matrix([g.boxes for g in gts], len(names)), counts_at(preds, thresholds, names), names)
        for n in names:
            ap50 = float(ap.set_index("class")["ap50"].to_dict()[n]) if ap is not None else float("nan")
            rows.append({"labels": label, "images": len(gts), "class": n, "ap50": ap50, "count_mae": err.loc[n, "mae"],
                         "bias": err.loc[n, "bias"], "annotated_per_image": err.loc[n, "true_mean"],
                         "counted_per_image": err.loc[n, "pred_mean"]})

    first_label, first_gts, first_ap = sets[0]
    add(first_label, first_gts, first_ap)
    for label, gts, ap in sets[1:]:
        add(label, gts, ap)
        same = {g.path.name for g in gts}
        if same != {g.path.name for g in first_gts}:
            add(f"{first_label}, same {len(same)} photos", [g for g in first_gts if g.path.name in same], None)
    return pd.DataFrame(rows).round(4)


@dataclass
class ReportInputs:
    """What a report is made of, checked before anything is written."""

    data: str
    gts: list
    detector: Any
    names: list[str]
    used: Any  # Thresholds
    extra: list[tuple[str, list]]  # other label sets: (data YAML, ground truths)
    sources: list[str]  # the data's sources (convert --source), else []


def _report_inputs(weights: Path, data: str, split: str, also: list[str] | None, imgsz: int | None,
                   device: str | None) -> ReportInputs:
    from ..count.detector import Detector
    from ..count.thresholds import Thresholds
    from ..yolo.data import resolve_data
    from .evaluate import EVAL_CONF, load_ground_truth

    data, info = resolve_data(data)
    gts = load_ground_truth(info, split)
    detector = Detector(weights, imgsz=imgsz, conf=EVAL_CONF, device=device, precision="fp32")  # the same on every CPU
    names = detector.names
    if [info["names"][i] for i in range(len(info["names"]))] != names:
        raise InputError(weights, f"model classes {names} differ from the data's {list(info['names'].values())}")
    extra = []
    for other in also or []:
        other_data, other_info = resolve_data(other)
        if [other_info["names"][i] for i in range(len(other_info["names"]))] != names:
            raise InputError(other, f"classes {list(other_info['names'].values())} differ from the model's {names}")
        extra.append((other_data, load_ground_truth(other_info, split)))
    sources = list((info.get("sources") or {}).keys()) if isinstance(info.get("sources"), dict) else []
    return ReportInputs(data, gts, detector, names, Thresholds.for_model(Path(weights), names), extra, sources)


def _label_sets(inp: ReportInputs, preds: list, ap: pd.DataFrame, weights: Path, split: str, tmp: Path, batch: int,
                device: str | None, progress: bool) -> pd.DataFrame:
    from ..yolo.validate import validate
    from .evaluate import EVAL_CONF, predict_split

    by_image = {g.path.name: p for g, p in zip(inp.gts, preds)}
    sets = [(Path(inp.data).parent.name, inp.gts, ap)]
    for k, (other_data, other_gts) in enumerate(inp.extra):
        missing = [g for g in other_gts if g.path.name not in by_image]
        by_image.update(zip((g.path.name for g in missing), predict_split(inp.detector, missing, progress)))
        other_ap = validate(Path(weights), other_data, split, inp.names, inp.detector.imgsz, EVAL_CONF, inp.detector.iou,
                            tmp, f"val_also{k}", batch, device, plots=False)
        shutil.rmtree(tmp / f"val_also{k}", ignore_errors=True)
        sets.append((Path(other_data).parent.name, other_gts, other_ap))
    table = label_sets_table(sets, by_image, inp.used.by_class, inp.names)
    table.to_csv(tmp / "label_sets.csv", index=False)
    return table


def per_source_table(inp: ReportInputs, preds: list) -> pd.DataFrame:
    """Count MAE and AP50 per source and class, for data converted from several sources (a pooled figure hides
    the source that fails)."""
    from ..data.sources import source_of
    from .per_source import FieldResult, LabelledField, summarise

    limits = [inp.used.by_class[n] for n in inp.names]
    rows = []
    for source in inp.sources:
        results = [FieldResult(LabelledField(g.path, g.width, g.height, g.boxes), p.above(limits), p)
                   for g, p in zip(inp.gts, preds) if source_of(g.path.name, inp.sources) == source]
        if not results:
            continue
        s = summarise(results, inp.names)
        rows += [{"source": source, "images": s["fields"], "class": n, **s["classes"][n]} for n in inp.names]
    return pd.DataFrame(rows)


def _count_tables(inp: ReportInputs, preds: list, tmp: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Per-image counts and the count error at the default and the used thresholds, written as CSV."""
    from ..count.thresholds import DEFAULT_CONF
    from .evaluate import count_errors, count_matrix, counts_at, unannotated_share

    names, used = inp.names, inp.used
    true = count_matrix([g.boxes for g in inp.gts], len(names))
    pred = counts_at(preds, used.by_class, names)
    counts = pd.DataFrame({"image": [g.path.name for g in inp.gts]})
    for k, n in enumerate(names):
        counts[f"true_{n}"], counts[f"pred_{n}"] = true[:, k], pred[:, k]
    err = count_errors(true, pred, names)
    err["unannotated_share"] = pd.Series(unannotated_share(inp.gts, preds, used.by_class, names))
    summary = pd.DataFrame([{"image": label, **{f"pred_{n}": err.loc[n, col] for n in names}}
                            for label, col in (("MAE", "mae"), ("mean_relative_error", "rel_error"), ("pearson_r", "pearson_r"))])
    pd.concat([counts, summary], ignore_index=True).to_csv(tmp / "counts.csv", index=False)
    default = {n: DEFAULT_CONF for n in names}
    by_threshold = pd.concat({"default": count_errors(true, counts_at(preds, default, names), names), "used": err},
                             names=["thresholds"])
    by_threshold.to_csv(tmp / "count_errors.csv")
    return true, pred, err, by_threshold


def _plots(inp: ReportInputs, preds: list, true: np.ndarray, pred: np.ndarray, tmp: Path) -> list[str]:
    from ..count.thresholds import DEFAULT_CONF
    from .calibrate import count_curves

    names = inp.names
    _plot_scatter(true, pred, names, tmp / "count_scatter.png")
    curves = {n: count_curves(preds, true, k) for k, n in enumerate(names)}
    _plot_threshold_curves(curves, names, {"default": {n: DEFAULT_CONF for n in names}, "calibrated": inp.used.by_class},
                           tmp / "count_error_vs_threshold.png")
    for plot in PLOTS_FROM_VAL:
        if (tmp / "val" / plot).is_file():
            shutil.copy(tmp / "val" / plot, tmp / plot)
    return _worst_overlays(inp.gts, preds, names, inp.used.by_class, true, pred, tmp)


def _sections(inp: ReportInputs, weights: Path, split: str, command: str, ap: pd.DataFrame, label_sets: pd.DataFrame,
              by_source: pd.DataFrame, err: pd.DataFrame, by_threshold: pd.DataFrame, true: np.ndarray, worst: list[str],
              timing: pd.DataFrame, comparison: pd.DataFrame, tmp: Path) -> list:
    names = inp.names
    thr = ", ".join(f"{n} {v:.2f}" for n, v in inp.used.by_class.items())
    sections: list = [
        ("Model and data", f"Model {_code(str(weights))} ({inp.detector.imgsz} px) on the {_code(split)} split of "
                           f"{_code(inp.data)}: {len(inp.gts)} images, {int(true.sum())} annotated cells. "
                           f"Reproduce with {_code(command)}."),
        ("Detection: AP per class", ap),
        *((("Per source", "Count error and AP50 per source and class at the thresholds used: a pooled figure hides the "
                          "source that fails."), ("Sources side by side", by_source)) if len(by_source) else ()),
        *((("Against each label set",
            "The same predictions and thresholds scored against each label set. BCCD's annotators left about half "
            "the red cells unlabelled, so RBC AP and count error against BCCD's labels charge the model for every "
            "real cell it finds that nobody labelled; complete labels show what it actually misses."),
           ("Label sets side by side", label_sets)) if len(label_sets) else ()),
        ("Counting error per image", f"Thresholds used: {html.escape(thr)} ({html.escape(inp.used.source)}). MAE and bias "
                                     "in cells per image; bias is predicted minus annotated."),
        ("Count error, default (0.25) vs thresholds used", by_threshold.reset_index()),
        ("Predicted vs annotated counts", Path("count_scatter.png")),
        ("Count error against threshold", Path("count_error_vs_threshold.png")),
        (f"Largest {names[0]} over-counts (white: annotations; colours: predictions)",
         f"unannotated_share above is the share of kept detections that overlap no annotated box of their class "
         f"({names[0]}: {float(err['unannotated_share'][names[0]]):.0%}). The overlays below show what they are: "
         "cells the annotators did not label set a floor under the count error."),
        *((f"Over-count: {w}", Path(w)) for w in worst),
        *((title, Path(p)) for p, title in PLOTS_FROM_VAL.items() if (tmp / p).is_file()),
        ("Training time", timing if len(timing) else "No run folders with timing.json were given."),
    ]
    if len(comparison):
        sections.append(("Scratch vs transfer (the study's comparison)", comparison))
    if len(timing):
        sections.append(("Training time per run", Path("timing.png")))
    return sections


def build_report(weights: Path, data: str, split: str, run_dirs: list[Path], out: Path, imgsz: int | None = None,
                 device: str | None = None, batch: int = 16, progress: bool = True,
                 also: list[str] | None = None, overwrite: bool = False,
                 types: tuple[Path, Path] | None = None) -> dict:
    """Write the full report into `out` (replaced only when everything succeeded); returns the headline numbers.

    `also`: data YAMLs of other label sets for (some of) the same photos, e.g. complete labels; AP and count
    error against each are reported beside those against `data`. `types`: a white-cell type classifier and its
    typed fields (folder per type), scored on their val split.
    """
    from ..yolo.validate import validate
    from .evaluate import EVAL_CONF, coco_ground_truth, coco_predictions, predict_split

    inputs = [Path(weights), *run_dirs, Path(data).parent, *(Path(a).parent for a in also or [])]
    check_output_dir(Path(out), overwrite, inputs)
    inp = _report_inputs(weights, data, split, also, imgsz, device)
    timing, skipped = load_timings(run_dirs)
    for s in skipped:
        LOGGER.warning(s)
    with staged_dir(out, overwrite, inputs) as tmp:
        preds = predict_split(inp.detector, inp.gts, progress)
        ap = validate(Path(weights), inp.data, split, inp.names, inp.detector.imgsz, EVAL_CONF, inp.detector.iou, tmp, "val",
                      batch, device)
        ap.to_csv(tmp / "per_class_ap.csv", index=False)
        label_sets = _label_sets(inp, preds, ap, weights, split, tmp, batch, device, progress) if inp.extra else pd.DataFrame()
        by_source = per_source_table(inp, preds) if inp.sources else pd.DataFrame()
        if len(by_source):
            by_source.to_csv(tmp / "per_source.csv", index=False)
        (tmp / "ground_truth.json").write_text(json.dumps(coco_ground_truth(inp.gts, inp.names)) + "\n")
        (tmp / "predictions.json").write_text(json.dumps(coco_predictions(preds)) + "\n")
        true, pred, err, by_threshold = _count_tables(inp, preds, tmp)
        worst = _plots(inp, preds, true, pred, tmp)
        comparison = scratch_vs_transfer(timing, {Path(d).name: Path(d) for d in run_dirs}) if len(timing) else pd.DataFrame()
        timing.to_csv(tmp / "timing.csv", index=False)
        if len(timing):
            _plot_timing(timing, tmp / "timing.png")
        command = "bccd-yolo report " + " ".join(shlex.quote(a) for a in [
            "--weights", str(weights), "--data", inp.data, "--split", split, *(["--runs", *map(str, run_dirs)] if run_dirs else []),
            *(["--also-data", *also] if also else []), *(["--imgsz", str(imgsz)] if imgsz else []),
            *(["--device", str(device)] if device else []), "--out", str(out)])
        sections = _sections(inp, weights, split, command, ap, label_sets, by_source, err, by_threshold, true, worst,
                             timing, comparison, tmp)
        differential = _differential_sections(types, tmp) if types else []
        sections += differential
        title = f"bccd-yolo report: {Path(weights).name} on {split}"
        (tmp / "report.md").write_text(_markdown(sections, title))
        (tmp / "report.html").write_text(_html(sections, title, tmp))
    return {"ap": ap, "count_errors": by_threshold, "timing": timing, "comparison": comparison,
            "label_sets": label_sets, "per_source": by_source,
            "differential": differential[1][1] if differential else pd.DataFrame()}


def _differential_sections(types: tuple[Path, Path], tmp: Path) -> list:
    """The differential's confusion matrix and per-type precision, recall and F1 on the typed fields' val split."""
    from .differential import evaluate_types, plot_confusion

    weights, fields = types
    scores = evaluate_types(weights, fields)
    table = pd.DataFrame({"type": scores.classes, "precision": scores.precision, "recall": scores.recall,
                          "f1": scores.f1, "cells": [sum(r) for r in scores.confusion]})
    table.to_csv(tmp / "differential.csv", index=False)
    (tmp / "differential.json").write_text(json.dumps(scores.as_dict(), indent=1) + "\n")
    plot_confusion(scores, tmp / "differential_confusion.png")
    return [("White-cell differential",
             f"Classifier {_code(str(weights))} on the val split of {_code(str(fields))} ({scores.cells} cells): "
             f"accuracy {scores.accuracy:.3f} and macro-F1 {scores.macro_f1:.3f} over the cells it classified; "
             f"{scores.unclassified:.1%} left unclassified (top score under {scores.threshold:.2f})."),
            ("Differential per type", table),
            ("Differential confusion matrix (rows: expert's type)", Path("differential_confusion.png"))]
