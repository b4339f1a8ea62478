"""Settings for `adapt` on a few fields, chosen without looking at the val fields the learning curve reports.

    python benchmarks/adapt_settings.py [--source pbc] [--n 10] [--draws 1] [--choose-on val|rest]

The base model has never seen the source (the BCCD-only model of benchmarks/adapt_curve.py). N train fields of
the source (adapt_curve's draws), adapted with each candidate setting, count either the source's 100 val fields
(`val`: how the optimiser was chosen on PBC, which the curve then did not report as unseen) or 100 of the source's
*train* fields outside the draw (`rest`: so Raabin-WBC can choose without its val fields, which the curve reports).
Writes benchmarks/results/adapt_curve/settings_<source>_n<N>[_rest].json; adapt's SMALL_DATA takes the best.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

CANDIDATES = {
    "adamw-auto": {"optimizer": "auto"},  # Ultralytics' choice for short runs: AdamW at 0.002 * 5 / (4 + classes)
    "adamw-0.0005": {"optimizer": "AdamW", "lr0": 0.0005},
    "sgd-0.002": {"optimizer": "SGD", "lr0": 0.002},
    "sgd-0.01": {"optimizer": "SGD", "lr0": 0.01},
    # SGD at 0.002 (chosen above), but more optimiser steps: at batch = fields, one epoch is one step, so 30 epochs
    # (stopped early after 10 without gain on 3 held-back fields) were 11-30 steps. Fields repeated to 64 an epoch.
    "sgd-0.002-64x15": {"optimizer": "SGD", "lr0": 0.002, "images_per_epoch": 64, "epochs": 15, "patience": 15},
    "sgd-0.01-64x15": {"optimizer": "SGD", "lr0": 0.01, "images_per_epoch": 64, "epochs": 15, "patience": 15},
    # A third more steps: draw 1 still over-counted white cells (grey-violet red cells called white) at 64 x 15.
    # Stopped after draw 0 (RBC / WBC 1.11 / 0.31 against 64 x 15's 0.90 / 0.08); its 16.1 min ran beside other work.
    "sgd-0.002-64x20": {"optimizer": "SGD", "lr0": 0.002, "images_per_epoch": 64, "epochs": 20, "patience": 20},
}
REST = 100  # the source's train fields outside the draw that `--choose-on rest` counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="pbc")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--stage", default="full")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--draws", type=int, default=1)
    ap.add_argument("--choose-on", choices=("val", "rest"), default="val")
    a = ap.parse_args()
    from adapt_curve import base_model, draw_fields  # type: ignore[import-not-found]

    work = ROOT / "runs" / "adapt_settings"
    base = base_model(ROOT / "runs" / "adapt_curve")
    suffix = "_rest" if a.choose_on == "rest" else ""
    out_path = ROOT / "benchmarks" / "results" / "adapt_curve" / f"settings_{a.source}_n{a.n}{suffix}.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for draw in range(a.draws):
        folder = draw_fields(a.source, a.n, draw, work / "fields" / f"{a.source}_n{a.n}" / f"d{draw}")
        for name, settings in CANDIDATES.items():
            key = name if draw == 0 else f"{name}/d{draw}"
            if key in results or name not in a.candidates.split(","):
                continue
            results[key] = try_one(a, name, settings, folder, draw, base, work)
            out_path.write_text(json.dumps(results, indent=2) + "\n")
            c = results[key]["val"]["classes"]
            print(f"{key}: RBC {c['RBC']['count_mae']:.2f} WBC {c['WBC']['count_mae']:.2f} "
                  f"Plt {c['Platelets']['count_mae']:.2f} in {results[key]['minutes']:.1f} min", flush=True)


def try_one(a: argparse.Namespace, name: str, settings: dict, folder: Path, draw: int, base: Path, work: Path) -> dict:
    """Adapt with one candidate's settings, then count the fields it is judged on."""
    from adapt_curve import evaluate  # type: ignore[import-not-found]

    from bccd_yolo.train.adapt import AdaptRequest, adapt

    own = {k: settings[k] for k in ("images_per_epoch", "epochs") if k in settings}
    overrides = {k: v for k, v in settings.items() if k not in own}
    t = time.perf_counter()
    summary = adapt(AdaptRequest(str(folder), str(work / f"{name}.pt"), weights=str(base), stage=a.stage,
                                 project=str(work / "runs"), name=f"{a.source}_n{a.n}_d{draw}_{name}", overwrite=True,
                                 overrides=overrides, **own))
    minutes = (time.perf_counter() - t) / 60
    exclude = set(summary["trained_on"]) | set(summary["held_back"])
    val = evaluate(work / f"{name}.pt", a.source, rest=REST if a.choose_on == "rest" else 0, exclude=exclude)
    return {"overrides": settings, "minutes": round(minutes, 2), "draw": draw, "judged_on": a.choose_on, "val": val}


if __name__ == "__main__":
    main()
