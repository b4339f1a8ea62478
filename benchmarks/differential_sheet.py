"""A contact sheet of the white cells `count` types in photos from a microscope the classifier never saw.

    python benchmarks/differential_sheet.py [--source bccd|raabin] [--out docs/differential_bccd.png]

BCCD's photos and Raabin-WBC's fields carry no white-cell types here, so the differential cannot be scored on
them; this sheet shows what it calls each cell (25 um crops as the classifier sees them, type and score), so a
reader can judge it by eye. Also prints the calls' share per type and their median score against the score
floor the classifier's val cells set.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def photos(source: str) -> list[Path]:
    if source == "bccd":
        ids = (SHARED / "BCCD_Dataset" / "BCCD" / "ImageSets" / "Main" / "val.txt").read_text().split()
        return [SHARED / "BCCD_Dataset" / "BCCD" / "JPEGImages" / f"{i}.jpg" for i in ids]
    return sorted((SHARED / "txl-pbc-other" / source / "images" / "val").iterdir())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="bccd")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.count.differential import ABBREVIATIONS, SHIPPED_TYPES, Differential, read_crop

    det, diff = Detector(default_weights(), quiet=True), Differential(SHIPPED_TYPES)
    counted, _ = count_images(photos(a.source)[: a.n], det, progress=False, differential=diff)
    tiles, calls, scores = [], collections.Counter(), []
    for r in counted:
        assert r.types is not None
        src = open_image(Path(r.path))
        for i in np.flatnonzero(r.types.index > -2):
            label, score = r.types.label(int(i)), float(r.types.score[i])
            calls[label] += 1
            scores.append(score)
            crop = np.ascontiguousarray(read_crop(src, r.detections.xyxy[i], r.mpp or 0.08, diff.crop_um, 160)[..., ::-1])
            cv2.putText(crop, f"{ABBREVIATIONS.get(label, label)} {score:.2f}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                        (0, 0, 0), 3)
            cv2.putText(crop, f"{ABBREVIATIONS.get(label, label)} {score:.2f}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                        (255, 255, 255), 1)
            tiles.append(crop)
        src.close()
    cols = 8
    rows = [np.hstack(tiles[k:k + cols] + [np.full_like(tiles[0], 255)] * (cols - len(tiles[k:k + cols])))
            for k in range(0, len(tiles), cols)]
    out = a.out or ROOT / "docs" / f"differential_{a.source}.png"
    cv2.imwrite(str(out), np.vstack(rows))
    summary = {"source": a.source, "images": len(counted), "white_cells": len(scores), "calls": dict(calls),
               "median_score": round(float(np.median(scores)), 3), "score_floor": diff.score_floor}
    print(json.dumps(summary))
    (ROOT / "benchmarks" / "results" / "differential" / f"sheet_{a.source}.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
