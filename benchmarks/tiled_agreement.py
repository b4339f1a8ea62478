"""Tiled counting vs one-by-one counting: BCCD test photos pasted at uneven offsets into canvases.

Run by hand:  .venv/bin/python benchmarks/tiled_agreement.py [--canvases 4] [--weights PT]
Prints, per canvas and pooled, the per-class counts of the tiled canvas and the sum of the
photos counted one by one, with their relative difference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bccd_yolo.counting import detect_image
from bccd_yolo.detector import Detector, default_weights
from bccd_yolo.images import PhotoSource, open_image
from bccd_yolo.synthetic import paste_canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=Path("datasets/bccd/images/test"))
    ap.add_argument("--canvases", type=int, default=4)
    args = ap.parse_args()
    files = sorted(args.images.glob("*.jpg"))
    det = Detector(args.weights or default_weights())
    single = {f: detect_image(open_image(f), det, progress=False)[0].counts(len(det.names)) for f in files}
    print(f"{'canvas':<7} {'photos':>6} {'tiles':>5}  " + "  ".join(f"{n + ' tiled/one':>22}" for n in det.names))
    pooled_t = pooled_o = 0
    for seed in range(args.canvases):
        canvas, placed = paste_canvas(files[seed::2] + files, 3400, 2400, seed=seed)
        one = sum(single[f] for f, _, _ in placed)
        tiled, n = detect_image(PhotoSource(Path("canvas.png"), canvas), det, progress=False)
        t = tiled.counts(len(det.names))
        pooled_t, pooled_o = pooled_t + t, pooled_o + one
        print(f"{seed:<7} {len(placed):>6} {n:>5}  " + "  ".join(f"{a:>6}/{b:<5} {(a - b) / max(b, 1):>+7.1%}" for a, b in zip(t, one)))
    print(f"{'pooled':<7} {'':>6} {'':>5}  " + "  ".join(f"{a:>6}/{b:<5} {(a - b) / max(b, 1):>+7.1%}"
                                                      for a, b in zip(pooled_t, pooled_o)))


if __name__ == "__main__":
    main()
