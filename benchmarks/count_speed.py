"""Counting speed: photos vs plain Ultralytics predict, slides vs SAHI, per backend, in one run.

    .venv/bin/python benchmarks/count_speed.py [--weights PT] [--side 10000] [--skip-process]

Needs the bench extra (pip install -e '.[bench]': SAHI) and, for the openvino arm, OpenVINO. Arms:
  photos   the 72 BCCD test photos: Ultralytics YOLO(weights).predict with its defaults, and bccd-yolo's
           detect_image per backend; in-process, after one warm-up photo; photos/s.
  covered  a canvas fully covered with test photos (3400 x 2400, 8.2 MP): bccd-yolo per backend vs SAHI
           0.12.8's get_sliced_prediction on the same weights (640 px slices, overlap 0.4, imgsz 640, NMS by
           intersection over the smaller box, the lowest of the model's thresholds); in-process, after
           warm-up; MP/s.
  process  a 10,000 x 10,000 PNG whose photos cover ~40 % (the rest plain background, as glass is), counted
           as users run both: `bccd-yolo count` and SAHI (read, slice, predict; this script's --sahi-count), each a fresh
           process; wall time and peak RSS.
Writes benchmarks/results/count_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import run_sampled  # benchmarks/measure.py
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD"
BACKENDS = ("torch", "onnx", "openvino")

def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sahi_model(weights: Path, conf: float):
    from sahi import AutoDetectionModel

    return AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(weights),
                                              confidence_threshold=conf, device="cpu", image_size=640)


def sahi_sliced(model, image):
    """SAHI on an image (an array, or a path it reads itself) with bccd-yolo's slicing and duplicate rule."""
    from sahi.predict import get_sliced_prediction

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return get_sliced_prediction(image, model, slice_height=640, slice_width=640,
                                 overlap_height_ratio=0.4, overlap_width_ratio=0.4, postprocess_type="NMS",
                                 postprocess_match_metric="IOS", postprocess_match_threshold=0.5, verbose=0)


def sahi_count(weights: str, image: str, conf: float) -> None:
    """The SAHI arm as a user runs it: a fresh process that loads the model, reads the image, slices, predicts."""
    Image.MAX_IMAGE_PIXELS = None
    print(len(sahi_sliced(sahi_model(Path(weights), conf), image).object_prediction_list))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--side", type=int, default=10_000)
    ap.add_argument("--skip-process", action="store_true", help="leave out the whole-process slide arm")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "count_speed.json")
    ap.add_argument("--sahi-count", nargs=3, metavar=("WEIGHTS", "IMAGE", "CONF"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sahi_count:
        return sahi_count(args.sahi_count[0], args.sahi_count[1], float(args.sahi_count[2]))

    from bccd_yolo.core.images import PhotoSource, open_image
    from bccd_yolo.count.counting import detect_image
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.measure.synthetic import paste_canvas
    from bccd_yolo.yolo import env as yolo_env

    weights = args.weights or default_weights()
    backends = args.backends.split(",")
    files = [SHARED / "JPEGImages" / f"{s}.jpg" for s in (SHARED / "ImageSets" / "Main" / "test.txt").read_text().split()]
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    res: dict = {"weights": str(weights), "cpus": os.cpu_count(), "threads": yolo_env.cpu_threads(), "photos": {},
                 "covered": {}, "process": {}}

    from ultralytics import YOLO

    plain = YOLO(str(weights))
    plain.predict(str(files[0]), verbose=False)
    _, s = timed(lambda: [plain.predict(str(f), verbose=False) for f in files])
    res["photos"]["ultralytics predict"] = len(files) / s
    detectors = {}
    per_photo: dict[str, np.ndarray] = {}
    for b in backends:
        det = detectors[b] = Detector(weights, backend=b, quiet=True)
        detect_image(PhotoSource(files[0], photos[0]), det, progress=False)
        counts, s = timed(lambda det=det: [detect_image(open_image(f), det, progress=False)[0].counts(3) for f in files])
        res["photos"][f"bccd-yolo {b}"] = len(files) / s
        res["photos"][f"bccd-yolo {b} counts"] = np.sum(counts, axis=0).tolist()
        per_photo[b] = np.array(counts)
        print(f"photos {b}: {len(files) / s:.1f}/s", flush=True)

    if "torch" in per_photo:  # agreement with torch, photo by photo
        res["agreement"] = {b: {"photos_identical": int((per_photo[b] == per_photo["torch"]).all(axis=1).sum()),
                                "cells_differing": int(np.abs(per_photo[b] - per_photo["torch"]).sum())}
                            for b in backends if b != "torch"}
        canvas, placed = paste_canvas(files[0::2] + files, 3400, 2400, seed=0)
    mp = canvas.shape[0] * canvas.shape[1] / 1e6
    src = PhotoSource(Path("covered.png"), canvas)
    lowest = min(detectors[backends[0]].thresholds.by_class.values())
    sahi = sahi_model(weights, lowest)
    sahi_sliced(sahi, canvas[:1280, :1280])
    r, s = timed(lambda: sahi_sliced(sahi, canvas))
    res["covered"] = {"mp": mp, "sahi": {"mp_s": mp / s, "seconds": s, "boxes": len(r.object_prediction_list)}}
    for b in backends:
        detect_image(PhotoSource(Path("w.png"), canvas[:1280, :1280]), detectors[b], progress=False)
        (d, n), s = timed(lambda b=b: detect_image(src, detectors[b], progress=False))
        res["covered"][b] = {"mp_s": mp / s, "seconds": s, "tiles": n, "counts": d.counts(3).tolist()}
        print(f"covered {b}: {mp / s:.2f} MP/s", flush=True)

    if not args.skip_process:
        with tempfile.TemporaryDirectory() as tmp:
            side = args.side
            slide = np.full((side, side, 3), 232, np.uint8)
            block, _ = paste_canvas(files * (side * side // (640 * 480 * len(files) * 2) + 2), round(side * 0.63), round(side * 0.63), seed=1)
            y0 = (side - block.shape[0]) // 2
            slide[y0 : y0 + block.shape[0], y0 : y0 + block.shape[1]] = block
            covered = float((np.abs(slide.astype(int) - 232).max(axis=2) > 0).mean())
            path = Path(tmp) / "slide.png"
            Image.fromarray(slide).save(path, compress_level=1)
            del slide, block
            res["process"] = {"side": side, "covered": covered}
            cli = ["-m", "bccd_yolo", "count", str(path), "--weights", str(weights), "--quiet"]
            for b in backends:
                s, peaks, _ = run_sampled(cli + ["--backend", b])
                peak = peaks["total"]
                res["process"][b] = {"seconds": s, "peak_mb": peak}
                print(f"process {b}: {s:.1f} s, {peak:.0f} MB", flush=True)
            s, peaks, out = run_sampled([__file__, "--sahi-count", str(weights), str(path), str(lowest)])
            peak = peaks["total"]
            res["process"]["sahi"] = {"seconds": s, "peak_mb": peak, "boxes": int(out.split()[-1])}
            print(f"process sahi: {s:.1f} s, {peak:.0f} MB", flush=True)

    print(f"\n{len(files)} BCCD test photos, {weights.name}, {res['cpus']} CPUs")
    base = res["photos"]["ultralytics predict"]
    print(f"{'photos':<34} {'photos/s':>9} {'vs plain':>9}")
    print(f"{'Ultralytics predict (defaults)':<34} {base:>9.1f} {1:>8.2f}x")
    for b in backends:
        v = res["photos"][f"bccd-yolo {b}"]
        print(f"{'bccd-yolo count, ' + b:<34} {v:>9.1f} {v / base:>8.2f}x")
    for b, a in res.get("agreement", {}).items():
        print(f"{b}: counts identical to torch on {a['photos_identical']} of {len(files)} photos "
              f"({a['cells_differing']} cells differ in all)")
        c = res["covered"]
    print(f"\n{'covered canvas, ' + format(mp, '.1f') + ' MP':<34} {'MP/s':>9} {'vs SAHI':>9}")
    print(f"{'SAHI 0.12.8':<34} {c['sahi']['mp_s']:>9.2f} {1:>8.2f}x")
    for b in backends:
        print(f"{'bccd-yolo, ' + b:<34} {c[b]['mp_s']:>9.2f} {c[b]['mp_s'] / c['sahi']['mp_s']:>8.2f}x")
    if res["process"]:
        p = res["process"]
        label = f"{p['side']:,} px slide, {p['covered']:.0%} covered"
        print(f"\n{label:<34} {'seconds':>9} {'vs SAHI':>9} {'peak MB':>9}")
        print(f"{'SAHI 0.12.8 (script)':<34} {p['sahi']['seconds']:>9.1f} {1:>8.2f}x {p['sahi']['peak_mb']:>9.0f}")
        for b in backends:
            print(f"{'bccd-yolo count, ' + b:<34} {p[b]['seconds']:>9.1f} {p['sahi']['seconds'] / p[b]['seconds']:>8.2f}x "
                  f"{p[b]['peak_mb']:>9.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
