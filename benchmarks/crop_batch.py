"""White-cell crops per classifier pass: seconds and peak memory, per backend, in fresh processes.

    .venv/bin/python benchmarks/crop_batch.py [--batches 1,4,16] [--backends openvino,onnx] [--crops 282] [--repeats 3]

Each arm is a fresh Python that imports the runtime, loads the shipped classifier's export and classifies `--crops`
crops (random pixels: what is measured is the runtime's buffers, not the types; 282 is the white cells of
serve_speed.py's 10,000 px slide) at that batch. Reported: the best seconds of the pass, and the peak RSS it adds over
the loaded model (sampled every 5 ms). Every arm's probabilities must equal the first batch's to 1e-4 (a batch changes
how crops travel, never what they are called). Writes benchmarks/results/crop_batch.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import save_result  # noqa: E402
from startup_speed import cpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARM = r"""
import sys, threading, time
import numpy as np

def rss():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024

peak = [0.0]
def sample():
    while True:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)

threading.Thread(target=sample, daemon=True).start()
from bccd_yolo.count.differential import default_differential
backend, batch, n, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
model = default_differential(None, backend)
model.batch = batch
model._model = model._load()
crops = [c for c in np.random.default_rng(0).integers(0, 256, (n, model.imgsz, model.imgsz, 3), np.uint8)]
time.sleep(0.05)
loaded = peak[0] = rss()
start = time.perf_counter()
probs = model.probabilities(crops)
seconds = time.perf_counter() - start
time.sleep(0.05)
np.save(dest, probs)
print(seconds, peak[0] - loaded)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--backends", default="openvino,onnx")
    ap.add_argument("--crops", type=int, default=282)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import tempfile

    import numpy as np

    out: dict = {"cpu": cpu(), "crops": args.crops, "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            first = None
            for batch in [int(b) for b in args.batches.split(",")]:
                dest = f"{tmp}/{backend}{batch}.npy"
                runs = []
                for _ in range(args.repeats):
                    done = subprocess.run([sys.executable, "-c", ARM, backend, str(batch), str(args.crops), dest],
                                          check=True, capture_output=True, text=True, cwd=ROOT)
                    runs.append([float(v) for v in done.stdout.split()[-2:]])
                probs = np.load(dest)
                first = probs if first is None else first
                diff = float(np.abs(probs - first).max())
                arm = {"seconds": round(min(s for s, _ in runs), 3), "added_peak_mb": [round(m) for _, m in runs],
                       "max_prob_diff_vs_first_batch": diff}
                out["arms"][f"{backend} batch {batch}"] = arm
                print(f"{backend} batch {batch}: {arm['seconds']} s, +{' / '.join(map(str, arm['added_peak_mb']))} MB, "
                      f"probabilities differ by {diff:.1e}{'  DIFFER' if diff > 1e-4 else ''}", flush=True)
    save_result(out, "crop_batch")


if __name__ == "__main__":
    main()
