"""One-by-one red cells with no canvas detection at IoU 0.5 (canvas 1, default tiles): red at a photo's edge,
magenta inside; canvas detections in green.

    python seam_misses.py WEIGHTS OUT.png
"""

import sys
from pathlib import Path

import cv2
import numpy as np

from bccd_yolo.core.images import PhotoSource, open_image
from bccd_yolo.core.matching import iou_matrix
from bccd_yolo.count.counting import detect_image
from bccd_yolo.count.detector import Detector
from bccd_yolo.measure.synthetic import paste_canvas

root = Path(__file__).resolve().parents[4] / "shared" / "BCCD_Dataset" / "BCCD"
files = [root / "JPEGImages" / f"{s}.jpg" for s in (root / "ImageSets/Main/test.txt").read_text().split()]
det = Detector(Path(sys.argv[1]), quiet=True)  # e.g. runs/ship-refill-c/weights/best.pt, calibrated
seed = 1
canvas, placed = paste_canvas(files[seed::2] + files, 3400, 2400, seed=seed)
d, _ = detect_image(PhotoSource(Path("c.png"), canvas), det, progress=False)
img = canvas[:, :, ::-1].copy()
found = d.xyxy[d.cls == 0]
misses = {"edge": 0, "inside": 0}
for f, x, y in placed:
    o = detect_image(open_image(f), det, progress=False)[0].shifted(x, y)
    mine = o.xyxy[o.cls == 0]
    best = iou_matrix(mine, found).max(axis=1) if len(found) else np.zeros(len(mine))
    for b in mine[best < 0.5]:
        edge = bool(b[0] - x < 3 or b[1] - y < 3 or x + 640 - b[2] < 3 or y + 480 - b[3] < 3)
        misses["edge" if edge else "inside"] += 1
        cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255) if edge else (255, 0, 255), 4)
for b in found:
    cv2.rectangle(img, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 200, 0), 1)
print("one-by-one RBC with no canvas match:", misses)
cv2.imwrite(sys.argv[2], cv2.resize(img[:1300, :1900], None, fx=0.45, fy=0.45))  # top-left of canvas 1
