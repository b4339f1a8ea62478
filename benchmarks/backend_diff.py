"""Where two backends' counts differ: the boxes one backend keeps and the other does not, with their scores.

    .venv/bin/python benchmarks/backend_diff.py [--weights PT] [--backends torch openvino]

Backends: torch, onnx, openvino (the last two torch-free, count/runtime.py), and ultralytics-openvino /
ultralytics-onnx: the same export run by Ultralytics' own predictor (AutoBackend, letterbox, NMS), the path
counting took before it stopped importing torch. For matched boxes it also prints the largest coordinate gap.

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
    dets = [detector(args.weights or default_weights(), b) for b in args.backends]
    th, names = dets[0].thresholds.by_class, dets[0].names
    rows = []
    files = sorted(args.images.glob("*.jpg"))
    coord_gap = 0.0
    for f in files:
        a, b = (detect_image(open_image(f), d, progress=False)[0] for d in dets)
        m = match(a, b)
        if m.pred.any():
            coord_gap = max(coord_gap, float(np.abs(a.xyxy[m.pred] - b.xyxy[m.partner[m.pred]]).max()))
        if (a.counts(len(names)) == b.counts(len(names))).all():
            continue
        rows += [(f.name, name, names[d.cls[i]], float(d.score[i]))
                 for name, d, found in ((a_name, a, m.pred), (b_name, b, m.truth)) for i in np.flatnonzero(~found)]
    for name, only, cls, score in rows:
        print(f"{name}  only {only:<9} {cls:<10} score {score:.3f}  threshold {th[cls]:.2f}")
    gap = max((abs(s - th[c]) for _, _, c, s in rows), default=0.0)
    print(f"{len(rows)} unmatched boxes on {len({r[0] for r in rows})} of {len(files)} photos; "
          f"largest |score - threshold| {gap:.3f}; largest coordinate gap of matched boxes {coord_gap:.4f} px")


class UltralyticsExport:
    """An export run by Ultralytics' predictor, in the shape Detector's predictor has (the old counting path)."""

    def __init__(self, weights: Path, backend: str):
        from ultralytics import YOLO

        from bccd_yolo.count.runtime import find_export

        found = find_export(weights, backend)
        assert found is not None, "count once with this backend first, so the export exists"
        self.names, self.train_imgsz, self.stride = found[1].names, found[1].train_imgsz, found[1].stride
        self.model = YOLO(str(found[0]), task="detect")

    def __call__(self, images, conf, native=False, imgsz=None):
        from bccd_yolo.core.detections import Detections
        from bccd_yolo.core.images import pad_to_stride

        chunk, shape = pad_to_stride([np.ascontiguousarray(im[..., ::-1]) for im in images], self.stride)
        out = []
        for r in self.model.predict(chunk, imgsz=shape, conf=conf, iou=0.7, max_det=300, verbose=False, batch=len(chunk)):
            b = r.boxes
            out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                  b.cls.cpu().numpy().astype(np.int64)))
        return out


def detector(weights: Path, backend: str) -> Detector:
    if not backend.startswith("ultralytics-"):
        return Detector(weights, backend=backend, precision="fp32")  # parity is of fp32 arithmetic
    d = Detector(weights, backend=backend.split("-", 1)[1], precision="fp32")
    d.predictor, d.backend = UltralyticsExport(Path(weights), d.backend), backend
    return d


if __name__ == "__main__":
    main()
