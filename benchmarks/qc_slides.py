"""Does the qc verdict work on images too large to read whole (slides, stitched fields)? Measured on val fields.

    python benchmarks/qc_slides.py [--name shipped] [--megapixels 6]

Each "slide" is a mosaic of one source's val fields (BCCD's photos with complete labels, PBC's and Raabin's val
fields; each field in at most one mosaic, two mosaics per source) with a strip of bare glass one field wide along
its right side, as at a smear's edge, saved as PNG (over counting.QC_WHOLE_PIXELS, so counted in tiles and judged
on windows). Each mosaic is counted as it is and changed as qc_check.py changes fields (hue turned, a pale
grey-blue stain, lit unevenly) by `count_images` at count's defaults. A mosaic is "wrong" when its red-cell count is
off by more than 25 % of its fields' labelled red cells. Prints, per variant and source, the mosaics flagged among
the wrong and among the rest, and writes benchmarks/results/qc/slides_<name>.json.

    python benchmarks/qc_slides.py --sheet      # -> docs/qc_slides.jpg

draws BCCD's first mosaic as it is and pale grey-blue, with the windows its stain was measured on, its counts and
its verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
VARIANTS = ("as is", "hue 60", "hue 150", "pale blue-grey", "uneven light")


def mosaic(fields: list[np.ndarray]) -> np.ndarray:
    """Fields side by side (each resized to the first's size) in a near-square grid, then a glass strip one
    field wide."""
    import cv2

    h, w = fields[0].shape[:2]
    cols = math.ceil(math.sqrt(len(fields) * h / w))
    rows = math.ceil(len(fields) / cols)
    out = np.full((rows * h, (cols + 1) * w, 3), (238, 238, 236), np.float32)
    out += np.random.default_rng(0).normal(0, 2, out.shape)
    for i, f in enumerate(fields):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = cv2.resize(f, (w, h)) if f.shape[:2] != (h, w) else f
    return np.clip(out, 0, 255).astype(np.uint8)


def labelled_mosaic(fields: list, det, megapixels: float, m: int) -> tuple[np.ndarray, int, int]:
    """The `m`th mosaic of enough `fields` for `megapixels`, its labelled red cells and how many fields it holds."""
    import cv2

    n = math.ceil(megapixels * 1e6 / (fields[0].width * fields[0].height))
    chosen = fields[m * n : (m + 1) * n]
    rgb = mosaic([cv2.cvtColor(cv2.imread(str(f.path)), cv2.COLOR_BGR2RGB) for f in chosen])
    return rgb, int(sum(f.truth.counts(len(det.names))[det.names.index("RBC")] for f in chosen)), len(chosen)


def sheet(path: Path, det, fields: list, megapixels: float, width: int = 640) -> None:
    """BCCD's first mosaic as it is and pale, each with its qc windows, counts and verdict, side by side."""
    import textwrap

    import cv2
    from PIL import Image, ImageDraw
    from qc_check import vary
    from qc_sheet import said

    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images, plan_image, qc_windows

    rgb, true, _ = labelled_mosaic(fields, det, megapixels, 0)
    scale = width / rgb.shape[1]
    height = round(rgb.shape[0] * scale)
    out = Image.new("RGB", (2 * width + 10, height + 80), "white")
    draw = ImageDraw.Draw(out)
    with tempfile.TemporaryDirectory() as tmp:
        for col, variant in enumerate(("as is", "pale blue-grey")):
            image = vary(rgb, variant)[0]
            file = Path(tmp) / f"bccd__{variant.replace(' ', '_')}.png"
            cv2.imwrite(str(file), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            (c,), _ = count_images([file], det, progress=False)
            src = open_image(file)
            windows = qc_windows(plan_image(src, det).tiles)
            src.close()
            x0 = col * (width + 10)
            out.paste(Image.fromarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)), (x0, 0))
            for x, y, w, h in windows:
                draw.rectangle([x0 + x * scale, y * scale, x0 + (x + w) * scale, y * scale + h * scale], outline=(0, 90, 255), width=2)
            caption = (f"BCCD val mosaic, {variant} ({c.width} x {c.height} px, {c.tiles} tiles): RBC {c.counts['RBC']} of "
                       f"{true} labelled; qc: {said(c.qc)}. Blue: the {len(windows)} windows its stain was measured on")
            draw.multiline_text((x0 + 4, height + 6), "\n".join(textwrap.wrap(caption, 100)), fill="black")
    out.save(path, quality=85)
    print(f"-> {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    p.add_argument("--name", default="shipped")
    p.add_argument("--megapixels", type=float, default=6.0, help="fields per mosaic: enough for this many")
    p.add_argument("--sheet", action="store_true", help="only draw docs/qc_slides.jpg")
    args = p.parse_args()

    import cv2
    from per_source import load_sources
    from qc_check import vary

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector

    det = Detector(args.weights, quiet=True)
    if args.sheet:
        return sheet(ROOT / "docs" / "qc_slides.jpg", det, load_sources("val", det.names, ["bccd"])["bccd"], args.megapixels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source, fields in load_sources("val", det.names, ["bccd", "pbc", "raabin"]).items():
            for m in range(2):
                rgb, true, n_fields = labelled_mosaic(fields, det, args.megapixels, m)
                for variant in VARIANTS:
                    path = Path(tmp) / f"{source}-{m}__{variant.replace(' ', '_')}.png"
                    cv2.imwrite(str(path), cv2.cvtColor(vary(rgb, variant)[0], cv2.COLOR_RGB2BGR))
                    start = time.perf_counter()
                    (c,), errors = count_images([path], det, progress=False)
                    seconds = time.perf_counter() - start
                    assert not errors, errors[0]
                    rbc = c.counts["RBC"]
                    rows.append({"variant": variant, "source": source, "mosaic": path.name, "fields": n_fields,
                                 "width": c.width, "height": c.height, "tiles": c.tiles, "true": true, "counted": rbc,
                                 "wrong": abs(rbc - true) > 0.25 * max(1, true), "qc": c.qc, "notes": c.notes,
                                 "mpp_source": c.mpp_source, "seconds": round(seconds, 2)})
                    print(json.dumps(rows[-1]), flush=True)
    print("| variant | source | mosaics | wrong | wrong flagged | right flagged |\n|---|---|---|---|---|---|")
    for variant in VARIANTS:
        for source in ("bccd", "pbc", "raabin"):
            sel = [r for r in rows if r["variant"] == variant and r["source"] == source]
            wrong = [r for r in sel if r["wrong"]]
            print(f"| {variant} | {source} | {len(sel)} | {len(wrong)} | {sum(bool(r['qc']) for r in wrong)} | "
                  f"{sum(bool(r['qc']) for r in sel if not r['wrong'])} |")
    summary = {"wrong": sum(r["wrong"] for r in rows), "wrong_flagged": sum(bool(r["qc"]) for r in rows if r["wrong"]),
               "right": sum(not r["wrong"] for r in rows), "right_flagged": sum(bool(r["qc"]) for r in rows if not r["wrong"]),
               "as_is_flagged": sum(bool(r["qc"]) for r in rows if r["variant"] == "as is")}
    print(summary)
    out = ROOT / "benchmarks" / "results" / "qc" / f"slides_{args.name}.json"
    out.write_text(json.dumps({"summary": summary, "mosaics": rows}, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
