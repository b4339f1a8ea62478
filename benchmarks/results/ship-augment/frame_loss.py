"""Is the canvas's red-cell loss the model or the tiling? 12 pairs of BCCD test photos pasted side by side
(40 px apart, background 230), counted through `detect_image` (tiled: default, 640 and 320 px tiles) and in
one network pass at the model's scale with no tiling or merging, vs the photos one by one.

    python frame_loss.py WEIGHTS
"""

import sys
from pathlib import Path

import numpy as np

from bccd_yolo.core.images import PhotoSource, open_image
from bccd_yolo.count.counting import detect_image
from bccd_yolo.count.detector import Detector
from bccd_yolo.measure.synthetic import paste_canvas

root = Path(__file__).resolve().parents[4] / "shared" / "BCCD_Dataset" / "BCCD"
files = [root / "JPEGImages" / f"{s}.jpg" for s in (root / "ImageSets/Main/test.txt").read_text().split()]
det = Detector(Path(sys.argv[1]), quiet=True)
tot = {k: np.zeros(3, int) for k in ("one by one", "default tiles", "640 px tiles", "320 px tiles",
                                     "one pass: canvas", "one pass: photos")}
for i in range(0, 24, 2):
    canvas, placed = paste_canvas(files[i:i + 2], 1408, 576, seed=i, gaps=(40, 41))
    assert len(placed) == 2
    src = PhotoSource(Path("pair.png"), canvas)
    tot["one by one"] += sum(detect_image(open_image(f), det, progress=False)[0].counts(3) for f, _, _ in placed)
    for key, tile in (("default tiles", None), ("640 px tiles", 640), ("320 px tiles", 320)):
        tot[key] += detect_image(src, det, tile=tile, progress=False)[0].counts(3)
    tot["one pass: canvas"] += det([canvas], native=True)[0].counts(3)
    tot["one pass: photos"] += sum(det([open_image(f).read(0, 0, 640, 480)], native=True)[0].counts(3) for f, _, _ in placed)
for key, counts in tot.items():
    print(f"{key:18s} RBC / WBC / platelets {counts.tolist()}")
