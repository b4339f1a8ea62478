"""Canvas (seed 1 and 3) vs one-by-one counts with the canvas background at 230, 114 and 0.

    python bg.py WEIGHTS...
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
for w in sys.argv[1:]:
    det = Detector(Path(w), quiet=True)
    for seed in (1, 3):
        for bg in (230, 114, 0):
            canvas, placed = paste_canvas(files[seed::2] + files, 3400, 2400, seed=seed, background=bg)
            one = sum(detect_image(open_image(f), det, progress=False)[0].counts(3) for f, _, _ in placed)
            d, _ = detect_image(PhotoSource(Path("c.png"), canvas), det, progress=False)
            c = d.counts(3)
            # where the canvas misses: cells near frames
            print(Path(w).stem, seed, bg, "canvas", c, "one", one, "rel", np.round((c - one) / one, 3), flush=True)
