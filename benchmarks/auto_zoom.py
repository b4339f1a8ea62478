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


def biased(scale, zoom: float):
    """An `auto` scale with its red cells shown `zoom` times as large; any other as it is."""
    return dataclasses.replace(scale, mpp=scale.mpp / zoom) if scale is not None and scale.source == "auto" else scale


def brief(s: dict, seconds: float) -> dict:
    """What a zoom did to a source: count MAE per class, RBC recall, precision and interior MAE."""
    rbc = s["classes"]["RBC"]
    return {"count_mae": {c: v["count_mae"] for c, v in s["classes"].items()}, "rbc_recall": rbc["recall"],
            "rbc_precision": rbc["precision"], "rbc_interior_mae": s["rbc_interior_mae"], "seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zooms", default="0.9,0.95,1,1.05,1.1")
    p.add_argument("--sources", default="bccd,pbc,raabin")
    args = p.parse_args()

    from per_source import shipped_on_val

    import bccd_yolo.count.counting as counting
    from bccd_yolo.measure.per_source import count_fields, summarise

    det, low, sources = shipped_on_val(args.sources.split(","))
    unbiased = counting.image_scale
    out: dict = {"weights": str(det.weights), "zooms": {}}
    for zoom in [float(z) for z in args.zooms.split(",")]:
        counting.image_scale = lambda src, detector, mpp, zoom=zoom: biased(unbiased(src, detector, mpp), zoom)
        row = {}
        for name, fields in sources.items():
            start = time.perf_counter()
            row[name] = brief(summarise(count_fields(fields, det, low), det.names), time.perf_counter() - start)
        counting.image_scale = unbiased
        out["zooms"][str(zoom)] = row
        print(zoom, json.dumps(row), flush=True)
    path = ROOT / "benchmarks" / "results" / "auto_zoom.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
