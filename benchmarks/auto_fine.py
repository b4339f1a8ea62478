"""Does `--mpp auto` find the scale of photos much finer than the model's? BCCD val photos enlarged 2x and 4x.

    python benchmarks/auto_fine.py [--photos 12] [--factors 2,4]

A camera with more pixels over the same field shows red cells larger than the model learnt. Each of the first
`--photos` BCCD val photos is enlarged (bicubic) and its scale estimated as `count` estimates it by default
(`image_scale`, nothing recording it); times the factor, that should give the photo's own estimate at 1x. Prints per
factor each photo's estimate in 1x terms and the largest deviation from 1x; writes benchmarks/results/auto_fine.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=12)
    p.add_argument("--factors", default="2,4")
    args = p.parse_args()

    import cv2
    from per_source import load_sources
    from PIL import Image

    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import image_scale
    from bccd_yolo.count.detector import Detector, default_weights

    det = Detector(default_weights(), quiet=True)
    fields = load_sources("val", det.names, ["bccd"])["bccd"][: args.photos]
    factors = [1.0] + [float(f) for f in args.factors.split(",")]
    out: dict = {"weights": str(det.weights), "photos": [f.path.name for f in fields], "estimates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for factor in factors:
            row = []
            for f in fields:
                rgb = np.asarray(Image.open(f.path).convert("RGB"))
                if factor != 1:
                    rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
                path = Path(tmp) / f"{f.path.stem}_x{factor:g}.png"
                Image.fromarray(rgb).save(path)
                src = open_image(path)
                try:
                    scale = image_scale(src, det, None)
                finally:
                    src.close()
                row.append(None if scale is None else round(scale.mpp * factor, 4))
            out["estimates"][f"{factor:g}"] = row
    base = np.array(out["estimates"]["1"], float)
    for factor, row in out["estimates"].items():
        off = np.abs(np.array(row, float) / base - 1)
        out.setdefault("largest_deviation", {})[factor] = round(float(np.nanmax(off)), 3)
        print(f"x{factor}: {row}  largest deviation from 1x {np.nanmax(off):.1%}; over 10 %: {int((off > 0.1).sum())}")
    path = ROOT / "benchmarks" / "results" / "auto_fine.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
