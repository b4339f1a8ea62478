"""Counting per source, as a user counts: BCCD's photos, PBC's and Raabin's fields, each in its own pixels.

    python benchmarks/per_source.py [--weights W] [--split val|test] [--name shipped] [--mpp auto] [--sources bccd,pbc,raabin] [--iou 0.7]

Sources (../shared): BCCD photos with complete labels (txl-pbc-bccd; `--split` val: 57, test: 40), and the val
fields of PBC and Raabin-WBC (txl-pbc-other: 100 each; their test split is not here). Every field is counted by
`count_images` at the options given (default: `count`'s defaults) and, for AP50, predicted down to the evaluation
floor at the same scale. Writes benchmarks/results/per_source/<name>_<split>.json and prints a table per source
and class, plus the qc verdict's flags.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OTHER_ORDER = "WBC,RBC,Platelets"  # TXL's class order in txl-pbc-other's label files


def read_sources(names: list[str], wanted: list[str]):
    """Each wanted source's labelled splits (SourceData): BCCD with its complete labels, PBC and Raabin-WBC."""
    from bccd_yolo.data.convert import ClassSpec, read_source
    from bccd_yolo.data.sources import SourceSpec

    spec = ClassSpec.parse(",".join(names))
    specs = {"bccd": (SourceSpec("bccd", SHARED / "BCCD_Dataset", annotations=SHARED / "txl-pbc-bccd" / "Annotations"), None),
             "pbc": (SourceSpec("pbc", SHARED / "txl-pbc-other" / "pbc"), OTHER_ORDER),
             "raabin": (SourceSpec("raabin", SHARED / "txl-pbc-other" / "raabin"), OTHER_ORDER)}
    return {name: read_source(source, spec, order, "official", 0, 0.2, 0.2, "drop")[0]
            for name, (source, order) in specs.items() if name in wanted}


def load_sources(split: str, names: list[str], wanted: list[str]):
    from bccd_yolo.measure.per_source import fields_of

    # BCCD's split is `split`; PBC's and Raabin's are always val: their test split is not here
    return {name: fields_of(data.splits[split if name == "bccd" else "val"], names)
            for name, data in read_sources(names, wanted).items()}


def shipped_on_val(wanted: list[str]):
    """The shipped model at its thresholds and at the evaluation floor (for AP), and each wanted source's val
    fields: what the benchmarks that sweep a counting setting on val start from."""
    from bccd_yolo.count.detector import Detector, default_weights
    from bccd_yolo.measure.evaluate import EVAL_CONF

    det = Detector(default_weights(), quiet=True)
    low = Detector(default_weights(), conf=EVAL_CONF, quiet=True)
    return det, low, load_sources("val", det.names, wanted)


def main() -> None:
    from bccd_yolo.count.options import DEFAULT_PRECISION

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    p.add_argument("--split", default="val", choices=("val", "test"), help="BCCD's split (PBC and Raabin: val)")
    p.add_argument("--name", default="shipped")
    p.add_argument("--mpp", default=None, help="as count --mpp (default: count's default)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=("fp32", "auto", "int8"), help="as count --precision")
    p.add_argument("--sources", default="bccd,pbc,raabin")
    p.add_argument("--iou", type=float, default=0.7, help="as count --iou: NMS overlap at which a box suppresses another")
    args = p.parse_args()

    from bccd_yolo.count.detector import Detector
    from bccd_yolo.count.options import CountOptions
    from bccd_yolo.measure.evaluate import EVAL_CONF
    from bccd_yolo.measure.per_source import count_fields, summarise, table

    det = Detector(args.weights, backend=args.backend, quiet=True, precision=args.precision, iou=args.iou)
    low = Detector(args.weights, backend=args.backend, conf=EVAL_CONF, quiet=True, precision=args.precision, iou=args.iou)
    options = CountOptions() if args.mpp is None else CountOptions(mpp=args.mpp if args.mpp == "auto" else float(args.mpp))
    sources = load_sources(args.split, det.names, args.sources.split(","))
    summaries, timing = {}, {}
    for name, fields in sources.items():
        start = time.perf_counter()
        results = count_fields(fields, det, low, options)
        summaries[name] = summarise(results, det.names)
        summaries[name]["flagged"] = {Path(r.sample.path).name: r.qc for r in results if r.qc}
        timing[name] = round(time.perf_counter() - start, 1)
    out = ROOT / "benchmarks" / "results" / "per_source" / f"{args.name}_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"weights": str(args.weights), "split_bccd": args.split, "mpp": args.mpp, "backend": det.backend,
              "precision": det.runs_at if args.precision != "int8" else "int8",
              "iou": args.iou, "thresholds": det.thresholds.by_class, "seconds": timing, "sources": summaries}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(table(summaries, det.names))
    for name, s in summaries.items():
        extra = f", RBC interior MAE {s['rbc_interior_mae']:.2f}" if "rbc_interior_mae" in s else ""
        print(f"{name}: {s['qc_flagged']} of {s['fields']} fields flagged by qc; {s.get('rbc_off_25pct', 0)} with RBC off "
              f"by more than 25 %{extra}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
