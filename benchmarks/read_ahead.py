"""Reading tiles ahead on a thread while the network runs: on and off, per backend, on a tiled TIFF and a PNG.

    .venv/bin/python benchmarks/read_ahead.py [--side 6000] [--backends torch,openvino]

A canvas fully covered with BCCD test photos, written as a zlib tiled TIFF and as a PNG (read through
libvips when over 40 MP, else decoded whole first), counted in-process after warm-up with
`counting.READ_AHEAD` on and off, alternating, twice each; the best of the two runs is kept.
Writes benchmarks/results/read_ahead.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=6000)
    ap.add_argument("--backends", default="torch,openvino")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "read_ahead.json")
    args = ap.parse_args()
    import bccd_yolo.count.counting as counting
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.measure.synthetic import paste_canvas

    files = [SHARED / "JPEGImages" / f"{s}.jpg" for s in (SHARED / "ImageSets" / "Main" / "test.txt").read_text().split()]
    canvas, _ = paste_canvas(files * (args.side**2 // (640 * 480 * len(files)) + 2), args.side, args.side, seed=0, gaps=(7, 30))
    res: dict = {"side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        tif, png = Path(tmp) / "c.tif", Path(tmp) / "c.png"
        tifffile.imwrite(tif, canvas, tile=(512, 512), photometric="rgb", compression="zlib")
        Image.fromarray(canvas).save(png, compress_level=1)
        del canvas
        for backend in args.backends.split(","):
            det = Detector(default_weights(), backend=backend, quiet=True)
            src = open_image(tif)
            counting.detect_image(src, det, progress=False)  # warm-up
            src.close()
            for path in (tif, png):
                times: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(2):
                    for ahead in (True, False):
                        counting.READ_AHEAD = ahead
                        start = time.perf_counter()
                        src = open_image(path)
                        d, n = counting.detect_image(src, det, progress=False)
                        src.close()
                        times[ahead].append(time.perf_counter() - start)
                on, off = min(times[True]), min(times[False])
                res[f"{backend} {path.suffix}"] = {"ahead_s": round(on, 2), "sequential_s": round(off, 2),
                                                   "speedup": round(off / on, 3), "tiles": n}
                print(f"{backend:<9} {path.suffix:<5} read ahead {on:7.1f} s   sequential {off:7.1f} s   "
                      f"{off / on:.2f}x  ({n} tiles)", flush=True)
    counting.READ_AHEAD = True
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")



if __name__ == "__main__":
    main()
