"""How many fields to label: the learning curve of `bccd-yolo adapt`, leave one source out.

The base model has never seen the new source: the model shipped before the three-source one (BCCD only; commit
3328f59, extracted with `git show`). For each new source (Raabin-WBC, PBC) and N labelled train fields drawn at
random from ../shared/txl-pbc-other/<source>/ train, `adapt` runs as a user would run it (it holds back a quarter,
at least 3, and calibrates on those), then the adapted model counts the source's 100 val fields. Per run: count MAE
and AP50 per class, and adapt's own wall time on this machine's CPU. N = 0 is the base model itself.

    python benchmarks/adapt_curve.py --sources raabin,pbc --n 0,5,10,20 --stages full,3 [--draws 1]

Each run's result is kept in benchmarks/results/adapt_curve/ and not run again; `--plot` redraws the figure.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "adapt_curve"
BASE_COMMIT = "3328f59"  # the BCCD-only model shipped before the three-source one
CLASS_ORDER = ["WBC", "RBC", "Platelets"]  # TXL's order in txl-pbc-other's label files
PREVIOUS = "sgd0.002-best"  # the curve with the settings before, drawn dashed


def base_model(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    pt = work / "base_bccd.pt"
    for src, dst in (("weights/bccd_yolov3_tiny.pt", pt), ("weights/bccd_yolov3_tiny.thresholds.json",
                                                            pt.with_suffix(".thresholds.json"))):
        if not dst.is_file():
            dst.write_bytes(subprocess.run(["git", "show", f"{BASE_COMMIT}:{src}"], cwd=ROOT, check=True,
                                           capture_output=True).stdout)
    return pt


def draw_fields(source: str, n: int, draw: int, folder: Path) -> Path:
    """N train fields of the source, as a user's folder: images/, labels/, classes.txt (links, not copies)."""
    root = SHARED / "txl-pbc-other" / source
    images = sorted((root / "images" / "train").iterdir())
    chosen = random.Random(1000 * draw + n).sample(images, n)
    if folder.exists():
        return folder
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for im in chosen:
        (folder / "images" / im.name).symlink_to(im)
        (folder / "labels" / f"{im.stem}.txt").symlink_to(root / "labels" / "train" / f"{im.stem}.txt")
    (folder / "classes.txt").write_text("\n".join(CLASS_ORDER) + "\n")
    return folder


def evaluate(weights: Path, source: str, rest: int = 0, exclude: set[str] | None = None) -> dict:
    """Count MAE, bias and AP50 per class on the source's val fields, counted as `count` counts them; with `rest`,
    on that many of its train fields (a fixed draw) whose names are not in `exclude` instead."""
    from bccd_yolo.count.detector import Detector
    from bccd_yolo.data.convert import ClassSpec, read_source
    from bccd_yolo.data.sources import SourceSpec
    from bccd_yolo.measure.evaluate import EVAL_CONF
    from bccd_yolo.measure.per_source import count_fields, fields_of, summarise

    det = Detector(weights, backend="torch", quiet=True)
    low = Detector(weights, backend="torch", conf=EVAL_CONF, quiet=True)
    data, _ = read_source(SourceSpec(source, SHARED / "txl-pbc-other" / source), ClassSpec.parse(",".join(det.names)),
                          ",".join(CLASS_ORDER), "official", 0, 0.0, 0.0, "drop")
    pool = data.splits["val"]
    if rest:
        others = sorted((a for a in data.splits["train"] if a.image_path.name not in (exclude or set())),
                        key=lambda a: a.image_path.name)
        pool = random.Random(7).sample(others, rest)
    fields = fields_of(pool, det.names)
    return summarise(count_fields(fields, det, low), det.names)


def run_one(source: str, n: int, stage: str, draw: int, work: Path, base: Path) -> dict:
    from bccd_yolo.train.adapt import AdaptRequest, adapt

    key = f"{source}_n{n}_stage{stage}_d{draw}" if n else f"{source}_n0"
    done = OUT / f"{key}.json"
    if done.is_file():
        return json.loads(done.read_text())
    record: dict = {"source": source, "n": n, "stage": stage if n else None, "draw": draw, "base": BASE_COMMIT}
    weights = base
    if n:
        folder = draw_fields(source, n, draw, work / "fields" / f"{source}_n{n}_d{draw}")
        out = work / "models" / f"{key}.pt"
        started = time.perf_counter()
        summary = adapt(AdaptRequest(str(folder), str(out), weights=str(base), stage=stage, project=str(work / "runs"),
                                     name=key, overwrite=True))
        record.update({"adapt_seconds": round(time.perf_counter() - started, 1), "train_seconds": summary["train_seconds"],
                       "held_back": len(summary["held_back"]), "trained_on": len(summary["trained_on"]),
                       "held_back_mae": summary["held_back_mae"], "resampled": summary["resampled"],
                       "epochs_run": _epochs(work / "runs" / key / "train" / "results.csv")})
        weights = out
    record["val"] = evaluate(weights, source)
    OUT.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _epochs(results_csv: Path) -> int:
    return max(0, len(results_csv.read_text().splitlines()) - 1) if results_csv.is_file() else 0


def table(records: list[dict]) -> str:
    rows = ["| new source | N fields | stage | RBC MAE | WBC MAE | platelet MAE | RBC AP50 | WBC AP50 | adapt minutes |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["source"], r["n"], str(r["stage"]))):
        c = r["val"]["classes"]
        minutes = f"{r['adapt_seconds'] / 60:.1f}" if r.get("adapt_seconds") else "-"
        rows.append(f"| {r['source']} | {r['n']} | {r['stage'] or 'base'} | {c['RBC']['count_mae']:.2f} | "
                    f"{c['WBC']['count_mae']:.2f} | {c['Platelets']['count_mae']:.2f} | {c['RBC']['ap50']:.3f} | "
                    f"{c['WBC']['ap50']:.3f} | {minutes} |")
    return "\n".join(rows)


def _curve(records: list[dict], source: str, stage: str, cls: str) -> tuple[list[int], list[float], list[list[float]]]:
    """N, the mean count MAE over draws, and the range below and above it, for one source and stage."""
    by_n: dict[int, list[float]] = {}
    for r in records:
        if r["source"] == source and (r["stage"] == stage or r["n"] == 0):
            by_n.setdefault(r["n"], []).append(r["val"]["classes"][cls]["count_mae"])
    ns = sorted(by_n)
    means = [sum(by_n[n]) / len(by_n[n]) for n in ns]
    return ns, means, [[m - min(by_n[n]) for n, m in zip(ns, means)], [max(by_n[n]) - m for n, m in zip(ns, means)]]


def plot(records: list[dict], path: Path, before: list[dict] | None = None) -> None:
    """Mean count MAE per N (bars: the draws' range) per source; `before`: the curve of the settings before, dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({r["source"] for r in records})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, cls, goal in ((axes[0], "RBC", 2.0), (axes[1], "WBC", 0.15)):
        for i, source in enumerate(sources):
            for recs, style, label in ((records, "-o", ""), (before or [], "--s", ", settings before")):
                ns, means, err = _curve(recs, source, "full", cls)
                if len(ns) > 1:
                    ax.errorbar(ns, means, yerr=err, fmt=style, color=f"C{i}", capsize=3, alpha=1 if not label else 0.5,
                                label=f"{source}{label}")
        ax.axhline(goal, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("labelled fields of the new source (N)")
        ax.set_ylabel(f"{cls} count MAE per val field")
        ax.set_title(f"{cls}: goal {goal} at N = 10 (mean of draws, bars: range)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default="raabin,pbc")
    ap.add_argument("--n", default="0,5,10,20")
    ap.add_argument("--stages", default="full,3")
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "adapt_curve")
    ap.add_argument("--plot", action="store_true", help="only redraw the table and figure from the kept results")
    a = ap.parse_args()
    if not a.plot:
        base = base_model(a.work)
        for source in a.sources.split(","):
            for n in map(int, a.n.split(",")):
                for stage in (a.stages.split(",") if n else ["-"]):
                    for draw in range(a.draws if n else 1):
                        r = run_one(source, n, stage, draw, a.work, base)
                        c = r["val"]["classes"]
                        print(f"{source} N={n} stage {stage} draw {draw}: RBC {c['RBC']['count_mae']:.2f} "
                              f"WBC {c['WBC']['count_mae']:.2f} Plt {c['Platelets']['count_mae']:.2f}; "
                              f"{r.get('adapt_seconds', 0) / 60:.1f} min", flush=True)
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*_n*.json")) if not p.name.startswith("settings")]
    n0 = [r for r in records if r["n"] == 0]  # the base model: the same for both settings
    before = n0 + [json.loads(p.read_text()) for p in sorted((OUT / PREVIOUS).glob("*_n*.json"))]
    print(table(records))
    plot(records, OUT / "adapt_curve.png", before)
    (OUT / "README.md").write_text("# adapt learning curve\n\n`python benchmarks/adapt_curve.py` (see its docstring), `adapt` "
                                   "at its defaults (`SMALL_DATA` in bccd_yolo/train/adapt.py). The curve with the "
                                   "settings before are in sgd0.002-best/ (SGD 0.002, the epoch the held-back fields chose; "
                                   "dashed in the figure) and one-step/ (one optimiser step an epoch).\n\n" + table(records) + "\n")


if __name__ == "__main__":
    sys.exit(main())
