"""Settings for `adapt` on a few fields, chosen on one source and then used on the other.

    python benchmarks/adapt_settings.py [--source pbc] [--n 10]

The base model has never seen the source (the BCCD-only model of benchmarks/adapt_curve.py). N train fields of
the source (adapt_curve's first draw), adapted with each candidate optimiser setting, count the source's 100 val
fields. Writes benchmarks/results/adapt_curve/settings_<source>_n<N>.json; adapt's SMALL_DATA takes the best, and
adapt_curve.py then measures it on Raabin-WBC, which chose nothing.
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
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="pbc")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--stage", default="full")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    a = ap.parse_args()
    from adapt_curve import base_model, draw_fields, evaluate  # type: ignore[import-not-found]

    from bccd_yolo.train.adapt import AdaptRequest, adapt

    work = ROOT / "runs" / "adapt_settings"
    base = base_model(ROOT / "runs" / "adapt_curve")
    folder = draw_fields(a.source, a.n, 0, work / "fields" / f"{a.source}_n{a.n}")
    out_path = ROOT / "benchmarks" / "results" / "adapt_curve" / f"settings_{a.source}_n{a.n}.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for name, overrides in CANDIDATES.items():
        if name in results or name not in a.candidates.split(","):
            continue
        t = time.perf_counter()
        adapt(AdaptRequest(str(folder), str(work / f"{name}.pt"), weights=str(base), stage=a.stage,
                           project=str(work / "runs"), name=f"{a.source}_n{a.n}_{name}", overwrite=True,
                           overrides=dict(overrides)))
        minutes = (time.perf_counter() - t) / 60
        val = evaluate(work / f"{name}.pt", a.source)
        c = val["classes"]
        results[name] = {"overrides": overrides, "minutes": round(minutes, 2), "val": val}
        out_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{name}: RBC {c['RBC']['count_mae']:.2f} WBC {c['WBC']['count_mae']:.2f} "
              f"Plt {c['Platelets']['count_mae']:.2f} in {minutes:.1f} min", flush=True)


if __name__ == "__main__":
    main()
