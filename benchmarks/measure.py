"""What the benchmark scripts share: a fresh process timed with its peak memory sampled (psutil), and a result
written under benchmarks/results/ with the CPU it came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil


def run_sampled(args: list[str], role: Callable[[psutil.Process], str] | None = None,
                every: float = 0.1) -> tuple[float, dict[str, float], str]:
    """Run `python ARGS` as a fresh process: wall seconds, peak RSS in MB and its output. Peaks: "total" (the
    process and its children at once) and, with `role`, the largest single process of each role.
    (getrusage cannot be used: a forked child's maximum RSS starts at its parent's.)"""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    root = psutil.Process(proc.pid)
    peaks: dict[str, float] = {"total": 0.0}
    while proc.poll() is None:
        total = 0.0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in procs:
            try:
                rss = p.memory_info().rss / 2**20
                name = role(p) if role else None
            except psutil.Error:
                continue
            total += rss
            if name:
                peaks[name] = max(peaks.get(name, 0.0), rss)
        peaks["total"] = max(peaks["total"], total)
        time.sleep(every)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(err[-3000:])
    return time.perf_counter() - start, peaks, out


def save_result(out: dict, name: str) -> Path:
    """`out` (with its "cpu", startup_speed.cpu()) as benchmarks/results/NAME.json; the CPU and the path printed."""
    print(f"CPU: {out['cpu']['model']}, {out['cpu']['cores']} cores, {' '.join(out['cpu']['flags'])}")
    dest = Path(__file__).resolve().parent / "results" / f"{name}.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {dest}")
    return dest
