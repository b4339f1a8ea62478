"""Counting as users run it: whole processes, one after another, on one machine, in one run.

    .venv/bin/python benchmarks/startup_speed.py [--weights PT] [--repeats 3]

Arms (each a fresh process; best of --repeats):
  help     `bccd-yolo --help`
  photo    `bccd-yolo count BloodImage_00007.jpg --quiet` (the default backend)
  folder   `bccd-yolo count <72 BCCD test photos> --quiet` (defaults: --precision auto, OpenVINO's own choice:
           bf16 on CPUs with AVX512-BF16 or AMX; --mpp auto; qc; the white-cell differential)
  folder-fp32      the same with --precision fp32 (the default before)
  folder-no-auto   the same with --mpp 0.0754 --no-qc (the model's scale given: no scale estimate, no verdict)
  folder-detect-only  and --no-differential: the work plain Ultralytics does (detection only)
  folder-int8      the same with --precision int8, where an INT8 export exists (bccd-yolo export --precision int8)
  plain    Ultralytics `YOLO(weights).predict(<the same folder>)` with its defaults, as a script
The package's bytecode is compiled first, as `pip install` compiles it: a host that sets
PYTHONDONTWRITEBYTECODE would otherwise compile every changed module in every process.
Prints every ratio and writes benchmarks/results/startup_speed.json with the CPU's model name and the flags that
matter (AVX-512, VNNI, BF16, AMX): absolute figures differ several-fold between hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD"
FLAGS = ("avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags]}


def best(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "bccd-yolo")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bccd_yolo")], check=True)
    test_ids = (PHOTOS / "ImageSets" / "Main" / "test.txt").read_text().split()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "test"
        folder.mkdir()
        for i in test_ids:
            (folder / f"{i}.jpg").symlink_to(PHOTOS / "JPEGImages" / f"{i}.jpg")
        plain = ("import sys\nfrom ultralytics import YOLO\n"
                 "list(YOLO(sys.argv[1]).predict(sys.argv[2], verbose=False, stream=True))\n")
        arms = {
            "help": best([exe, "--help"], args.repeats),
            "photo": best([exe, "count", str(PHOTOS / "JPEGImages" / "BloodImage_00007.jpg"), "--weights", str(args.weights),
                           "--quiet"], args.repeats),
            "folder": best([exe, "count", str(folder), "--weights", str(args.weights), "--quiet"], args.repeats),
            "folder-fp32": best([exe, "count", str(folder), "--weights", str(args.weights), "--quiet", "--precision", "fp32"],
                                args.repeats),
            "folder-no-auto": best([exe, "count", str(folder), "--weights", str(args.weights), "--quiet", "--mpp", "0.0754",
                                    "--no-qc"], args.repeats),
            "folder-detect-only": best([exe, "count", str(folder), "--weights", str(args.weights), "--quiet", "--mpp",
                                        "0.0754", "--no-qc", "--no-differential"], args.repeats),
            "plain": best([sys.executable, "-c", plain, str(args.weights), str(folder)], args.repeats),
        }
        if list(args.weights.parent.glob(f"{args.weights.stem}.*.int8_openvino_model")):
            arms["folder-int8"] = best([exe, "count", str(folder), "--weights", str(args.weights), "--quiet", "--precision",
                                        "int8"], args.repeats)
    record = {"cpu": cpu(), "photos": len(test_ids), "seconds": arms,
              "vs_plain": {k: round(arms["plain"] / arms[k], 2) for k in arms if k.startswith("folder")}}
    out = ROOT / "benchmarks" / "results" / "startup_speed.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"CPU: {record['cpu']['model']}, {record['cpu']['cores']} cores, flags {', '.join(record['cpu']['flags'])}")
    print(f"--help {arms['help']:.2f} s; one photo {arms['photo']:.2f} s; plain Ultralytics predict on {len(test_ids)} "
          f"photos {arms['plain']:.2f} s")
    for k, r in record["vs_plain"].items():
        print(f"  {k}: {arms[k]:.2f} s, {r:.2f}x plain")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
