"""Counts that do not depend on how an image is cut: tiled vs whole, across tile settings, across scales.

    .venv/bin/python benchmarks/tiled_agreement.py [--canvases 4] [--weights PT] [--images DIR]

Arms, per class, pooled over the photos or canvases (the scale-aware tiling issue's targets in brackets):
  (a) every test photo counted whole vs the same photo cut into 320 px tiles, overlap 0.4: no seams
      between photos, so any difference is the tiling and merge alone [within 2 %];
  (b) BCCD test photos pasted at uneven offsets, with gaps, into 3400 x 2400 canvases, counted at several
      tile sizes and overlaps, vs the same photos counted one by one [within 3 % of one-by-one and of each other];
  (c) those canvases shrunk to 2/3 and counted with the right --mpp (1.5x the model's photo scale), and with
      --mpp auto, vs one by one [within 6 %].
  (b) and (c) are also counted "away from the seams": only cells at least SEAM px from the frame of the photo
      they lie in, on the canvas and one by one. A real slide has no photo frames; the cells those frames cut
      score differently against the canvas's grey than against a photo's edge, and near a threshold that
      decides whether they count.
Writes benchmarks/results/tiled_agreement.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from bccd_yolo.core.detections import Detections
from bccd_yolo.core.images import PhotoSource, open_image
from bccd_yolo.count.counting import detect_image, estimate_scale
from bccd_yolo.count.detector import Detector, default_weights
from bccd_yolo.measure.synthetic import away_from_seams, paste_canvas

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(None, 0.4), (640, 0.25), (640, 0.5), (960, 0.4), (480, 0.4), (1280, 0.3)]  # (tile px, overlap); None: default
TARGETS = {"a": 0.02, "b": 0.03, "c": 0.06}
SEAM = 8  # canvas px: a cut cell's box ends at the frame; 8 px leaves room for box jitter


def seamless(d: Detections, placed: list[tuple[Path, int, int]], k: int, scale: float = 1.0) -> np.ndarray:
    return np.bincount(d.cls[away_from_seams(d.xyxy, placed, SEAM * scale, scale)], minlength=k)


def rel(a: np.ndarray, b: np.ndarray) -> list[float]:
    return [round(float((x - y) / max(y, 1)), 4) for x, y in zip(a, b)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD" / "JPEGImages")
    ap.add_argument("--split", type=Path, default=ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD" / "ImageSets" / "Main" / "test.txt")
    ap.add_argument("--canvases", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tiled_agreement.json")
    args = ap.parse_args()
    files = [args.images / f"{s}.jpg" for s in args.split.read_text().split()]
    det = Detector(args.weights or default_weights())
    k = len(det.names)
    assert det.scale is not None, "the model records no scale (calibrate it)"
    t0 = time.time()
    whole_dets = {f: detect_image(open_image(f), det, progress=False)[0] for f in files}
    whole = {f: d.counts(k) for f, d in whole_dets.items()}
    cut = {f: detect_image(open_image(f), det, tile=320, overlap=0.4, progress=False)[0].counts(k) for f in files}
    a_whole, a_cut = sum(whole.values()), sum(cut.values())
    res: dict = {"model": str(det.weights), "model_mpp": det.scale.mpp, "photo_mpp": det.scale.photo_mpp,
                 "names": det.names, "targets": TARGETS,
                 "a": {"photos": len(files), "whole": a_whole.tolist(), "tiled_320": a_cut.tolist(),
                       "rel": rel(a_cut, a_whole),
                       "photos_differing": int(sum((cut[f] != whole[f]).any() for f in files))}}
    print(f"(a) {len(files)} photos whole vs 320 px tiles: " + ", ".join(
        f"{n} {w} vs {c} ({r:+.1%})" for n, w, c, r in zip(det.names, a_whole, a_cut, res["a"]["rel"])))

    b_rows, c_rows = [], []
    pooled_one = np.zeros(k, int)
    pooled = {s: np.zeros(k, int) for s in SETTINGS}
    pooled_small, pooled_auto, auto_mpps = np.zeros(k, int), np.zeros(k, int), []
    pooled_one_inner, pooled_small_inner = np.zeros(k, int), np.zeros(k, int)
    pooled_inner = {s: np.zeros(k, int) for s in SETTINGS}
    small_mpp = det.scale.photo_mpp * 1.5
    for seed in range(args.canvases):
        canvas, placed = paste_canvas(files[seed::2] + files, 3400, 2400, seed=seed)
        one = sum(whole[f] for f, _, _ in placed)
        pooled_one += one
        one_inner = sum(seamless(whole_dets[f].shifted(x, y), [(f, x, y)], k) for f, x, y in placed)
        pooled_one_inner += one_inner
        src = PhotoSource(Path(f"canvas{seed}.png"), canvas)
        for tile, overlap in SETTINGS:
            d, n = detect_image(src, det, tile=tile, overlap=overlap, progress=False)
            c = d.counts(k)
            pooled[(tile, overlap)] += c
            pooled_inner[(tile, overlap)] += seamless(d, placed, k)
            b_rows.append({"canvas": seed, "tile": tile, "overlap": overlap, "tiles": n, "counts": c.tolist(),
                           "one_by_one": one.tolist(), "rel": rel(c, one)})
        small = cv2.resize(canvas, (round(canvas.shape[1] * 2 / 3), round(canvas.shape[0] * 2 / 3)),
                           interpolation=cv2.INTER_AREA)
        ssrc = PhotoSource(Path(f"canvas{seed}-small.png"), small)
        d_small = detect_image(ssrc, det, overlap=0.4, progress=False, mpp=small_mpp)[0]
        c_small = d_small.counts(k)
        pooled_small_inner += seamless(d_small, placed, k, 2 / 3)
        est, n_cells = estimate_scale(ssrc, det, det.scale.photo_mpp)
        auto_mpps.append(est)
        c_auto = detect_image(ssrc, det, overlap=0.4, progress=False, mpp=est)[0].counts(k)
        pooled_small += c_small
        pooled_auto += c_auto
        c_rows.append({"canvas": seed, "mpp": small_mpp, "counts": c_small.tolist(), "auto_mpp": est,
                       "auto_cells": n_cells, "auto_counts": c_auto.tolist(), "one_by_one": one.tolist()})
        print(f"canvas {seed}: one by one {one.tolist()}; " + "; ".join(
            f"{r['tile'] or 'default'}/{r['overlap']}: {r['counts']}" for r in b_rows[-len(SETTINGS):])
            + f"; 2/3 at --mpp {small_mpp:.4f}: {c_small.tolist()}; auto {est:.4f}: {c_auto.tolist()}", flush=True)
    spread = [round(float((max(pooled[s][i] for s in SETTINGS) - min(pooled[s][i] for s in SETTINGS))
                          / max(pooled_one[i], 1)), 4) for i in range(k)]
    res["b"] = {"canvases": b_rows, "one_by_one": pooled_one.tolist(),
                "pooled": [{"tile": t, "overlap": o, "counts": pooled[(t, o)].tolist(), "rel": rel(pooled[(t, o)], pooled_one)}
                           for t, o in SETTINGS], "spread": spread}
    res["c"] = {"canvases": c_rows, "pooled": pooled_small.tolist(), "rel": rel(pooled_small, pooled_one),
                "pooled_auto": pooled_auto.tolist(), "rel_auto": rel(pooled_auto, pooled_one),
                "auto_mpp": auto_mpps, "true_mpp": small_mpp}
    res["away_from_seams"] = {
        "margin_px": SEAM, "one_by_one": pooled_one_inner.tolist(),
        "b": [{"tile": t, "overlap": o, "counts": pooled_inner[(t, o)].tolist(),
               "rel": rel(pooled_inner[(t, o)], pooled_one_inner)} for t, o in SETTINGS],
        "c": {"counts": pooled_small_inner.tolist(), "rel": rel(pooled_small_inner, pooled_one_inner)}}
    res["seconds"] = round(time.time() - t0, 1)

    print()
    print(f"{'arm':<34} " + " ".join(f"{n:>10}" for n in det.names) + "   target")
    print(f"{'(a) 320 px tiles vs whole':<34} " + " ".join(f"{r:>+10.1%}" for r in res["a"]["rel"]) + "   2 %")
    for row in res["b"]["pooled"]:
        label = f"(b) tile {row['tile'] or 'default'}, overlap {row['overlap']}"
        print(f"{label:<34} " + " ".join(f"{r:>+10.1%}" for r in row["rel"]) + "   3 %")
    print(f"{'(b) spread across settings':<34} " + " ".join(f"{r:>10.1%}" for r in spread) + "   3 %")
    print(f"{'(c) 2/3 size, --mpp given':<34} " + " ".join(f"{r:>+10.1%}" for r in res["c"]["rel"]) + "   6 %")
    print(f"{'(c) 2/3 size, --mpp auto':<34} " + " ".join(f"{r:>+10.1%}" for r in res["c"]["rel_auto"]) + "   6 %")
    print(f"away from the photos' seams (>= {SEAM} px from a photo's frame; one by one: {pooled_one_inner.tolist()}):")
    for row in res["away_from_seams"]["b"]:
        label = f"(b) tile {row['tile'] or 'default'}, overlap {row['overlap']}"
        print(f"{label:<34} " + " ".join(f"{r:>+10.1%}" for r in row["rel"]) + "   3 %")
    print(f"{'(c) 2/3 size, --mpp given':<34} " + " ".join(f"{r:>+10.1%}" for r in res["away_from_seams"]["c"]["rel"]) + "   6 %")
    print(f"auto scale of the 2/3 canvases: {', '.join(f'{m:.4f}' for m in auto_mpps)} (true {small_mpp:.4f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
