"""The page against the CLI, whole processes on one machine in one run: a photo's time, a slide's peak memory.

    .venv/bin/python benchmarks/serve_speed.py [--side 10000] [--repeats 3]

- photo: `bccd-yolo count PHOTO --json` as a fresh process (best of --repeats), against the page's answer to
  POST /api/count for the same photo on a running `bccd-yolo serve`: its first count (the model loads then) and
  the best later one. Target (issue #30): the page within 1 s of the CLI.
- slide: a --side px PNG slide of BCCD test photos (benchmarks/slide_memory.py's), counted by `bccd-yolo count
  --out` and by the page (POST /api/jobs, polled as the page does; its Deep Zoom tiles included), on a fresh
  server and on the one that counted the photos; peak RSS of each process (the CLI's own getrusage; the
  server's VmHWM). Target: the server's no higher than the CLI's.
Writes benchmarks/results/serve_speed.json with the CPU's model name.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slide_memory import write_slide  # noqa: E402
from startup_speed import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD" / "JPEGImages" / "BloodImage_00007.jpg"
PEAK = ("import resource, runpy, sys\nsys.argv = ['bccd-yolo'] + sys.argv[1:]\ntry:\n"
        "    runpy.run_module('bccd_yolo', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def cli(args: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `bccd-yolo` process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    kb = next(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("PEAK_KB"))
    return seconds, kb / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident memory (VmHWM), or its resident memory now (VmRSS), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 1024


def serve() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bccd_yolo", "serve", "--port", str(port), "--max-upload-mb",
                               "2000"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(base + "/", timeout=1)
            return server, base
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


def page_count(base: str, path: Path) -> float:
    start = time.perf_counter()
    with path.open("rb") as f:
        r = httpx.post(base + "/api/count", files=[("files", (path.name, f))], timeout=600)
    r.raise_for_status()
    return time.perf_counter() - start


def page_job(base: str, path: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    with path.open("rb") as f:
        job = httpx.post(base + "/api/jobs", files=[("files", (path.name, f))], timeout=600).json()
    while job["state"] not in ("done", "failed"):
        time.sleep(0.3)
        job = httpx.get(f"{base}/api/jobs/{job['id']}", timeout=60).json()
    return time.perf_counter() - start, job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=Path, default=ROOT / "datasets" / "bccd" / "images" / "test")
    args = ap.parse_args()
    out: dict = {"cpu": cpu(), "photo": {}, "slide": {"side": args.side}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [cli(["count", str(PHOTO), "--quiet", "--json", f"{tmp}/c.json"]) for _ in range(args.repeats)]
        out["photo"]["cli_seconds"] = round(min(s for s, _ in runs), 3)
        photos = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(args.images.glob("*.jpg"))]
        tif = Path(tmp) / "slide.tif"
        write_slide(tif, photos, args.side)
        import pyvips

        slide = Path(tmp) / "slide.png"
        pyvips.Image.new_from_file(str(tif), access="sequential").pngsave(str(slide), compression=1)
        tif.unlink()
        fresh, base = serve()
        try:
            page_job(base, slide)
            out["slide"]["page_fresh_peak_mb"] = round(memory_mb(fresh.pid))
        finally:
            fresh.terminate()
            fresh.wait(30)
        server, base = serve()
        try:
            out["photo"]["page_first_seconds"] = round(page_count(base, PHOTO), 3)
            out["photo"]["page_seconds"] = round(min(page_count(base, PHOTO) for _ in range(args.repeats)), 3)
            seconds, job = page_job(base, slide)
            image = job["result"]["images"][0]
            out["slide"] |= {"page_seconds": round(seconds, 1), "page_peak_mb": round(memory_mb(server.pid)),
                             "page_rss_after_mb": round(memory_mb(server.pid, "VmRSS")),
                             "page_cells": sum(image["counts"].values()), "zoom_levels": (image["zoom"] or {}).get("levels")}
        finally:
            server.terminate()
            server.wait(30)
        seconds, peak = cli(["count", str(slide), "--quiet", "--out", f"{tmp}/ov", "--json", f"{tmp}/s.json"])
        cells = sum(json.loads(Path(f"{tmp}/s.json").read_text())["images"][0]["counts"].values())
        out["slide"] |= {"cli_seconds": round(seconds, 1), "cli_peak_mb": round(peak), "cli_cells": cells}
    p, s = out["photo"], out["slide"]
    print(f"CPU: {out['cpu']['model']}, {out['cpu']['cores']} cores, {' '.join(out['cpu']['flags'])}")
    print(f"photo: CLI {p['cli_seconds']:.2f} s (whole process); page {p['page_first_seconds']:.2f} s first "
          f"(model loads), {p['page_seconds']:.2f} s after; page - CLI {p['page_first_seconds'] - p['cli_seconds']:+.2f} s")
    print(f"{args.side} px slide: CLI {s['cli_seconds']} s, peak {s['cli_peak_mb']} MB, {s['cli_cells']} cells; "
          f"page {s['page_seconds']} s (Deep Zoom tiles included), server peak {s['page_peak_mb']} MB after the photos, "
          f"{s['page_fresh_peak_mb']} MB fresh, {s['page_cells']} cells")
    dest = ROOT / "benchmarks" / "results" / "serve_speed.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
