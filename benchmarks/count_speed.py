"""Counting throughput: plain Ultralytics predict vs bccd-yolo count (torch and ONNX Runtime), and slides.

Run by hand:  .venv/bin/python benchmarks/count_speed.py [--weights weights/bccd_yolov3_tiny.pt]
All arms run in one process on the same files and weights, each after one warm-up image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bccd_yolo.counting import detect_image
from bccd_yolo.detector import Detector, default_weights
from bccd_yolo.images import PhotoSource, open_image
from bccd_yolo.synthetic import paste_canvas
from bccd_yolo.yolo import env as yolo_env


def per_second(fn, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=Path("datasets/bccd/images/test"))
    ap.add_argument("--slide", type=int, default=4096, help="side of the synthetic slide in pixels")
    args = ap.parse_args()
    weights = args.weights or default_weights()
    files = sorted(args.images.glob("*.jpg"))
    from ultralytics import YOLO

    rows = []
    plain = YOLO(str(weights))
    plain.predict(str(files[0]), verbose=False)
    rows.append(("Ultralytics YOLO.predict (its default threads)", per_second(
        lambda: [plain.predict(str(f), verbose=False) for f in files], len(files))))
    import torch

    torch_threads = torch.get_num_threads()
    for backend in ("torch", "onnx"):
        det = Detector(weights, backend=backend)
        det([np.asarray(Image.open(files[0]).convert("RGB"))])

        def run(det=det):
            for f in files:
                src = open_image(f)
                detect_image(src, det, progress=False)

        rows.append((f"bccd-yolo count, {backend} ({yolo_env.cpu_threads()} threads)", per_second(run, len(files))))
    canvas, _ = paste_canvas(files * 10, args.slide, args.slide)
    src = PhotoSource(Path("slide.png"), canvas)
    mp = canvas.shape[0] * canvas.shape[1] / 1e6
    slide_rows = []
    for backend in ("torch", "onnx"):
        det = Detector(weights, backend=backend)
        start = time.perf_counter()
        d, tiles = detect_image(src, det, progress=False)
        slide_rows.append((backend, tiles, len(d), mp / (time.perf_counter() - start)))
    print(f"\n{len(files)} BCCD test images, weights {weights}, torch threads at start {torch_threads}")
    print(f"{'arm':<52} {'images/s':>9} {'vs plain':>9}")
    for name, ips in rows:
        print(f"{name:<52} {ips:>9.2f} {ips / rows[0][1]:>8.2f}x")
    print(f"\nslide {args.slide}x{args.slide} ({mp:.1f} MP) of pasted test images, tiled")
    print(f"{'backend':<8} {'tiles':>6} {'cells':>7} {'MP/s':>7}")
    for backend, tiles, cells, mps in slide_rows:
        print(f"{backend:<8} {tiles:>6} {cells:>7} {mps:>7.2f}")


if __name__ == "__main__":
    main()
