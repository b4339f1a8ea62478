"""A slide's tiles per forward pass (`count --batch`): seconds and peak memory of whole `bccd-yolo count` processes.

    .venv/bin/python benchmarks/batch_memory.py [--side 10000] [--batches 1,2,4,8] [--backends openvino,onnx] [--repeats 3]

The slide is serve_speed.py's (BCCD test photos in a grid, PNG). Each arm is one fresh process per repeat
(best seconds; every run's peak RSS, from the process's own getrusage); the counts of every arm must equal the first
arm's (a batch changes how tiles travel, never what is found). Photos are one view each, so --batch does not
touch them. Writes benchmarks/results/batch_memory.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import save_result  # noqa: E402
from serve_speed import ROOT, cli  # noqa: E402
from slide_memory import png_slide  # noqa: E402
from startup_speed import cpu  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=10000)
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--backends", default="openvino,onnx")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=Path, default=ROOT / "datasets" / "bccd" / "images" / "test")
    args = ap.parse_args()
    out: dict = {"cpu": cpu(), "side": args.side, "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        slide = png_slide(Path(tmp), args.images, args.side)
        reference: dict[str, dict] = {}  # each backend's counts at its first batch
        for backend in args.backends.split(","):
            for batch in [int(b) for b in args.batches.split(",")]:
                js = Path(tmp) / f"{backend}{batch}.json"
                runs = [cli(["count", str(slide), "--quiet", "--backend", backend, "--batch", str(batch), "--json",
                             str(js)]) for _ in range(args.repeats)]
                counts = json.loads(js.read_text())["images"][0]["counts"]
                same = reference.setdefault(backend, counts) == counts
                arm = {"seconds": round(min(s for s, _ in runs), 1), "peak_mb": [round(m) for _, m in runs],
                       "counts": counts, "same_counts_as_first_batch": same}
                out["arms"][f"{backend} batch {batch}"] = arm
                print(f"{backend} batch {batch}: {arm['seconds']} s, peak {' / '.join(map(str, arm['peak_mb']))} MB, {counts}"
                      f"{'' if same else '  COUNTS DIFFER'}", flush=True)
    save_result(out, "batch_memory")


if __name__ == "__main__":
    main()
