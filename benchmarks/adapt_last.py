"""`adapt` runs already made, judged again with their last epoch's weights instead of the epoch their held-back
fields scored best (`best.pt`): with three held-back fields that choice is noise, and it picked epoch 2 or 3 of 15
in the runs that over-counted white cells most.

    python benchmarks/adapt_last.py --settings    # the settings runs (Raabin train fields outside each draw: chooses)
    python benchmarks/adapt_last.py --curve       # the learning-curve runs (Raabin / PBC val: reports only)

Each run's last.pt is copied, calibrated on the run's own held-back fields (as `adapt` calibrates best.pt), and
counted as adapt_settings.py / adapt_curve.py count. Writes benchmarks/results/adapt_curve/last_epoch.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "adapt_curve" / "last_epoch.json"
SETTINGS = ROOT / "runs" / "adapt_settings"
CURVE = ROOT / "runs" / "adapt_curve"


def judge(run: Path, source: str, rest: bool) -> dict:
    """The run's last.pt calibrated on its held-back fields, then counted on rest (train fields) or val."""
    from adapt_curve import evaluate  # type: ignore[import-not-found]
    from adapt_settings import REST  # type: ignore[import-not-found]

    from bccd_yolo.measure.calibrate import calibrate

    work = ROOT / "runs" / "adapt_last"
    work.mkdir(parents=True, exist_ok=True)
    weights = work / f"{run.name}.pt"
    shutil.copyfile(run / "train" / "weights" / "last.pt", weights)
    calibrate(weights, str(run / "data" / "data.yaml"), progress=False)
    summary = json.loads((run / "adapt.json").read_text())
    exclude = set(summary["trained_on"]) | set(summary["held_back"])
    thresholds = json.loads(weights.with_suffix(".thresholds.json").read_text())["thresholds"]
    result = evaluate(weights, source, rest=REST if rest else 0, exclude=exclude)
    return {"run": run.name, "judged_on": "rest" if rest else "val", "thresholds": thresholds, "val": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", action="store_true")
    ap.add_argument("--curve", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all of the kind asked)")
    a = ap.parse_args()
    record = json.loads(OUT.read_text()) if OUT.is_file() else {}
    runs: list[tuple[Path, str, bool]] = []
    if a.settings:
        runs += [(p, p.name.split("_")[0], True) for p in sorted((SETTINGS / "runs").glob("*64x15")) if (p / "adapt.json").is_file()]
    if a.curve:
        runs += [(p, p.name.split("_")[0], False) for p in sorted((CURVE / "runs").glob("*_stage*")) if (p / "adapt.json").is_file()]
    for run, source, rest in runs:
        if a.only and run.name not in a.only.split(","):
            continue
        record[run.name] = judge(run, source, rest)
        OUT.write_text(json.dumps(record, indent=2) + "\n")
        c = record[run.name]["val"]["classes"]
        print(f"{run.name} last.pt on {'rest' if rest else 'val'}: RBC {c['RBC']['count_mae']:.2f} WBC {c['WBC']['count_mae']:.2f} "
              f"Plt {c['Platelets']['count_mae']:.2f}", flush=True)


if __name__ == "__main__":
    main()
