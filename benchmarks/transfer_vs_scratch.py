"""The study's experiment: yolov3-tiny (darknet activation) from scratch vs from COCO, on BCCD.

Arms, identical in model, data, image size, batch and seed:
  scratch      random initialisation, everything trained
  coco-frozen  darknet's COCO yolov3-tiny.weights, backbone frozen (the study's stage 3)
  coco-full    darknet's COCO weights, nothing frozen

    python benchmarks/transfer_vs_scratch.py --epochs 50            # train the arms one after another
    python benchmarks/transfer_vs_scratch.py --summarize            # table, plot, test AP; copy summaries

Time to reach scratch's best val mAP50 is read per epoch from each run's results.csv (Ultralytics
records seconds since the start of training after every epoch).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DARKNET = ROOT.parent / "shared" / "pretrained" / "darknet" / "yolov3-tiny.weights"
MODEL = "yolov3-tiny-darknet"
ARMS = {
    "scratch": {"stage": "scratch", "weights": None},
    "coco-frozen": {"stage": "3", "weights": str(DARKNET)},
    "coco-full": {"stage": "full", "weights": str(DARKNET)},
}
STUDY_RATIO = 2.5 / 6.8  # the study: 2.5 h with transfer vs 6.8 h from scratch


def train(args: argparse.Namespace) -> None:
    from bccd_yolo.train.finetune import FinetuneRequest, finetune

    for arm in args.arms:
        spec = ARMS[arm]
        finetune(FinetuneRequest(stage=spec["stage"], model=MODEL, weights=spec["weights"], data=args.data,
                                 epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, project=args.project,
                                 name=arm, overrides={"seed": 0, "deterministic": True}))


def read_curve(run: Path) -> list[dict[str, float]]:
    with (run / "results.csv").open() as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def summarize(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {arm: Path(args.project) / arm for arm in args.arms if (Path(args.project) / arm / "results.csv").is_file()}
    curves = {arm: read_curve(run) for arm, run in runs.items()}
    if "scratch" not in curves:
        sys.exit("no scratch run to compare against")
    target = max(r["metrics/mAP50(B)"] for r in curves["scratch"])
    rows = []
    levels = [*args.levels, target]  # fixed AP levels, and the scratch arm's best as the study defines it

    def first(curve: list[dict[str, float]], level: float) -> dict[str, float] | None:
        return next((r for r in curve if r["metrics/mAP50(B)"] >= level - 1e-9), None)

    for arm, curve in curves.items():
        best = max(curve, key=lambda r: r["metrics/mAP50(B)"])
        row: dict[str, object] = {"arm": arm, "epochs": len(curve), "s_per_epoch": round(curve[-1]["time"] / len(curve), 1),
                                  "best_val_mAP50": round(best["metrics/mAP50(B)"], 3), "best_epoch": int(best["epoch"])}
        for level in levels:
            reach, base = first(curve, level), first(curves["scratch"], level)
            tag = "scratch_best" if level == target else f"{level:.2f}"
            row[f"epoch_to_{tag}"] = int(reach["epoch"]) if reach else None
            row[f"min_to_{tag}"] = round(reach["time"] / 60, 1) if reach else None
            row[f"ratio_to_{tag}"] = round(reach["time"] / base["time"], 2) if reach and base else None
        # levelled off? what the best val mAP50 gained in the last 10 epochs (mosaic off) and the 10 before
        ap = [r["metrics/mAP50(B)"] for r in curve]
        if len(ap) > 20:
            row["gain_last_10"] = round(max(ap) - max(ap[:-10]), 3)
            row["gain_prev_10"] = round(max(ap[:-10]) - max(ap[:-20]), 3)
        rows.append(row)
    if args.test:  # test AP per class of each arm's best.pt (selected on val by Ultralytics' fitness)
        import tempfile

        from bccd_yolo.yolo.validate import validate

        for row in rows:
            best_pt = Path(args.project) / row["arm"] / "weights" / "best.pt"
            ap = validate(best_pt, args.data, "test", ["RBC", "WBC", "Platelets"], args.imgsz, 0.001, 0.7,
                          Path(tempfile.mkdtemp()), "val", plots=False).set_index("class")["ap50"]
            row.update({f"test_{k}": round(float(v), 3) for k, v in ap.items()})
    print(f"target: scratch's best val mAP50 {target:.3f}; the study's time ratio {STUDY_RATIO:.2f}")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k)) for k in keys) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, curve in curves.items():
        ax.plot([r["time"] / 60 for r in curve], [r["metrics/mAP50(B)"] for r in curve], label=arm)
    ax.axhline(target, color="grey", ls=":", lw=1, label=f"scratch best {target:.3f}")
    ax.set_xlabel("training time (min; each arm on one pinned CPU core)")
    ax.set_ylabel("val mAP50 (BCCD labels)")
    ax.set_title("yolov3-tiny on BCCD: COCO transfer vs scratch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "val_map50.png", dpi=110)
    (out / "summary.json").write_text(json.dumps({"target_val_mAP50": target, "study_ratio": STUDY_RATIO, "arms": rows},
                                                 indent=2) + "\n")
    for arm, run in runs.items():
        (out / arm).mkdir(exist_ok=True)
        for name in ("results.csv", "timing.json", "args.yaml"):
            if (run / name).is_file():
                shutil.copy2(run / name, out / arm / name)
    print(f"summary, plot and each run's results.csv / timing.json / args.yaml -> {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--data", default=str(ROOT / "datasets" / "bccd" / "data.yaml"))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=416)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--project", default=str(ROOT / "runs" / "transfer"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer"),
                   help="with --summarize: where the summary, plot and each run's small files go")
    p.add_argument("--summarize", action="store_true", help="only summarise finished runs")
    p.add_argument("--test", action="store_true", help="with --summarize: also test-split AP of each arm")
    p.add_argument("--levels", type=float, nargs="*", default=[0.5, 0.6], help="val mAP50 levels to time, besides "
                   "the scratch arm's best")
    args = p.parse_args()
    summarize(args) if args.summarize else train(args)


if __name__ == "__main__":
    main()
