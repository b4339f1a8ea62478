"""The page against the CLI, whole processes on one machine in one run: a photo's time, a slide's peak memory.

    .venv/bin/python benchmarks/serve_speed.py [--side 10000] [--repeats 3]

- photo: `bccd-yolo count PHOTO --json` as a fresh process (best of --repeats), against the page's answer to
  POST /api/count for the same photo on a running `bccd-yolo serve`: its first count (the model loads then) and
  the best later one. Target (issue #30): the page within 1 s of the CLI. Then the server's RSS after each of
  five counts of the same 24 test photos: it must not grow from count to count.
- slide: a --side px PNG slide of BCCD test photos (benchmarks/slide_memory.py's), counted by `bccd-yolo count
  --out` and by the page (POST /api/jobs, polled as the page does; its Deep Zoom tiles included), on a fresh
  server and on the one that counted the photos; peak RSS of each process (the CLI's own getrusage; the
  server's VmHWM), the fresh server's largest RSS in each state of the job, and what importing FastAPI and
  uvicorn costs a fresh Python. Target: the server's no higher than the CLI's.
Writes benchmarks/results/serve_speed.json with the CPU's model name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slide_memory import png_slide  # noqa: E402
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


def folder_rss(base: str, pid: int, photos: list[Path], times: int = 5) -> list[int]:
    """The server's RSS (MB) after each of `times` counts of the same photos in one request: a server left
    running at the bench must not grow with every count."""
    out = []
    for _ in range(times):
        files = [("files", (p.name, p.read_bytes())) for p in photos]
        httpx.post(base + "/api/count", files=files, timeout=600).raise_for_status()
        out.append(round(memory_mb(pid, "VmRSS")))
    return out


def page_job(base: str, path: Path, pid: int | None = None, stages: dict[str, float] | None = None) -> tuple[float, dict]:
    """The job's seconds and last status; with `pid` and `stages`, the server's largest RSS (MB, sampled every
    50 ms) in each state the job was seen in (upload, queued, counting, zoom, done): where its peak comes from."""
    start = time.perf_counter()
    seen = {"state": "upload"}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            with contextlib.suppress(OSError, StopIteration):
                mb = memory_mb(pid, "VmRSS") if pid else 0.0
                if stages is not None:
                    stages[seen["state"]] = round(max(stages.get(seen["state"], 0.0), mb))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with path.open("rb") as f:
            job = httpx.post(base + "/api/jobs", files=[("files", (path.name, f))], timeout=600).json()
        while job["state"] not in ("done", "failed"):
            seen["state"] = job["state"]
            time.sleep(0.3)
            job = httpx.get(f"{base}/api/jobs/{job['id']}", timeout=60).json()
    finally:
        sampling.set()
        sampler.join()
    return time.perf_counter() - start, job


def import_mb(modules: str) -> float:
    """RSS (MB) a fresh Python holds after importing `modules`, less a bare one's: what a server framework costs."""
    code = "import {}\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
    kb = [int(subprocess.run([sys.executable, "-c", code.format(m)], capture_output=True, text=True, check=True).stdout)
          for m in ("sys", modules)]
    return (kb[1] - kb[0]) / 1024


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
        slide = png_slide(Path(tmp), args.images, args.side)
        fresh, base = serve()
        try:
            stages: dict[str, float] = {}
            page_job(base, slide, fresh.pid, stages)
            out["slide"]["page_fresh_peak_mb"] = round(memory_mb(fresh.pid))
            out["slide"]["page_fresh_rss_by_state_mb"] = stages
            out["slide"]["framework_import_mb"] = round(import_mb("fastapi, uvicorn"), 1)
        finally:
            fresh.terminate()
            fresh.wait(30)
        server, base = serve()
        try:
            out["photo"]["page_first_seconds"] = round(page_count(base, PHOTO), 3)
            out["photo"]["page_seconds"] = round(min(page_count(base, PHOTO) for _ in range(args.repeats)), 3)
            out["photo"]["rss_after_each_folder_mb"] = folder_rss(base, server.pid, sorted(args.images.glob("*.jpg"))[:24])
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
    print(f"server RSS after each of five counts of 24 photos: {p['rss_after_each_folder_mb']} MB")
    print(f"{args.side} px slide: CLI {s['cli_seconds']} s, peak {s['cli_peak_mb']} MB, {s['cli_cells']} cells; "
          f"page {s['page_seconds']} s (Deep Zoom tiles included), server peak {s['page_peak_mb']} MB after the photos, "
          f"{s['page_fresh_peak_mb']} MB fresh, {s['page_cells']} cells")
    print(f"fresh server's largest RSS by job state: {s['page_fresh_rss_by_state_mb']} MB; importing FastAPI and uvicorn: "
          f"+{s['framework_import_mb']} MB")
    dest = ROOT / "benchmarks" / "results" / "serve_speed.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {dest}")


if __name__ == "__main__":
    main()
