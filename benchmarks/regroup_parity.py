"""The same counts before and after the package was regrouped (issue #33): old code against this code, same model.

    git worktree add /tmp/old 07ea7d0          # the last commit before the regrouping
    .venv/bin/python benchmarks/regroup_parity.py --old /tmp/old [--weights W] [--side 10000]

Both run `bccd-yolo count --backend torch --json` (the torch path is Ultralytics' predict in both, so any change
in counts would be the regrouping's) on the 72 BCCD test photos and on a side x side PNG slide of pasted test
photos (about 40 % covered). Prints per-image differences (none expected) and writes
benchmarks/results/regroup_parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT.parent / "shared" / "BCCD_Dataset" / "BCCD"


def count(code_root: Path, inputs: list[Path], weights: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    cmd = [sys.executable, "-m", "bccd_yolo", "count", *map(str, inputs), "--weights", str(weights), "--backend", "torch",
           "--quiet", "--json", str(out)]
    subprocess.run(cmd, check=True, env=env, cwd=out.parent, capture_output=True)
    return {Path(im["path"]).name: im["counts"] for im in json.loads(out.read_text())["images"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="a worktree of the commit before the regrouping")
    ap.add_argument("--weights", type=Path, default=ROOT / "weights" / "bccd_yolov3_tiny.pt")
    ap.add_argument("--side", type=int, default=10_000)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bccd_yolo.measure.synthetic import paste_canvas

    ids = (BCCD / "ImageSets" / "Main" / "test.txt").read_text().split()
    photos = [BCCD / "JPEGImages" / f"{i}.jpg" for i in ids]
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.pt"  # one copy, so neither side's sidecar or exports differ
        weights.write_bytes(args.weights.read_bytes())
        sidecar = args.weights.with_suffix(".thresholds.json")
        if sidecar.is_file():
            weights.with_suffix(".thresholds.json").write_bytes(sidecar.read_bytes())
        from PIL import Image

        canvas, _ = paste_canvas(photos * (1 + args.side**2 * 4 // (10 * 640 * 480 * len(photos))), args.side, args.side)
        slide = Path(tmp) / "slide.png"
        Image.fromarray(canvas).save(slide)
        result = {}
        for name, root in (("old", args.old), ("new", ROOT)):
            result[name] = count(root, [*photos, slide], weights, Path(tmp) / f"{name}.json")
    diffs = {k: (result["old"][k], result["new"].get(k)) for k in result["old"] if result["old"][k] != result["new"].get(k)}
    record = {"photos": len(photos), "slide_side": args.side, "differences": diffs,
              "slide_counts": {k: result[k]["slide.png"] for k in ("old", "new")}}
    out = ROOT / "benchmarks" / "results" / "regroup_parity.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{len(photos)} photos and a {args.side} px slide: {len(diffs)} images count differently; slide old "
          f"{record['slide_counts']['old']} new {record['slide_counts']['new']} -> {out}")


if __name__ == "__main__":
    main()
