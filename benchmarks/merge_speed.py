"""The tile merge's candidate search: the spatial hash of box centres against shapely's STRtree.

    python benchmarks/merge_speed.py [--side 10000]

A slide of BCCD test photos (as slide_memory.py lays them) is detected tile by tile once with the shipped model;
then `merge_tiles` runs on those tile detections with each candidate search, several times, and the merged
detections are compared. Prints seconds per merge and whether the results are identical.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bccd_yolo.core.detections import Detections
from bccd_yolo.core.matching import ios_of, iou_of, overlap_areas
from bccd_yolo.count.tiling import NESTED_IOS

ROOT = Path(__file__).resolve().parents[1]


def hash_pairs(d: Detections, tile_of: np.ndarray, cut: np.ndarray, ios: float) -> list[tuple[float, int, int]]:
    """The spatial hash of box centres the merge used before the STRtree.

    (strength, i, j) for every pair of boxes of different tiles that are views of one cell; strength is the
    IoU, plus 1 for boxes of one class."""
    # Buckets at least as large as the largest box (overlapping boxes then have centres in adjacent buckets),
    # and large enough to hold ~16 boxes each on average, so that numpy, not Python, does most of the work.
    extent = d.xyxy[:, 2:].max(axis=0) - d.xyxy[:, :2].min(axis=0)
    size = max(float((d.xyxy[:, 2:] - d.xyxy[:, :2]).max()), 4 * float(np.sqrt(extent.prod() / len(d))), 1.0)
    centres = (d.xyxy[:, :2] + d.xyxy[:, 2:]) / 2
    keys = np.floor(centres / size).astype(np.int64)
    buckets: dict[tuple[int, int], np.ndarray] = {}
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    bounds = np.flatnonzero(np.any(np.diff(keys[order], axis=0) != 0, axis=1)) + 1
    for group in np.split(order, bounds):
        buckets[(int(keys[group[0], 0]), int(keys[group[0], 1]))] = group
    pairs: list[tuple[float, int, int]] = []
    for (bx, by), ia in buckets.items():
        for dx, dy in ((0, 0), (1, -1), (1, 0), (1, 1), (0, 1)):
            ib = buckets.get((bx + dx, by + dy))
            if ib is None:
                continue
            inter, area_a, area_b = overlap_areas(d.xyxy[ia], d.xyxy[ib])
            m = ios_of(inter, area_a, area_b)
            same_class = d.cls[ia][:, None] == d.cls[ib][None, :]
            # a cut box inside a whole box (smaller than it): one cell whatever the classes say
            cut_in_whole = (cut[ia][:, None] & ~cut[ib][None, :] & (area_a[:, None] <= area_b[None, :])) | (
                ~cut[ia][:, None] & cut[ib][None, :] & (area_b[None, :] <= area_a[:, None]))
            ok = ((m >= ios) & same_class) | ((m >= NESTED_IOS) & cut_in_whole)
            ok &= tile_of[ia][:, None] != tile_of[ib][None, :]
            if dx == dy == 0:
                ok &= np.triu(np.ones_like(ok), 1)
            r, c = np.nonzero(ok)
            iou = iou_of(inter, area_a, area_b)[r, c]
            # views of one class join first: a cut piece must not take a neighbouring cell's place in a tile
            strength = iou + same_class[r, c]
            pairs += zip(strength.tolist(), ia[r].tolist(), ib[c].tolist())
    return pairs



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from PIL import Image
    from slide_memory import write_slide  # type: ignore[import-not-found]

    import bccd_yolo.count.tiling as tiling
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import plan_image, predict_batch, read_batch
    from bccd_yolo.count.detector import Detector, default_weights

    det = Detector(default_weights(), quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slide.tif"
        photos = [np.asarray(Image.open(f).convert("RGB"))
                  for f in sorted((ROOT / "datasets" / "bccd" / "images" / "test").glob("*.jpg"))]
        write_slide(path, photos, a.side)
        src = open_image(path)
        plan = plan_image(src, det).tiles
        per_tile = []
        for k in range(len(plan.batches)):
            per_tile += predict_batch(plan, k, read_batch(src, plan, k), det)
        src.close()
    tiles = list(zip([t for b in plan.batches for t in b], per_tile))
    out, merged = {}, {}
    original = tiling._same_cell_pairs
    for name, finder in (("spatial hash", hash_pairs), ("shapely STRtree", original)):
        tiling._same_cell_pairs = finder
        times = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            merged[name] = tiling.merge_tiles(tiles, plan.width, plan.height)
            times.append(time.perf_counter() - t)
        out[name] = {"median_seconds": round(float(np.median(times)), 4), "cells": len(merged[name])}
    tiling._same_cell_pairs = original
    a_, b_ = merged.values()
    same = (len(a_) == len(b_) and np.array_equal(a_.xyxy, b_.xyxy) and np.array_equal(a_.cls, b_.cls))
    record = {"side": a.side, "tiles": len(tiles), "boxes": int(sum(len(d) for _, d in tiles)), "merge": out,
              "identical": bool(same)}
    print(json.dumps(record, indent=2))
    (ROOT / "benchmarks" / "results" / "merge_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
