"""Val fields whose scale `--mpp auto` cannot estimate (too few measurable red cells), and what it costs their counts.

    python benchmarks/auto_fallback.py [--sources bccd,pbc,raabin]

Nothing records a val field's scale, so `count` estimates it from the red cells (the default `auto`). Where that
fails, the field is counted at the model's scale and a note says so. Per source: the fields where it fails, how
many measurable red cells each gave, and their count MAE per class at the model's scale (as counted) against at
the source's own scale (the median estimate of its other val fields). This decides whether the failure is a qc
reason (counts to doubt) or a note. Chosen on val only. Writes benchmarks/results/auto_fallback.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def mae(fields, counted, n: int) -> list[float]:
    errors = [np.bincount(f.truth.cls, minlength=n) - np.bincount(c.detections.cls, minlength=n) for f, c in zip(fields, counted)]
    return np.abs(np.array(errors)).mean(0).round(2).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", default="bccd,pbc,raabin")
    args = p.parse_args()

    from per_source import load_sources

    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images, estimate_scale, image_scale
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.count.options import CountOptions

    det = Detector(default_weights(), quiet=True)
    out: dict = {"weights": str(det.weights), "sources": {}}
    for name, fields in load_sources("val", det.names, args.sources.split(",")).items():
        failed, cells, estimates = [], [], []
        for f in fields:
            src = open_image(f.path)
            try:
                scale = image_scale(src, det, None)
                if scale is not None and scale.source == "auto":
                    estimates.append(scale.mpp)
                else:
                    failed.append(f)
                    cells.append(estimate_scale(src, det, det.scale.photo_mpp)[1])
            finally:
                src.close()
        record: dict = {"fields": len(fields), "failed": len(failed), "measurable_red_cells": cells}
        if failed:
            own = float(np.median(estimates))
            as_counted, _ = count_images([f.path for f in failed], det, CountOptions(), progress=False)
            at_own, _ = count_images([f.path for f in failed], det, CountOptions(mpp=own), progress=False)
            record.update({"names": [f.path.name for f in failed], "model_mpp": det.scale.photo_mpp, "own_mpp": round(own, 5),
                           "red_cells_labelled": [int((f.truth.cls == det.names.index("RBC")).sum()) for f in failed],
                           "mae_at_model_scale": dict(zip(det.names, mae(failed, as_counted, len(det.names)))),
                           "mae_at_own_scale": dict(zip(det.names, mae(failed, at_own, len(det.names)))),
                           "notes": sorted({n for c in as_counted for n in c.notes}),
                           "qc_flagged": sum(bool(c.qc) for c in as_counted)})
        out["sources"][name] = record
        print(name, json.dumps(record), flush=True)
    path = ROOT / "benchmarks" / "results" / "auto_fallback.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
