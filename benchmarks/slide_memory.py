"""Count a 20,000 x 20,000 slide (tiled TIFF, or PNG) and report time, throughput and peak memory.

Run by hand:  .venv/bin/python benchmarks/slide_memory.py [--side 20000] [--format tif|png] [--weights PT]
The slide is BCCD test photos laid in a grid with gaps, written tile by tile (never whole in
memory; the PNG is streamed from that TIFF by libvips). `bccd-yolo count` then runs in a child
process, whose peak RSS is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

TILE = 512


def write_slide(path: Path, photos: list[np.ndarray], side: int, gap: int = 40) -> int:
    """Photo k sits at (col * (640 + gap), row * (480 + gap)); returns how many were placed."""
    ph, pw = photos[0].shape[:2]
    cols, rows = side // (pw + gap), side // (ph + gap)

    def tiles():
        for ty in range(0, side, TILE):
            for tx in range(0, side, TILE):
                out = np.full((TILE, TILE, 3), 228, np.uint8)
                for r in range(ty // (ph + gap), min(rows, (ty + TILE) // (ph + gap) + 1)):
                    for c in range(tx // (pw + gap), min(cols, (tx + TILE) // (pw + gap) + 1)):
                        x0, y0 = c * (pw + gap), r * (ph + gap)
                        ix0, iy0 = max(tx, x0), max(ty, y0)
                        ix1, iy1 = min(tx + TILE, x0 + pw), min(ty + TILE, y0 + ph)
                        if ix1 > ix0 and iy1 > iy0:
                            photo = photos[(r * cols + c) % len(photos)]
                            out[iy0 - ty : iy1 - ty, ix0 - tx : ix1 - tx] = photo[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
                yield out

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(TILE, TILE), photometric="rgb",
                     compression="zlib", bigtiff=True)
    return rows * cols


def png_slide(folder: Path, images: Path, side: int) -> Path:
    """folder/slide.png: the photos of `images` laid out by write_slide, streamed from a TIFF by libvips."""
    import pyvips

    photos = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(images.glob("*.jpg"))]
    tif, png = folder / "slide.tif", folder / "slide.png"
    write_slide(tif, photos, side)
    pyvips.Image.new_from_file(str(tif), access="sequential").pngsave(str(png), compression=1)
    tif.unlink()
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--images", type=Path, default=Path("datasets/bccd/images/test"))
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--format", choices=("tif", "png"), default="tif")
    ap.add_argument("--count-args", default="", help="more count options, e.g. '--no-differential --mpp 0.0754'")
    args = ap.parse_args()
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(args.images.glob("*.jpg"))]
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "slide.tif"
        start = time.perf_counter()
        placed = write_slide(slide, photos, args.side)
        if args.format == "png":
            import pyvips

            png = Path(tmp) / "slide.png"
            pyvips.Image.new_from_file(str(slide), access="sequential").pngsave(str(png), compression=1)
            slide.unlink()
            slide = png
        written = time.perf_counter() - start
        cmd = [sys.executable, "-m", "bccd_yolo", "count", str(slide), "--quiet", "--backend", args.backend,
               "--json", str(Path(tmp) / "c.json"), "--out", str(Path(tmp) / "ov")]
        if args.weights:
            cmd += ["--weights", args.weights]
        cmd += args.count_args.split()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = json.loads((Path(tmp) / "c.json").read_text())["images"][0]
    mp = args.side**2 / 1e6
    print(f"\n{args.format} slide {args.side}x{args.side} ({mp:.0f} MP, {mp * 3:.0f} MB decoded), {placed} BCCD photos, "
          f"written in {written:.0f} s; counted with --backend {args.backend} {args.count_args}, overlay and preview "
          "included")
    print(f"{'tiles':>6} {'cells':>7} {'seconds':>8} {'MP/s':>6} {'peak RSS MB':>12}")
    print(f"{report['tiles']:>6} {sum(report['counts'].values()):>7} {seconds:>8.0f} {mp / seconds:>6.2f} {peak_mb:>12.0f}")


if __name__ == "__main__":
    main()
