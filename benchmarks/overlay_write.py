"""Writing a slide's overlay (`count --out`): seconds and file sizes at the shipped settings and zlib's defaults.

    .venv/bin/python benchmarks/overlay_write.py [--side 10000] [--repeats 2]

The slide is serve_speed.py's (BCCD test photos in a grid, PNG), counted once in-process with the shipped model;
then `overlay.write_slide_overlay` draws its cells into a tiled TIFF and a preview PNG, once with overlay.py's
TIFF_COMPRESSION and PREVIEW_PNG_LEVEL and once with zlib's default level and no predictor (the settings before),
alternating, best of --repeats. Both must give the same pixels (the overlay is lossless either way), and libvips
must read the TIFF as tifffile does. Writes benchmarks/results/overlay_write.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import save_result  # noqa: E402
from serve_speed import ROOT  # noqa: E402
from slide_memory import png_slide  # noqa: E402
from startup_speed import cpu  # noqa: E402

SETTINGS = {"shipped": None, "zlib default": ({"compression": "zlib"}, 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--images", type=Path, default=ROOT / "datasets" / "bccd" / "images" / "test")
    args = ap.parse_args()
    import numpy as np
    import pyvips
    import tifffile
    from PIL import Image

    import bccd_yolo.count.overlay as overlay
    from bccd_yolo.core.images import open_image
    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector, default_weights

    shipped = (overlay.TIFF_COMPRESSION, overlay.PREVIEW_PNG_LEVEL)
    out: dict = {"cpu": cpu(), "side": args.side, "shipped": {"tiff": shipped[0], "png_level": shipped[1]}, "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        slide = png_slide(Path(tmp), args.images, args.side)
        detector = Detector(default_weights(), quiet=True)
        (result,), _ = count_images([slide], detector, progress=False)
        src = open_image(slide)
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, setting in SETTINGS.items():
                overlay.TIFF_COMPRESSION, overlay.PREVIEW_PNG_LEVEL = setting or shipped
                tif, png = Path(tmp) / f"{name}.tif", Path(tmp) / f"{name}.png"
                start = time.perf_counter()
                overlay.write_slide_overlay(src, result.detections, detector.names, result.counts, tif, png)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        overlay.TIFF_COMPRESSION, overlay.PREVIEW_PNG_LEVEL = shipped
        src.close()
        pixels = {n: tifffile.imread(Path(tmp) / f"{n}.tif") for n in SETTINGS}
        previews = {n: np.asarray(Image.open(Path(tmp) / f"{n}.png")) for n in SETTINGS}
        vips = pyvips.Image.new_from_file(str(Path(tmp) / "shipped.tif")).numpy()
        out["same_pixels"] = bool(np.array_equal(*pixels.values()) and np.array_equal(*previews.values()))
        out["libvips_reads_it"] = bool(np.array_equal(vips, pixels["shipped"]))
        for name in SETTINGS:
            out["arms"][name] = {"seconds": round(best[name], 2),
                                 "tiff_mb": round((Path(tmp) / f"{name}.tif").stat().st_size / 1e6, 1),
                                 "png_mb": round((Path(tmp) / f"{name}.png").stat().st_size / 1e6, 1)}
            a = out["arms"][name]
            print(f"{name}: {a['seconds']} s, TIFF {a['tiff_mb']} MB, preview {a['png_mb']} MB", flush=True)
    print(f"same pixels: {out['same_pixels']}; libvips reads the TIFF as tifffile does: {out['libvips_reads_it']}")
    save_result(out, "overlay_write")


if __name__ == "__main__":
    main()
