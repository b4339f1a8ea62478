"""Counting against complete labels: the targets of the complete-labels issue, measured on the test photos.

    python benchmarks/complete_labels.py [--weights weights/bccd_yolov3_tiny.pt] [--conf ...] [--name shipped]

On the 40 BCCD test photos that have complete labels (../shared/txl-pbc-bccd), at the model's thresholds:
count MAE per class against complete labels (every cell, `--edge all`), RBC count MAE for cells away from
the edge (the `interior` rule applied to labels and detections alike), RBC recall and precision at IoU 0.5
(greedy one-to-one); the same photos' count MAE against BCCD's own labels; what `audit` makes of BCCD's
labels (share of the red cells BCCD missed that it proposes, share of its red-cell proposals that are real
cells in the complete labels, both at IoU 0.5); and AP50 per class against BCCD's labels on all 72 test
photos (Ultralytics val). With --shrink F the photos are first resized by F (as a scan at a coarser
resolution would show them) and counted at their scale (--mpp = the model's photo scale / F); AP is not
affected. Writes benchmarks/results/complete_labels_<name>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    p.add_argument("--conf", default=None, help="thresholds as in count (default: the model's sidecar)")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--name", default="shipped")
    p.add_argument("--shrink", type=float, default=1.0, help="resize the photos by this factor before counting")
    args = p.parse_args()

    from bccd_yolo.core.detections import Detections
    from bccd_yolo.core.edges import apply_edge_rule
    from bccd_yolo.core.images import PhotoSource, open_image, read_scaled
    from bccd_yolo.core.matching import match
    from bccd_yolo.count.counting import detect_image
    from bccd_yolo.count.detector import Detector
    from bccd_yolo.count.thresholds import parse_conf
    from bccd_yolo.data.convert import convert
    from bccd_yolo.data.voc import VocLayout, parse_annotation
    from bccd_yolo.measure.audit import audit_image
    from bccd_yolo.measure.evaluate import load_ground_truth
    from bccd_yolo.yolo.data import resolve_data
    from bccd_yolo.yolo.validate import validate

    tmp = Path(tempfile.mkdtemp(prefix="complete-labels-"))
    bccd = SHARED / "BCCD_Dataset"
    convert(bccd, tmp / "bccd", images="symlink")
    convert(bccd, tmp / "complete", annotations=SHARED / "txl-pbc-bccd" / "Annotations", images="symlink")
    det = Detector(args.weights, imgsz=args.imgsz, conf=parse_conf(args.conf) if args.conf else None)
    names = det.names
    _, info_c = resolve_data(str(tmp / "complete" / "data.yaml"))
    _, info_b = resolve_data(str(tmp / "bccd" / "data.yaml"))
    complete = load_ground_truth(info_c, args.split)
    bccd_gt = {g.path.name: g for g in load_ground_truth(info_b, args.split)}
    layout = VocLayout.find(bccd)

    true_c, true_b, pred, true_int, pred_int = [], [], [], [], []
    rec_hits = rec_n = prec_hits = prec_n = 0
    missed_total = missed_proposed = proposals_n = proposals_real = 0
    k_rbc = names.index("RBC")
    for g in complete:
        src = open_image(g.path)
        if args.shrink == 1.0:
            d = detect_image(src, det, tile=0, progress=False)[0]
        else:
            assert det.scale is not None, "--shrink needs a model with a recorded scale (calibrate it)"
            small = read_scaled(src, 0, 0, g.width, g.height, args.shrink)
            fx, fy = g.width / small.shape[1], g.height / small.shape[0]  # the exact factors of the rounded size
            d = detect_image(PhotoSource(g.path, small), det, tile=0, progress=False,
                             mpp=det.scale.photo_mpp * fx)[0].scaled(fx, fy)
        src.close()
        b = bccd_gt[g.path.name]
        true_c.append(g.boxes.counts(len(names)))
        true_b.append(b.boxes.counts(len(names)))
        pred.append(d.counts(len(names)))
        true_int.append(apply_edge_rule(g.boxes, "interior", g.width, g.height).counts(len(names))[k_rbc])
        pred_int.append(apply_edge_rule(d, "interior", g.width, g.height).counts(len(names))[k_rbc])
        rbc_d, rbc_t = d.subset(d.cls == k_rbc), g.boxes.subset(g.boxes.cls == k_rbc)
        m = match(rbc_d, rbc_t, 0.5)
        rec_hits, rec_n = rec_hits + int(m.truth.sum()), rec_n + len(rbc_t)
        prec_hits, prec_n = prec_hits + int(m.pred.sum()), prec_n + len(rbc_d)
        # audit of BCCD's own labels on this photo
        ann, _ = parse_annotation(layout.annotations / f"{g.path.stem}.xml", layout, None)
        props = [f for f in audit_image(ann, d, names) if f.kind == "proposal" and f.cls == "RBC"]
        bccd_rbc = b.boxes.subset(b.boxes.cls == k_rbc)
        missed = rbc_t.subset(~match(rbc_t, bccd_rbc, 0.5).pred)  # complete-label red cells BCCD has no box for
        prop = Detections(np.array([f.box for f in props], np.float32).reshape(-1, 4), np.ones(len(props), np.float32),
                          np.full(len(props), k_rbc, np.int64))
        missed_total += len(missed)
        missed_proposed += int(match(missed, prop, 0.5).pred.sum())
        proposals_n += len(prop)
        proposals_real += int(match(prop, rbc_t, 0.5).pred.sum())

    true_c, true_b, pred = np.array(true_c), np.array(true_b), np.array(pred)
    mae_c = np.abs(pred - true_c).mean(0)
    mae_b = np.abs(pred - true_b).mean(0)

    ap = validate(args.weights, str(tmp / "bccd" / "data.yaml"), args.split, names, det.imgsz, 0.001, 0.7, tmp, "val",
                  plots=False).set_index("class")["ap50"].to_dict()
    result = {
        "weights": str(args.weights), "imgsz": det.imgsz, "shrink": args.shrink, "thresholds": det.thresholds.by_class,
        "thresholds_source": det.thresholds.source, "photos": len(complete),
        "count_mae_complete": dict(zip(names, np.round(mae_c, 3).tolist())),
        "count_mae_bccd_same_photos": dict(zip(names, np.round(mae_b, 3).tolist())),
        "mean_counted": dict(zip(names, np.round(pred.mean(0), 2).tolist())),
        "mean_complete": dict(zip(names, np.round(true_c.mean(0), 2).tolist())),
        "rbc_interior_mae": round(float(np.abs(np.array(pred_int) - np.array(true_int)).mean()), 3),
        "rbc_recall": round(rec_hits / max(1, rec_n), 3), "rbc_precision": round(prec_hits / max(1, prec_n), 3),
        "audit_rbc_missed_by_bccd": missed_total, "audit_share_proposed": round(missed_proposed / max(1, missed_total), 3),
        "audit_rbc_proposals": proposals_n, "audit_share_real": round(proposals_real / max(1, proposals_n), 3),
        "ap50_bccd_labels_all_test": {k: round(float(v), 3) for k, v in ap.items()},
    }
    out = ROOT / "benchmarks" / "results" / f"complete_labels_{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| {args.name} | RBC | WBC | Platelets |\n|---|---|---|---|")
    print("| count MAE vs complete labels | " + " | ".join(f"{mae_c[k]:.2f}" for k in range(3)) + " |")
    print("| count MAE vs BCCD labels, same photos | " + " | ".join(f"{mae_b[k]:.2f}" for k in range(3)) + " |")
    print("| counted / complete per photo | " + " | ".join(f"{pred.mean(0)[k]:.1f} / {true_c.mean(0)[k]:.1f}" for k in range(3)) + " |")
    print("| AP50 vs BCCD labels (72 photos) | " + " | ".join(f"{ap[n]:.3f}" for n in names) + " |")
    print(f"RBC interior MAE {result['rbc_interior_mae']}; RBC recall {result['rbc_recall']} precision {result['rbc_precision']}")
    print(f"audit on BCCD labels: proposes {result['audit_share_proposed']:.0%} of the {missed_total} red cells BCCD missed; "
          f"{result['audit_share_real']:.0%} of its {proposals_n} RBC proposals are real cells")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
