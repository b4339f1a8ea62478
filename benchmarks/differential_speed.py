"""What the white-cell differential costs a count: whole processes, `bccd-yolo count FILE --quiet` with and
without `--no-differential`, alternated, median of --repeat runs each.

    python benchmarks/differential_speed.py [--repeat 7]

Inputs: a BCCD test photo, a PBC val field, and a blank 640 x 480 field (no white cells: the classifier is never
loaded). Target (issue #32): at most 15 % more time with the differential on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def seconds(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bccd_yolo", "count", *args, "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        blank = Path(tmp) / "glass.png"
        Image.fromarray(np.full((480, 640, 3), 235, np.uint8)).save(blank)
        inputs = {"BCCD photo": SHARED / "BCCD_Dataset" / "BCCD" / "JPEGImages" / "BloodImage_00007.jpg",
                  "PBC field": sorted((SHARED / "txl-pbc-other" / "pbc" / "images" / "val").iterdir())[0],
                  "no white cells": blank}
        seconds([str(inputs["BCCD photo"])])  # exports made, caches warm
        out = {}
        for name, path in inputs.items():
            on, off = [], []
            for _ in range(a.repeat):
                on.append(seconds([str(path)]))
                off.append(seconds([str(path), "--no-differential"]))
            m_on, m_off = statistics.median(on), statistics.median(off)
            out[name] = {"with": round(m_on, 3), "without": round(m_off, 3), "extra": round(m_on / m_off - 1, 3)}
            print(f"{name}: {m_on:.3f} s with the differential, {m_off:.3f} s without: {m_on / m_off - 1:+.1%}", flush=True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from startup_speed import cpu  # type: ignore[import-not-found]

    record = {"cpu": cpu(), "repeat": a.repeat, "seconds": out}
    (ROOT / "benchmarks" / "results" / "differential_speed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
