"""Average the weights of fine-tunes that share a start (a uniform "model soup", Wortsman et al. 2022).

    .venv/bin/python benchmarks/results/ship-augment/soup.py A.pt B.pt [...] --out SOUP.pt

Every float tensor of the models' state dicts (batch-norm running statistics included) is averaged; the
checkpoint keeps the first model's training metadata, half precision, no optimiser or EMA.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    ckpts = [torch.load(w, map_location="cpu", weights_only=False) for w in args.weights]
    states = [c["model"].float().state_dict() for c in ckpts]
    if any(s.keys() != states[0].keys() for s in states):
        raise SystemExit(f"{args.weights[0]}: the models differ in their layers; a soup needs one architecture")
    soup = {k: (sum(s[k] for s in states) / len(states)) if v.is_floating_point() else v for k, v in states[0].items()}
    model = ckpts[0]["model"].float()
    model.load_state_dict(soup)
    out = dict(ckpts[0], model=model.half(), ema=None, optimizer=None, updates=None,
               soup=[str(w) for w in args.weights])
    tmp = args.out.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(args.out)
    print(f"{len(states)} models averaged, {len(soup)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
