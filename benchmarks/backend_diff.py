"""Where two backends' counts differ: the boxes one backend keeps and the other does not, with their scores.

    .venv/bin/python benchmarks/backend_diff.py [--weights PT] [--backends torch openvino]

On the 72 BCCD test photos at the model's thresholds; a box is unmatched when `matching.match` (greedy,
one-to-one, same class, IoU 0.5) finds it no partner among the other backend's boxes. Prints one line per
unmatched box and the largest distance of a score from its class threshold (small: the backends round
differently near a threshold, not a different model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bccd_yolo.core.images import open_image
from bccd_yolo.core.matching import match
from bccd_yolo.count.counting import detect_image
from bccd_yolo.count.detector import Detector, default_weights

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--backends", nargs=2, default=["torch", "openvino"])
    ap.add_argument("--images", type=Path, default=ROOT / "datasets" / "bccd" / "images" / "test")
    args = ap.parse_args()
    a_name, b_name = args.backends
    dets = [Detector(args.weights or default_weights(), backend=b) for b in args.backends]
    th, names = dets[0].thresholds.by_class, dets[0].names
    rows = []
    files = sorted(args.images.glob("*.jpg"))
    for f in files:
        a, b = (detect_image(open_image(f), d, progress=False)[0] for d in dets)
        if (a.counts(len(names)) == b.counts(len(names))).all():
            continue
        m = match(a, b)
        rows += [(f.name, name, names[d.cls[i]], float(d.score[i]))
                 for name, d, found in ((a_name, a, m.pred), (b_name, b, m.truth)) for i in np.flatnonzero(~found)]
    for name, only, cls, score in rows:
        print(f"{name}  only {only:<9} {cls:<10} score {score:.3f}  threshold {th[cls]:.2f}")
    gap = max((abs(s - th[c]) for _, _, c, s in rows), default=0.0)
    print(f"{len(rows)} unmatched boxes on {len({r[0] for r in rows})} of {len(files)} photos; "
          f"largest |score - threshold| {gap:.3f}")


if __name__ == "__main__":
    main()
