"""A picture of `count --geojson` output as a viewer shows it: the detections' GeoJSON drawn over the slide.

    python benchmarks/geojson_view.py [--out docs/geojson_view.png]

Counts a tiled TIFF canvas of BCCD test photos (2,400 x 1,800 px) with `--geojson` and `--out`, draws each
GeoJSON polygon (in its classification colour) as SVG over the slide preview in an HTML page, and screenshots
that page with headless Chromium: what QuPath shows after File > Import objects, without QuPath.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "geojson_view.png")
    args = ap.parse_args()
    from bccd_yolo.measure.synthetic import paste_canvas

    files = sorted((ROOT / "datasets" / "bccd" / "images" / "test").glob("*.jpg"))[:10]
    canvas, _ = paste_canvas(files, 2400, 1800, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tifffile.imwrite(tmp_path / "slide.tif", canvas, tile=(256, 256), photometric="rgb", compression="zlib")
        subprocess.run([sys.executable, "-m", "bccd_yolo", "count", str(tmp_path / "slide.tif"), "--quiet", "--out",
                        str(tmp_path / "ov"), "--geojson", str(tmp_path / "slide.geojson")], check=True)
        fc = json.loads((tmp_path / "slide.geojson").read_text())
        width = 1200
        scale = width / canvas.shape[1]
        Image.fromarray(canvas).resize((width, round(canvas.shape[0] * scale))).save(tmp_path / "slide.png")
        polys = []
        for f in fc["features"]:
            ring = f["geometry"]["coordinates"][0]
            r, g, b = f["properties"]["classification"]["color"]
            pts = " ".join(f"{x * scale:.1f},{y * scale:.1f}" for x, y in ring)
            polys.append(f"<polygon points='{pts}' fill='none' stroke='rgb({r},{g},{b})' stroke-width='1.5'/>")
        height = round(canvas.shape[0] * scale)
        counts: dict[str, int] = {}
        for f in fc["features"]:
            counts[f["properties"]["classification"]["name"]] = counts.get(f["properties"]["classification"]["name"], 0) + 1
        html = (f"<html><body style='margin:0;font-family:sans-serif'><div style='padding:6px'>slide.geojson over the "
                f"slide: {len(fc['features'])} detection objects ({', '.join(f'{k} {v}' for k, v in counts.items())})"
                f"</div><div style='position:relative;width:{width}px;height:{height}px'>"
                f"<img src='slide.png' style='position:absolute;left:0;top:0'>"
                f"<svg width='{width}' height='{height}' style='position:absolute;left:0;top:0'>{''.join(polys)}</svg>"
                "</div></body></html>")
        (tmp_path / "view.html").write_text(html)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            sys.exit("chromium is needed for the screenshot (apt-get install chromium)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={args.out.resolve()}",
                        f"--window-size={width},{height + 40}", f"--user-data-dir={tmp_path / 'profile'}",
                        (tmp_path / "view.html").as_uri()], check=True, capture_output=True)
    print(f"{len(fc['features'])} detections; screenshot -> {args.out}")
    assert np.asarray(Image.open(args.out)).std() > 10


if __name__ == "__main__":
    main()
