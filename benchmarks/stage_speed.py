"""Seconds per training iteration: from scratch vs stage 3 (backbone frozen), same model, size and batch.

Run by hand:  .venv/bin/python benchmarks/stage_speed.py [--models yolov3-tiny yolov3] [--imgsz 416] [--batch 8]
Both arms run in the same process, one after the other, on the converted BCCD train split.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bccd_yolo.train.finetune import FinetuneRequest, finetune


def timed_run(req: FinetuneRequest, iterations: int) -> tuple[float, dict]:
    """Median seconds per iteration over `iterations` batches (the first batch is warm-up and not counted)."""
    stamps: list[float] = []

    def on_batch_end(trainer):
        stamps.append(time.perf_counter())

    req.overrides = {**req.overrides, "val": False, "plots": False, "warmup_epochs": 0, "nbs": req.batch}
    record = finetune(req, callbacks={"on_train_batch_end": on_batch_end})
    steps = np.diff(stamps)[: iterations]
    return float(np.median(steps)), record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["yolov3-tiny", "yolov3"])
    ap.add_argument("--data", default="datasets/bccd/data.yaml")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations per arm")
    args = ap.parse_args()
    fraction = min(1.0, (args.iterations + 1) * args.batch / 205)
    rows = []
    with tempfile.TemporaryDirectory() as project:
        for model in args.models:
            common = dict(model=model, data=args.data, epochs=1, imgsz=args.imgsz, batch=args.batch, workers=0,
                          project=project, overrides={"fraction": fraction})
            scratch, _ = timed_run(FinetuneRequest(stage="scratch", name=f"{model}-scratch", **common), args.iterations)
            weights = Path(project) / f"{model}-scratch" / "weights" / "last.pt"
            stage3, rec = timed_run(FinetuneRequest(stage="3", name=f"{model}-stage3", weights=str(weights), **common),
                                    args.iterations)
            rows.append((model, scratch, stage3, rec["trainable_params"], rec["frozen_params"]))
    print(f"\nimgsz {args.imgsz}, batch {args.batch}, {args.iterations} iterations per arm (median s/iteration)")
    print(f"{'model':<12} {'scratch s/it':>12} {'stage3 s/it':>12} {'speed-up':>9} {'trainable in stage 3':>21}")
    for model, s, t, trainable, frozen in rows:
        print(f"{model:<12} {s:>12.2f} {t:>12.2f} {s / t:>8.2f}x {trainable / (trainable + frozen):>20.1%}")


if __name__ == "__main__":
    main()
