"""Local vs Ray engine: the 72 BCCD test photos plus a 10,000 x 10,000 slide, counted as users run them.

    .venv/bin/python benchmarks/engine_scale.py [--side 10000] [--backend openvino] [--workers 2]

Each engine runs as a fresh `bccd-yolo count` process on the same inputs (72 photos and one slide of pasted
test photos covering its whole area, tiled TIFF). Reported: wall time, photos/s and tiles/s, peak RSS of the
driver process and, for Ray, of the largest worker (sampled with psutil while it runs), and whether the two
engines' JSON counts agree. Writes benchmarks/results/engine_scale.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import psutil
import tifffile
from measure import run_sampled  # benchmarks/measure.py

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD"


def role(p) -> str:
    """The driver (the count process) or a Ray worker holding a model."""
    return "worker" if "TileWorker" in " ".join(p.cmdline()) else ("driver" if "bccd_yolo" in " ".join(p.cmdline()) else "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=10_000)
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="count --batch for both engines (default: count's)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engine_scale.json")
    args = ap.parse_args()
    from bccd_yolo.measure.synthetic import paste_canvas

    files = [SHARED / "JPEGImages" / f"{s}.jpg" for s in (SHARED / "ImageSets" / "Main" / "test.txt").read_text().split()]
    res: dict = {"side": args.side, "backend": args.backend, "batch": args.batch, "photos": len(files)}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        for f in files:
            (inputs / f.name).symlink_to(f)
        canvas, placed = paste_canvas(files * (args.side * args.side // (640 * 480 * len(files)) + 2), args.side, args.side, seed=0, gaps=(7, 30))
        tifffile.imwrite(inputs / "slide.tif", canvas, tile=(512, 512), photometric="rgb", compression="zlib")
        del canvas
        reports = {}
        for engine in ("local", "ray"):
            out = Path(tmp) / f"{engine}.json"
            cmd = ["-m", "bccd_yolo", "count", str(inputs), "--backend", args.backend, "--quiet",
                   "--json", str(out), "--engine", engine]
            if engine == "ray" and args.workers:
                cmd += ["--workers", str(args.workers)]
            if args.batch:
                cmd += ["--batch", str(args.batch)]
            seconds, peaks, _ = run_sampled(cmd, role, every=0.2)
            peaks.pop("total")
            report = json.loads(out.read_text())
            reports[engine] = report
            tiles = sum(i["tiles"] for i in report["images"])
            res[engine] = {"seconds": round(seconds, 1), "tiles": tiles, "tiles_per_s": round(tiles / seconds, 2),
                           "peak_mb": {k: round(v) for k, v in peaks.items()}, "total": report["total"]}
            print(f"{engine}: {seconds:.1f} s, {tiles} tiles, peaks {res[engine]['peak_mb']}", flush=True)
        same = all(a["counts"] == b["counts"] for a, b in zip(reports["local"]["images"], reports["ray"]["images"]))
        res["identical_counts"] = same and len(reports["local"]["images"]) == len(reports["ray"]["images"])
    print(f"\n{len(files)} photos + one {args.side:,} x {args.side:,} tiled TIFF slide, backend {args.backend}, "
          f"{psutil.cpu_count()} CPUs")
    print(f"{'engine':<8} {'seconds':>8} {'tiles/s':>8} {'driver MB':>10} {'worker MB':>10}  total counts")
    for engine in ("local", "ray"):
        r = res[engine]
        print(f"{engine:<8} {r['seconds']:>8.1f} {r['tiles_per_s']:>8.2f} {r['peak_mb'].get('driver', 0):>10} "
              f"{r['peak_mb'].get('worker', 0):>10}  {r['total']}")
    print(f"identical counts per image: {res['identical_counts']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
