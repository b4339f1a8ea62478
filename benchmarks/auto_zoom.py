"""Is the scale `--mpp auto` counts at the best one? Red cells shown to the network `zoom` times their training size.

    python benchmarks/auto_zoom.py [--zooms 0.9,1,1.1] [--sources bccd,pbc,raabin]

`auto` counts each image at the scale where its red cells measure what the model's training red cells measured.
This sweeps a bias on that scale (zoom 1.1: the estimate / 1.1, cells 10 % larger to the network, 21 % more
pixels to predict) on every val field of each source, counted by `count_images` at count's defaults otherwise.
Per source and zoom: count MAE per class, RBC recall and interior MAE. Chosen on val only. Writes
benchmarks/results/auto_zoom.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zooms", default="0.9,0.95,1,1.05,1.1")
    p.add_argument("--sources", default="bccd,pbc,raabin")
    args = p.parse_args()

    from per_source import load_sources

    import bccd_yolo.count.counting as counting
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.measure.evaluate import EVAL_CONF
    from bccd_yolo.measure.per_source import count_fields, summarise

    det = Detector(default_weights(), quiet=True)
    low = Detector(default_weights(), conf=EVAL_CONF, quiet=True)
    sources = load_sources("val", det.names, args.sources.split(","))
    unbiased = counting.image_scale
    out: dict = {"weights": str(det.weights), "zooms": {}}
    for zoom in [float(z) for z in args.zooms.split(",")]:
        def biased(src, detector, mpp, zoom=zoom):
            s = unbiased(src, detector, mpp)
            return dataclasses.replace(s, mpp=s.mpp / zoom) if s is not None and s.source == "auto" else s

        counting.image_scale = biased
        row = {}
        for name, fields in sources.items():
            start = time.perf_counter()
            s = summarise(count_fields(fields, det, low), det.names)
            row[name] = {"count_mae": {c: v["count_mae"] for c, v in s["classes"].items()},
                         "rbc_recall": s["classes"]["RBC"]["recall"], "rbc_precision": s["classes"]["RBC"]["precision"],
                         "rbc_interior_mae": s["rbc_interior_mae"], "seconds": round(time.perf_counter() - start, 1)}
        counting.image_scale = unbiased
        out["zooms"][str(zoom)] = row
        print(zoom, json.dumps(row), flush=True)
    path = ROOT / "benchmarks" / "results" / "auto_zoom.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
