"""How close a `--mpp auto` estimate must be to the scale its cells were found at to keep that scale (estimate_scale's `snap`).

    python benchmarks/auto_snap.py [--snaps 0,0.05,0.1] [--sources bccd,pbc,raabin]

An estimate kept at the scale of its pass lets a photo's count reuse the pass's detections (one network run instead
of two), but counts it at a scale up to `snap` from the estimate. Every val field of each source is counted with
`count_images`: at `count`'s defaults for snap 0, else at the scale estimate_scale keeps with that snap (the
pass's own detections are a count at that scale). Per source: count MAE per class, how many fields kept the
scale of their pass, and (snap 0) the spread of BCCD's estimates, whose photos all come from one microscope, so
their spread is the estimate's own noise. Chosen on val only. Writes benchmarks/results/auto_snap.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def snapped(path: Path, det, snap: float):
    """The field's count at the scale estimate_scale keeps with `snap` (0: as `count` counts it)."""
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images, estimate_scale
    from bccd_yolo.count.options import CountOptions

    options = CountOptions()
    if snap:
        src = open_image(path)
        try:
            mpp, _ = estimate_scale(src, det, det.scale.photo_mpp, snap)
        finally:
            src.close()
        options = CountOptions(mpp=mpp) if mpp is not None else options
    (counted,), errors = count_images([path], det, options, progress=False)
    assert not errors, errors[0]
    return counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snaps", default="0,0.05,0.1")
    ap.add_argument("--sources", default="bccd,pbc,raabin")
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    ap.add_argument("--prior", type=float, default=None, help="the scale the first pass assumes for a photo (default: the model's photo scale)")
    a = ap.parse_args()
    from per_source import load_sources  # type: ignore[import-not-found]

    from bccd_yolo.count.detector import Detector

    det = Detector(a.weights, quiet=True)
    if a.prior is not None and det.scale is not None:
        det.scale = dataclasses.replace(det.scale, photo_mpp=a.prior)
    sources = load_sources("val", det.names, a.sources.split(","))
    model_mpp = det.scale.photo_mpp if det.scale else None
    record: dict = {"weights": str(a.weights), "split": "val", "prior": a.prior, "snaps": {}}
    for snap in [float(s) for s in a.snaps.split(",")]:
        arm: dict = {}
        for name, fields in sources.items():
            start = time.perf_counter()
            counted = [snapped(f.path, det, snap) for f in fields]
            n = len(det.names)
            true = np.array([f.truth.counts(n) for f in fields])
            pred = np.array([c.detections.counts(n) for c in counted])
            mpps = np.array([c.mpp for c in counted], dtype=float)
            arm[name] = {"count_mae": {c: round(float(np.abs(pred[:, k] - true[:, k]).mean()), 3) for k, c in enumerate(det.names)},
                         "kept_model_scale": int(np.isclose(mpps, model_mpp).sum()) if model_mpp else 0,
                         "fields": len(fields), "mpp_median": round(float(np.median(mpps)), 4),
                         "mpp_cv": round(float(mpps.std() / mpps.mean()), 4),
                         "seconds_in_process": round(time.perf_counter() - start, 1)}
            m = arm[name]["count_mae"]
            print(f"snap {snap:.2f} {name:7s} MAE " + " ".join(f"{c} {v:.3f}" for c, v in m.items())
                  + f"  kept the model's scale {arm[name]['kept_model_scale']}/{len(fields)}, mpp cv {arm[name]['mpp_cv']:.3f}",
                  flush=True)
        record["snaps"][str(snap)] = arm
    out = ROOT / "benchmarks" / "results" / ("auto_snap.json" if a.prior is None else f"auto_snap_prior{a.prior}.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
