"""Which start transfers best to white-cell types: random, darknet's COCO backbone, or the shipped blood-cell
detector's backbone; frozen backbone or not. Each arm is one `train-differential` run on the PBC typed
fields (crops of 25 um at the fields' scale); per arm: val accuracy and macro-F1 per epoch, the time to reach
an accuracy, and the final scores with the unclassified threshold. An arm that finished is not run again.

    python benchmarks/differential_transfer.py --epochs 15 [--arms detector-full,coco-full,...]

The fields' scale is their red cells' (PBC fields in ../shared/txl-pbc-other, median whole red cell taken as
7.8 um): the same microscope, measured, not assumed.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "differential"
CLASS_ORDER = "WBC,RBC,Platelets"  # TXL's order, ../shared/txl-pbc-other/README.md
ARMS = {
    "detector-full": ("shipped", "full"),
    "detector-head": ("shipped", "head"),
    "coco-full": (str(SHARED / "pretrained" / "darknet" / "yolov3-tiny.weights"), "full"),
    "scratch-full": (None, "full"),
}


def pbc_mpp() -> float:
    """um/px of PBC fields, from the labelled PBC fields of txl-pbc-other."""
    from bccd_yolo.core.scale import RBC_DIAMETER_UM
    from bccd_yolo.data.convert import ClassSpec, read_source
    from bccd_yolo.data.sources import SourceSpec, rbc_diameter

    names = ("RBC", "WBC", "Platelets")
    spec = SourceSpec("pbc", SHARED / "txl-pbc-other" / "pbc")
    data, _ = read_source(spec, ClassSpec.parse(",".join(names)), CLASS_ORDER, "official", 0, 0.0, 0.0, "keep")
    px = rbc_diameter(data, names)
    assert px is not None
    return RBC_DIAMETER_UM / px


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--imgsz", type=int, default=128)
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--mpp", type=float, default=None)
    ap.add_argument("--project", default=str(ROOT / "runs" / "differential"))
    ap.add_argument("--summary", action="store_true",
                    help="only re-score the finished arms' best.pt (calibrate_types) and print the table")
    a = ap.parse_args()
    if a.summary:
        return summary(Path(a.project), a.imgsz)
    from bccd_yolo.train.differential import DifferentialRequest, train_differential

    mpp = a.mpp or round(pbc_mpp(), 4)
    print(f"PBC fields: {mpp:.4f} um/px", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for arm in a.arms.split(","):
        weights, stage = ARMS[arm]
        run = Path(a.project) / arm
        if (run / "timing.json").is_file():
            print(f"{arm}: done before", flush=True)
            continue
        resume = (run / "weights" / "last.pt").is_file()
        req = DifferentialRequest(str(SHARED / "pbc-wbc-types"), mpp, weights, stage, a.epochs, a.imgsz,
                                  project=a.project, name=arm, crops=str(ROOT / "datasets" / "pbc-wbc-types-crops"),
                                  resume=resume)
        t = time.perf_counter()
        record = train_differential(req)
        rows = list(csv.DictReader((run / "results.csv").open()))
        record["curve"] = [{"epoch": int(float(r["epoch"])), "seconds": float(r["time"]),
                            "top1": float(r["metrics/accuracy_top1"])} for r in rows]
        record["bench_seconds"] = round(time.perf_counter() - t, 1)
        (OUT / f"{arm}.json").write_text(json.dumps(record, indent=2) + "\n")
        shutil.copy(run / "results.csv", OUT / f"{arm}.results.csv")
        v = record["val"]["thresholded"]
        print(f"{arm}: accuracy {v['accuracy']:.3f} macro-F1 {v['macro_f1']:.3f} unclassified {v['unclassified']:.1%} "
              f"in {record['wall_seconds']:.0f} s", flush=True)


def reach(curve: list[dict], target: float) -> str:
    hit = next((c for c in curve if c["top1"] >= target), None)
    return "-" if hit is None else f"{hit['seconds']:.0f} s (epoch {hit['epoch']})"


def summary(project: Path, imgsz: int) -> None:
    """Each finished arm's best.pt scored as count uses it (threshold chosen on val and its stain-shifted copy)."""
    from bccd_yolo.data.cell_crops import CropDataset
    from bccd_yolo.train.differential import calibrate_types

    crops = CropDataset.read(ROOT / "datasets" / "pbc-wbc-types-crops")
    assert crops is not None, "crops not found: run an arm first"
    rows = ["| start | backbone | val top-1, last epoch | accuracy | macro-F1 | unclassified | stain-shifted accuracy "
            "| time to top-1 0.90 | training seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        path = OUT / f"{arm}.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        record["val"] = calibrate_types(project / arm / "weights" / "best.pt", crops, imgsz)
        path.write_text(json.dumps(record, indent=2) + "\n")
        v, sh = record["val"]["thresholded"], record["val"]["shifted_thresholded"]
        start, stage = arm.split("-")
        rows.append(f"| {start} | {'frozen' if stage == 'head' else 'trained'} | {record['curve'][-1]['top1']:.3f} | "
                    f"{v['accuracy']:.3f} | {v['macro_f1']:.3f} | {v['unclassified']:.1%} | {sh['accuracy']:.3f} | "
                    f"{reach(record['curve'], 0.90)} | {record['curve'][-1]['seconds']:.0f} |")
    table = "\n".join(rows)
    print(table)
    (OUT / "README.md").write_text("# The differential: which start transfers\n\n`python benchmarks/differential_transfer.py "
                                   "--epochs 15`, then `--summary`. PBC val, 700 fields; accuracy and macro-F1 over "
                                   "the cells each classifier called (the rest: unclassified).\n\n" + table + "\n")


if __name__ == "__main__":
    main()
