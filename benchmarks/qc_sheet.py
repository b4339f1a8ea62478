"""A picture of the qc verdict on photos as they are often taken: a val field of each source beside bare glass, in
a dark surround and lit unevenly, each counted by `count_images` at count's defaults, captioned with its counts
and verdict now and the verdict before the qc learnt these layouts (results/qc/edge-before.json).

    cd benchmarks && python qc_sheet.py          # -> docs/qc_layouts.jpg
"""

from __future__ import annotations

import json
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("on glass", "dark surround", "uneven light")
CELL = (330, 330)  # px per picture in the sheet


def said(qc: list[str]) -> str:
    """A verdict's reasons, named only."""
    return "; ".join(q.split(":")[0] for q in qc) or "nothing"


def main() -> None:
    import cv2
    from per_source import load_sources
    from PIL import Image, ImageDraw
    from qc_check import vary

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector

    det = Detector(ROOT / "weights" / "bccd_yolov3_tiny.pt", quiet=True)
    before = {r["field"]: r["qc"] for r in json.loads((ROOT / "benchmarks/results/qc/edge-before.json").read_text())["fields"]}
    sources = load_sources("val", det.names, ["bccd", "pbc", "raabin"])
    sheet = Image.new("RGB", (CELL[0] * len(LAYOUTS), (CELL[1] + 90) * len(sources)), "white")
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for row, (source, fields) in enumerate(sources.items()):
            f = fields[0]
            rgb = cv2.cvtColor(cv2.imread(str(f.path)), cv2.COLOR_BGR2RGB)
            for col, layout in enumerate(LAYOUTS):
                name = f"{source}__{layout.replace(' ', '_')}__{f.path.stem}.png"
                out, _ = vary(rgb, layout)
                cv2.imwrite(str(Path(tmp) / name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
                (c,), _ = count_images([Path(tmp) / name], det, progress=False)
                thumb = Image.fromarray(out)
                thumb.thumbnail(CELL)
                x, y = col * CELL[0], row * (CELL[1] + 90)
                sheet.paste(thumb, (x, y))
                caption = (f"{source}, {layout}: RBC {c.counts['RBC']} (labelled "
                           f"{int(f.truth.counts(len(det.names))[det.names.index('RBC')])}); qc now: {said(c.qc)}; "
                           f"before: {said(before.get(name, []))}")
                draw.multiline_text((x + 4, y + CELL[1] + 4), "\n".join(textwrap.wrap(caption, 52)), fill="black")
    out_path = ROOT / "docs" / "qc_layouts.jpg"
    sheet.save(out_path, quality=85)
    print(f"-> {out_path}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
