"""When `--mpp auto` should make a second estimate pass (counting.REFINE_ABOVE): count error and network passes.

    python benchmarks/auto_refine.py [--refine 0.1,0.2,never] [--sources bccd,pbc,raabin]

`--mpp auto` (count's default for inputs that record no scale) estimates a field's scale from the red cells found
at the model's scale and, when the estimate is further from it than REFINE_ABOVE, estimates again at the first
estimate; the count is a third pass. Every val field of each source is counted at count's defaults with each
setting; per source, count MAE per class and the network passes per field. Chosen on val only. Writes
benchmarks/results/auto_refine.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refine", default="0.1,0.2,never")
    ap.add_argument("--sources", default="bccd,pbc,raabin")
    args = ap.parse_args()

    from per_source import shipped_on_val  # benchmarks/per_source.py

    from bccd_yolo.count import counting
    from bccd_yolo.count.detector import default_weights
    from bccd_yolo.measure.per_source import count_fields, summarise

    det, low, sources = shipped_on_val(args.sources.split(","))
    passes: list[int] = []
    run = det.predictor
    det.predictor = lambda images, *a: passes.append(len(images)) or run(images, *a)
    out: dict = {"weights": str(default_weights()), "split": "val", "settings": {}}
    for setting in args.refine.split(","):
        counting.REFINE_ABOVE = float("inf") if setting == "never" else float(setting)
        arm = out["settings"][setting] = {}
        for name, fields in sources.items():
            passes.clear()
            start = time.perf_counter()
            s = summarise(count_fields(fields, det, low), det.names)
            arm[name] = {"fields": s["fields"], "seconds": round(time.perf_counter() - start, 1),
                         "passes_per_field": round(sum(passes) / s["fields"], 2),
                         "count_mae": {c: v["count_mae"] for c, v in s["classes"].items()},
                         "rbc_interior_mae": s.get("rbc_interior_mae")}
            mae = " / ".join(f"{v:.2f}" for v in arm[name]["count_mae"].values())
            print(f"refine above {setting}: {name} count MAE {' / '.join(det.names)} {mae}, "
                  f"{arm[name]['passes_per_field']} passes a field", flush=True)
    dest = ROOT / "benchmarks" / "results" / "auto_refine.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
