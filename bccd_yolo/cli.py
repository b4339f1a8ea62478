"""`bccd-yolo` command line: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .convert import BCCD_CLASSES
from .errors import InputError

DEFAULT_SOURCE = Path("datasets/BCCD_Dataset")
DEFAULT_DATASET = Path("datasets/bccd")


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .download import fetch_bccd

    source = args.source
    if source is None:
        source = DEFAULT_SOURCE
        if not source.exists():
            print(f"{source} not found: downloading the BCCD dataset", file=sys.stderr)
            source = fetch_bccd(source.parent)
    result = convert(
        source, args.out, classes=args.classes, split=args.split, seed=args.seed,
        val_frac=args.val_frac, test_frac=args.test_frac, images=args.images,
    )
    print(f"Converted {result.source} -> {result.out}")
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bccd-yolo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="BCCD / Pascal-VOC -> YOLO labels and data.yaml")
    p.add_argument("--source", type=Path, default=None,
                   help=f"BCCD_Dataset checkout, its BCCD/ folder, or any VOC folder (default {DEFAULT_SOURCE}; "
                        "downloaded when absent)")
    p.add_argument("--out", type=Path, default=DEFAULT_DATASET, help=f"output dataset folder (default {DEFAULT_DATASET})")
    p.add_argument("--classes", default=BCCD_CLASSES,
                   help=f"class order and XML-name mapping, e.g. '{BCCD_CLASSES}=Platelet|platelets'; any other "
                        f"name is an error. 'auto': every name found, most frequent first (default {BCCD_CLASSES})")
    p.add_argument("--split", choices=("official", "random"), default="official",
                   help="official: ImageSets/Main/{train,val,test}.txt; random: seeded split of all annotations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=0.2)
    p.add_argument("--test-frac", type=float, default=0.2)
    p.add_argument("--images", choices=("copy", "hardlink", "symlink"), default="copy")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"bccd-yolo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bccd-yolo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
