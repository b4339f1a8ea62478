"""Stain normalisation at count time, measured: does mapping every field's colours onto the training data's
before counting help the shipped (three-source) model?

    python benchmarks/stain_norm.py [--methods none,reinhard,macenko]

- reinhard: each field's CIELAB channel means and standard deviations set to the training fields' medians
  (Reinhard et al. 2001; OpenCV's LAB conversion).
- macenko: each field's stain vectors and concentrations mapped onto a reference training field's (Macenko et al.
  2009; torchstain's numpy implementation, `pip install torchstain`). Fields where Macenko fails (too little
  stain) are counted as they are.
Each source's val fields (BCCD 57 photos with complete labels, PBC 100, Raabin 100) are normalised into a
temporary folder and counted with `count_images` at count's defaults; count MAE per source and class. Writes
benchmarks/results/stain_norm.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def lab_stats(bgr: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float64)
    return np.concatenate([lab.mean(axis=0), lab.std(axis=0)])


def reinhard(bgr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float64)
    mean, std = lab.reshape(-1, 3).mean(axis=0), lab.reshape(-1, 3).std(axis=0)
    out = (lab - mean) / np.maximum(std, 1e-6) * ref[3:] + ref[:3]
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def training_fields() -> list[Path]:
    return sorted((ROOT / "datasets" / "three" / "images" / "train").glob("*.jpg"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="none,reinhard,macenko")
    a = ap.parse_args()
    from per_source import load_sources  # type: ignore[import-not-found]

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector, default_weights

    det = Detector(default_weights(), quiet=True)
    train = training_fields()
    ref_stats = np.median([lab_stats(cv2.imread(str(f))) for f in train[::4]], axis=0)
    macenko = None
    if "macenko" in a.methods:
        import torchstain

        macenko = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        reference = next(f for f in train if "bccd" in f.name)  # a BCCD training photo: the model's first stain
        macenko.fit(cv2.imread(str(reference))[..., ::-1])
    sources = load_sources("val", det.names, ["bccd", "pbc", "raabin"])
    out: dict = {"reference": {"reinhard": [round(float(v), 2) for v in ref_stats]}, "sources": {}}
    for method in a.methods.split(","):
        out["sources"][method] = {}
        for name, fields in sources.items():
            failed = 0
            with tempfile.TemporaryDirectory() as tmp:
                paths = []
                for f in fields:
                    bgr = cv2.imread(str(f.path))
                    if method == "reinhard":
                        bgr = reinhard(bgr, ref_stats)
                    elif method == "macenko":
                        try:
                            norm, _, _ = macenko.normalize(bgr[..., ::-1], stains=False)  # type: ignore[union-attr]
                            bgr = np.ascontiguousarray(np.asarray(norm, np.uint8)[..., ::-1])
                        except Exception:  # too little stain to find two stain vectors
                            failed += 1
                    p = Path(tmp) / f"{Path(f.path).stem}.png"
                    cv2.imwrite(str(p), bgr)
                    paths.append(p)
                counted, errors = count_images(paths, det, progress=False)
            assert not errors, errors[0]
            n = len(det.names)
            true = np.array([f.truth.counts(n) for f in fields])
            pred = np.array([c.detections.counts(n) for c in counted])
            mae = {c: round(float(np.abs(pred[:, k] - true[:, k]).mean()), 3) for k, c in enumerate(det.names)}
            out["sources"][method][name] = {"count_mae": mae, "fields": len(fields), "failed": failed}
            print(f"{method:9s} {name:7s} " + " ".join(f"{c} {v:.2f}" for c, v in mae.items())
                  + (f" ({failed} fields not normalised)" if failed else ""), flush=True)
    (ROOT / "benchmarks" / "results" / "stain_norm.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
