"""`bccd-yolo` command line: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NoReturn

from .core.errors import InputError
from .count.options import DEFAULT_PRECISION, MIN_TILE
from .data.convert import BCCD_CLASSES


class HelpFormatter(argparse.HelpFormatter):
    """Every default in --help, once: options whose help already describes their default keep that text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `bccd-yolo count: error: argument --tile: ...`, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def int_at_least(low: int, what: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer{what}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: expected an integer >= {low}{what}")
        return value
    return parse


def float_in(low: float, high: float, what: str = "") -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text}: expected a number in [{low:g}, {high:g}]{what}")
        return value
    return parse


def tile_size(text: str) -> int:
    value = int_at_least(0)(text)
    if 0 < value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"{value}: expected 0 (never tile) or a tile of at least {MIN_TILE} px")
    return value


def mpp_spec(text: str) -> float | str:
    """`auto` or micrometres per pixel, checked as the library checks it (scale.check_mpp)."""
    from .core.scale import check_mpp

    if text == "auto":
        return text
    try:
        return check_mpp(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (micrometres per pixel, or auto)") from None
    except InputError as e:
        raise argparse.ArgumentTypeError(e.problem) from None


def as_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def conf_spec(text: str) -> float | dict[str, float]:
    """`0.3` or `RBC=0.5,WBC=0.3` as a number or per-class numbers; class names are checked once the model loads."""
    from .count.thresholds import parse_conf

    try:
        return parse_conf(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"{text}: expected a number in [0, 1] or CLASS=number pairs") from None


IMGSZ = int_at_least(32, " (network input in pixels; Ultralytics rounds it up to a multiple of 32)")
POSITIVE = int_at_least(1)
UNIT = float_in(0, 1)

DEFAULT_SOURCE = Path("datasets/BCCD_Dataset")
DEFAULT_DATASET = Path("datasets/bccd")


def cmd_convert(args: argparse.Namespace) -> int:
    from .data.convert import convert_sources
    from .data.datasets import bccd_source
    from .data.sources import SourceSpec, per_source

    given = args.source or [None]
    specs = [SourceSpec.parse(str(bccd_source(None, DEFAULT_SOURCE)) if t is None else t, i) for i, t in enumerate(given)]
    names = [s.name for s in specs]
    notes = per_source(args.annotations or [], names, "annotations")
    repeat = per_source(args.repeat or [], names, "repeat")
    by_source = per_source(args.classes or [], names, "classes")
    classes = by_source.get(None, BCCD_CLASSES)  # a plain --classes: the output order (the last one given)
    source_classes = {k: v for k, v in by_source.items() if k is not None}
    specs = [replace(s, annotations=Path(notes[s.name]) if s.name in notes else (Path(notes[None]) if None in notes and i == 0 else None),
                     repeat=_positive_int(repeat.get(s.name, repeat.get(None, "1")), "repeat")) for i, s in enumerate(specs)]
    result = convert_sources(
        specs, args.out, classes=classes, source_classes=source_classes, split=args.split,
        seed=args.seed, val_frac=args.val_frac, test_frac=args.test_frac, images=args.images,
        unlabelled=args.unlabelled, same_scale=args.same_scale, overwrite=args.overwrite,
    )
    print(f"Converted {result.source} -> {result.out}")
    print(result.summary())
    return 0


def _positive_int(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(None, f"{text!r}: give a whole number >= 1", option=option)
    return value


def parse_overrides(items: list[str]) -> dict:
    """`key=value` Ultralytics arguments; values parsed as YAML (numbers, booleans, lists)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(None, f"{item!r}: extra Ultralytics arguments are key=value, e.g. lr0=0.001")
        out[key] = yaml.safe_load(value)
    return out


def cmd_stages(args: argparse.Namespace) -> int:
    from .train.finetune import describe_stages

    print(describe_stages(args.model))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .train.finetune import FinetuneRequest, finetune

    if (args.stage is None) == (not args.scratch):
        raise InputError(None, "give exactly one of --stage N or --scratch")
    req = FinetuneRequest(
        stage="scratch" if args.scratch else str(args.stage), model=args.model, data=args.data, weights=args.weights,
        epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device=args.device, workers=args.workers,
        project=args.project, name=args.name, resume=args.resume, profile=args.profile, cfg=args.cfg,
        resample=args.resample, refill=args.refill, frame=args.frame, stain=args.stain, grey=args.grey, blur=args.blur,
        overrides=parse_overrides(args.overrides),
    )
    finetune(req)
    return 0


def cmd_import_darknet(args: argparse.Namespace) -> int:
    from .model.darknet_files import resolve_darknet_weights
    from .yolo.darknet import import_darknet, save_checkpoint

    result = import_darknet(resolve_darknet_weights(args.weights), args.cfg)
    save_checkpoint(result, args.out)
    print(result.describe())
    print(f"checkpoint written to {args.out} (YOLO('{args.out}') loads it; finetune --weights {args.out} trains it)")
    return 0


def cmd_count(args: argparse.Namespace) -> int:
    from .count.counting import count_images
    from .count.detector import Detector, default_weights
    from .count.options import CountOptions
    from .count.outputs import differential_table, qc_lines, table, write_reports

    for option, path in (("--json", args.json), ("--csv", args.csv)):
        if path is not None and path.is_dir():
            raise InputError(path, f"{option} wants a file path; this is a folder")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise InputError(args.out, "--out wants a folder for overlays; this is a file")
    if args.labels_out is not None:
        from .count.proposals import check_labels_out

        check_labels_out(args.labels_out, args.paths)  # before the model loads
    weights = args.weights or default_weights()
    if args.engine == "ray":
        from .count.engine import require_ray

        require_ray()  # before the model loads
    model = dict(weights=weights, backend=args.backend, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
                 device=args.device, batch=args.batch, max_det=args.max_det, precision=args.precision)
    differential = differential_model(args)
    detector = Detector(**model, quiet=args.quiet)
    options = CountOptions(tile=args.tile, overlap=args.overlap, mpp=args.mpp, edge=args.edge, regions=args.regions,
                           skip_background=not args.all_tiles, qc=not args.no_qc)
    if args.engine == "ray":
        from .count.counting import input_files
        from .count.engine import RayOptions, count_images_ray

        ray_options = RayOptions(args.ray_address, args.workers, args.gpus_per_worker)
        results, errors = count_images_ray(input_files(args.paths, args.out), detector, model, ray_options, options,
                                           args.out, not args.quiet, differential=differential)
    else:
        results, errors = count_images(args.paths, detector, options, args.out, progress=not args.quiet,
                                       differential=differential)
    if getattr(detector, "backend_note", None):
        print(f"backend {detector.backend}: {detector.backend_note}")
    print(f"model {weights} ({detector.backend}, {detector.runs_at}); thresholds {detector.thresholds.source}: "
          + ", ".join(f"{n} {v:.2f}" for n, v in detector.thresholds.by_class.items()))
    if results:
        print(table(results, detector.names))
        if differential is not None:
            print(differential_table(results, differential.score_floor) or "differential: no white cells found")
    for line in qc_lines(results):  # printed under --quiet too: a count that may be wrong must not pass unseen
        print(line)
    write_reports(results, detector, errors, args.json, args.csv, args.geojson, args.tile, args.overlap)
    if args.labels_out is not None and results:
        from .count.counting import output_stems
        from .count.proposals import write_proposals

        write_proposals(results, args.labels_out, output_stems([Path(r.path) for r in results]))
        print(f"proposals to correct: {args.labels_out} (VOC: Annotations/ + JPEGImages/; YOLO: labels/ + classes.txt)")
    for e in errors:
        print(f"bccd-yolo count: error: {e.render(as_flag)}", file=sys.stderr)
    return 1 if errors else 0


def differential_model(args: argparse.Namespace):
    """The white-cell type classifier `count` runs: --differential, else the shipped one; None with
    --no-differential (or when none is shipped and none was asked for)."""
    from .count.differential import default_differential

    return None if args.no_differential else default_differential(args.differential, args.backend)


def cmd_train_differential(args: argparse.Namespace) -> int:
    from .train.differential import DifferentialRequest, train_differential

    req = DifferentialRequest(args.data, args.mpp, None if args.weights == "none" else args.weights, args.stage,
                              args.epochs, args.imgsz, args.batch, args.crop_um, args.stain, args.grey, args.blur,
                              args.project, args.name, args.crops, args.resume, args.workers,
                              parse_overrides(args.overrides))
    record = train_differential(req)
    v = record["val"]["thresholded"]
    print(f"val: accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}, unclassified {v['unclassified']:.1%}; "
          f"{record['wall_seconds']:.0f} s -> {Path(args.project) / args.name / 'weights' / 'best.pt'}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from .train.adapt import AdaptRequest, adapt, describe

    req = AdaptRequest(str(args.folder), str(args.out), args.classes, args.source_classes,
                       str(args.weights) if args.weights else None, args.stage, args.epochs, args.imgsz, args.batch,
                       images_per_epoch=args.images_per_epoch, hold_back=args.hold_back, seed=args.seed,
                       project=args.project, name=args.name, resume=args.resume, overwrite=args.overwrite,
                       overrides=parse_overrides(args.overrides))
    summary = adapt(req)
    print(describe(summary, list(summary["held_back_mae"]["before"])))
    print(f"model written: {args.out} (count --weights {args.out} uses it)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .count.detector import default_weights
    from .yolo.export import export

    weights = args.weights or default_weights()
    if args.precision == "int8" and (args.backend != "openvino" or not args.data):
        raise InputError(None, "int8 quantises an OpenVINO export and calibrates on the train split of {data}",
                         option="precision")
    path = export(weights, args.backend, args.precision, args.data, quiet=args.quiet)
    print(f"{args.backend} {args.precision} export of {weights}: {path}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .core.images import open_image
    from .count.counting import detect_image
    from .count.detector import Detector, default_weights
    from .measure.audit import audit, audit_inputs

    audit_inputs(args.voc, args.out, args.overwrite)  # before the model loads
    weights = args.weights or default_weights()
    detector = Detector(weights, imgsz=args.imgsz, conf=args.conf, device=args.device)

    def detect(path: Path):
        src = open_image(path)
        try:
            return detect_image(src, detector, tile=0, progress=False)[0]
        finally:
            src.close()

    result = audit(args.voc, args.out, detect, detector.names, iou=args.iou, progress=not args.quiet,
                   overwrite=args.overwrite)
    print(f"model {weights}; thresholds {detector.thresholds.source}; {result.images} images audited")
    print(result.summary(detector.names))
    print(f"proposals.csv, overlays/ and Annotations/ (labels + proposals) written to {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .count.detector import default_weights
    from .measure.calibrate import calibrate

    weights = args.weights or default_weights()
    sidecar, summary = calibrate(weights, args.data, args.split, force=args.force, imgsz=args.imgsz,
                                 device=args.device, progress=not args.quiet, overwrite=args.overwrite)
    print(f"{'class':<10} {'threshold':>9} {'MAE @0.25':>10} {'MAE calibrated':>15}")
    for name, s in summary.items():
        print(f"{name:<10} {s['threshold']:>9.2f} {s['mae_default']:>10.2f} {s['mae_calibrated']:>15.2f}")
    print(f"thresholds written to {sidecar}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .count.detector import default_weights
    from .measure.report import build_report, training_runs

    weights = args.weights or default_weights()
    runs = args.runs if args.runs is not None else training_runs(Path("runs"))
    types = None
    if args.differential is not None:
        if args.types_data is None:
            raise InputError(None, "--differential needs the typed fields it is scored on: give {types_data}")
        types = (args.differential, args.types_data)
    result = build_report(weights, args.data, args.split, runs, args.out, imgsz=args.imgsz, device=args.device,
                          progress=not args.quiet, also=args.also_data, overwrite=args.overwrite, types=types)
    from .measure.report import markdown_table

    print(markdown_table(result["ap"]))
    print(markdown_table(result["count_errors"].reset_index()))
    if len(result["label_sets"]):
        print(markdown_table(result["label_sets"]))
    if len(result["differential"]):
        print(markdown_table(result["differential"]))
    print(f"report written to {args.out / 'report.html'}")
    return 0


def add_convert(sub: Any) -> None:
    p = sub.add_parser("convert", formatter_class=HelpFormatter, help="BCCD / Pascal-VOC -> YOLO labels and data.yaml")
    p.add_argument("--source", action="append", default=None, metavar="[NAME=]PATH",
                   help=f"a VOC folder (BCCD_Dataset checkout, its BCCD/ folder), a YOLO folder (images/<split>/ + "
                        f"labels/<split>/, or one folder of image/label pairs) or a COCO JSON (CVAT, Label Studio, "
                        f"Roboflow exports; images beside it or in images/, split like --split random); give it more than once, each with a "
                        f"name (bccd=..., pbc=...), for one dataset of several sources, each image keeping its source "
                        f"(default {DEFAULT_SOURCE}, downloaded when absent)")
    p.add_argument("--out", type=Path, default=DEFAULT_DATASET, help=f"output dataset folder (default {DEFAULT_DATASET})")
    p.add_argument("--classes", action="append", default=None, metavar="[NAME:]CLASSES",
                   help=f"output class order and XML-name mapping, e.g. '{BCCD_CLASSES}=Platelet|platelets'; any other "
                        f"name is an error. 'auto': every VOC name found, most frequent first (default {BCCD_CLASSES}). "
                        "NAME:WBC,RBC,Platelets gives a YOLO source's class order in its files (else its classes.txt)")
    p.add_argument("--split", choices=("official", "random"), default="official",
                   help="official: ImageSets/Main/{train,val,test}.txt; random: seeded split of all annotations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float_in(0, 0.99), default=0.2, help="with --split random")
    p.add_argument("--test-frac", type=float_in(0, 0.99), default=0.2, help="with --split random")
    p.add_argument("--images", choices=("copy", "hardlink", "symlink"), default="copy")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder bccd-yolo did not make, replacing only this command's outputs")
    p.add_argument("--annotations", action="append", default=None, metavar="[NAME:]PATH",
                   help="another label set for a VOC source's photos (VOC .xml or YOLO .txt named by image id, e.g. "
                        "../shared/txl-pbc-bccd/Annotations): used instead of the photos' own labels, with a report "
                        "of boxes kept, added and removed per class and split")
    p.add_argument("--unlabelled", choices=("drop", "own"), default="drop",
                   help="photos the --annotations set lacks: drop leaves them out, own keeps their own labels "
                        "(default drop)")
    p.add_argument("--same-scale", action="store_true",
                   help="resample every source so its median whole red cell has the first source's size, each field "
                        "centred on a canvas of the first source's image size (train every source at the model's scale)")
    p.add_argument("--repeat", action="append", default=None, metavar="NAME:K",
                   help="write a source's train images K times (weighs a small source up)")
    p.set_defaults(func=cmd_convert)


def add_stages(sub: Any) -> None:
    from .model.architectures import MODELS

    p = sub.add_parser("stages", formatter_class=HelpFormatter, help="print the freeze plan of each stage for a model")
    p.add_argument("--model", default="yolov3", help=f"one of {', '.join(MODELS)} or a model YAML")
    p.set_defaults(func=cmd_stages)


def add_finetune(sub: Any) -> None:
    from .model.architectures import MODELS
    from .train.finetune import DEFAULTS

    p = sub.add_parser(
        "finetune", formatter_class=HelpFormatter, help="train one stage of the transfer-learning protocol (or the from-scratch baseline)",
        epilog="Extra Ultralytics train arguments go after the options as key=value, e.g. lr0=0.001 mosaic=0.5. "
               "--device 0,1 trains on several GPUs with Ultralytics' DDP.",
    )
    p.add_argument("--stage", choices=("1", "2", "3", "full"), default=None,
                   help="1: backbone on COCO; 2: neck on VOC; 3: neck and head on blood cells; "
                        "full: everything, from --weights (nothing frozen)")
    p.add_argument("--scratch", action="store_true", help="train everything from random initialisation (baseline)")
    p.add_argument("--model", default=None, help=f"one of {', '.join(MODELS)} (default yolov3)")
    p.add_argument("--data", default=None, help="data YAML (default: coco.yaml, VOC.yaml, datasets/bccd/data.yaml)")
    p.add_argument("--weights", default=None,
                   help="checkpoint to start from (default: the previous stage's best.pt); darknet X.weights are "
                        "imported (model: its -darknet variant)")
    p.add_argument("--cfg", default=None, help="darknet cfg of --weights X.weights (default: X.cfg beside it)")
    p.add_argument("--epochs", type=POSITIVE, default=None, help=f"default {DEFAULTS['epochs']}")
    p.add_argument("--imgsz", type=IMGSZ, default=None, help=f"default {DEFAULTS['imgsz']}")
    p.add_argument("--batch", type=POSITIVE, default=None, help=f"default {DEFAULTS['batch']}")
    p.add_argument("--device", default=None, help="cpu, 0, or 0,1,... (default: first GPU, else CPU)")
    p.add_argument("--workers", type=int_at_least(0), default=None, help="loader workers (default: 0 on <=2 cores)")
    p.add_argument("--project", default="runs")
    p.add_argument("--name", default=None, help="run name (default stage<N> or scratch)")
    p.add_argument("--resume", action="store_true", help="continue the killed run <project>/<name>")
    p.add_argument("--profile", default=None, help="cpu-demo: yolov3-tiny, imgsz 320, 10 epochs")
    p.add_argument("--resample", type=UNIT, default=None, metavar="P",
                   help="share of training images shrunk by 0.5-0.95 and resampled back, as a coarser scan is "
                        "before counting (default 0)")
    p.add_argument("--refill", type=UNIT, default=None, metavar="P",
                   help="share of training images whose padding (Ultralytics' grey 114 around mosaics) is repainted "
                        "a random grey, so cells cut by a frame are cells whatever lies beyond it (default 0)")
    p.add_argument("--frame", type=UNIT, default=None, metavar="P",
                   help="share of training images cut to a random frame (55-95 %% of each side) and padded, as a photo "
                        "pasted into a slide is; cut cells keep their labels by Ultralytics' rule (default 0)")
    p.add_argument("--stain", type=UNIT, default=None, metavar="P",
                   help="share of training images whose haematoxylin, eosin and DAB densities are each scaled by "
                        "0.8-1.2 and shifted by +-0.05 (scikit-image stain matrices), as stains differ between labs (default 0)")
    p.add_argument("--grey", type=UNIT, default=None, metavar="P", help="share of training images in grey (default 0)")
    p.add_argument("--blur", type=UNIT, default=None, metavar="P",
                   help="share of training images blurred by a Gaussian of sigma 0.5-1.5 px, as focus and optics "
                        "differ (default 0)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other Ultralytics train argument")
    p.set_defaults(func=cmd_finetune)


def add_train_differential(sub: Any) -> None:
    from .data.cell_crops import CROP_UM
    from .train.differential import STAGES, DifferentialRequest

    d = DifferentialRequest("", 0.0)
    p = sub.add_parser(
        "train-differential", formatter_class=HelpFormatter,
        help="train the white-cell type classifier (the differential) on folder-per-class fields",
        epilog="DATA holds train/<type>/*.jpg and val/<type>/*.jpg, each field centred on one typed cell (the layout of "
               "pbc-wbc-types). Extra Ultralytics train arguments go after the options as key=value.")
    p.add_argument("data", help="folder of typed fields: train/<type>/, val/<type>/")
    p.add_argument("--mpp", type=float, required=True, help="micrometres per pixel of the fields (PBC: 0.0987)")
    p.add_argument("--weights", default="shipped",
                   help="start: 'shipped' (the detector's backbone), a .pt, darknet .weights, or 'none' (random)")
    p.add_argument("--stage", choices=tuple(STAGES), default=d.stage,
                   help="head: backbone frozen; full: everything trains")
    p.add_argument("--epochs", type=POSITIVE, default=d.epochs)
    p.add_argument("--imgsz", type=IMGSZ, default=d.imgsz, help="classifier input, px")
    p.add_argument("--batch", type=POSITIVE, default=d.batch)
    p.add_argument("--crop-um", type=float, default=CROP_UM, help="side of each crop, micrometres")
    p.add_argument("--stain", type=UNIT, default=d.stain, metavar="P", help="share of crops with jittered stains")
    p.add_argument("--grey", type=UNIT, default=d.grey, metavar="P", help="share of crops in grey")
    p.add_argument("--blur", type=UNIT, default=d.blur, metavar="P", help="share of crops blurred")
    p.add_argument("--crops", default=None, help="folder for the crops (default datasets/<DATA name>-crops)")
    p.add_argument("--workers", type=int_at_least(0), default=None, help="loader workers (default: 0 on <=2 cores)")
    p.add_argument("--project", default="runs")
    p.add_argument("--name", default="differential")
    p.add_argument("--resume", action="store_true", help="continue the killed run <project>/<name>")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other Ultralytics train argument")
    p.set_defaults(func=cmd_train_differential)


def add_adapt(sub: Any) -> None:
    from .train.adapt import SMALL_DATA

    p = sub.add_parser(
        "adapt", formatter_class=HelpFormatter, help="fine-tune the shipped model to your microscope from a few labelled fields",
        epilog="FOLDER: a VOC folder, a YOLO folder (classes.txt, as count --labels-out writes) or a COCO JSON beside "
               "its images. A quarter of the fields (at least 3) are held back: thresholds are calibrated on them and "
               "the count error before and after is measured on them. Extra Ultralytics train arguments go after the "
               "options as key=value.")
    p.add_argument("folder", type=Path, help="labelled fields")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.pt; its thresholds beside it)")
    p.add_argument("--classes", default=None, help="class mapping onto the model's names, e.g. RBC,WBC=leukocyte,Platelets")
    p.add_argument("--source-classes", default=None, help="class order of YOLO label files without classes.txt")
    p.add_argument("--weights", type=Path, default=None, help="model to adapt (default: the shipped model)")
    p.add_argument("--stage", choices=("3", "full"), default=None,
                   help=f"3: backbone frozen; full: everything trains (default {SMALL_DATA['stage']})")
    p.add_argument("--epochs", type=POSITIVE, default=None, help=f"epochs (default {SMALL_DATA['epochs']}; the last "
                                                                 "epoch's weights are kept)")
    p.add_argument("--imgsz", type=IMGSZ, default=None, help=f"default {SMALL_DATA['imgsz']}")
    p.add_argument("--batch", type=POSITIVE, default=None, help="default: the training fields, at most 16")
    p.add_argument("--images-per-epoch", type=POSITIVE, default=None,
                   help=f"training fields repeated, each copy augmented anew, to at least this many an epoch "
                        f"(default {SMALL_DATA['images_per_epoch']})")
    p.add_argument("--hold-back", type=POSITIVE, default=None, help="fields held back to check on (default a quarter, at least 3)")
    p.add_argument("--seed", type=int, default=0, help="which fields are held back")
    p.add_argument("--project", default="runs")
    p.add_argument("--name", default=None, help="run folder name (default adapt-<out stem>)")
    p.add_argument("--resume", action="store_true", help="continue a killed adapt run")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if bccd-yolo adapt did not write it")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other Ultralytics train argument")
    p.set_defaults(func=cmd_adapt)


def add_import_darknet(sub: Any) -> None:
    p = sub.add_parser("import-darknet", formatter_class=HelpFormatter, help="darknet YOLOv3 .weights -> an Ultralytics checkpoint",
                       description="Load darknet yolov3, yolov3-spp or yolov3-tiny weights into the matching Ultralytics "
                                   "model with darknet's LeakyReLU(0.1); the YOLO output layers are skipped (the "
                                   "Ultralytics head is anchor-free and starts fresh).")
    p.add_argument("weights", type=Path, help="darknet .weights file, or yolov3.weights / yolov3-spp.weights / "
                                              "yolov3-tiny.weights to download darknet's published COCO weights")
    p.add_argument("--cfg", type=Path, default=None, help="its darknet .cfg (default: beside the weights, same stem)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.set_defaults(func=cmd_import_darknet)


def add_count_runtime(p: Any) -> None:
    """count's options of how it runs: device, batch, backend, precision, engine, verdict, progress."""
    p.add_argument("--device", default=None, help="cpu or a GPU index")
    p.add_argument("--batch", type=POSITIVE, default=None,
                   help="a slide's tiles per forward pass (default: 1 with OpenVINO, 2 with ONNX Runtime: on CPU more "
                        "only costs memory; 8 with torch)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx", "openvino"), default="auto",
                   help="auto: OpenVINO on CPU where installed (the fastest measured here), else torch; torch on a "
                        "GPU. onnx and openvino are exported once and cached beside the weights")
    p.add_argument("--precision", choices=("fp32", "auto", "int8"), default=DEFAULT_PRECISION,
                   help="auto (default): OpenVINO's choice, bf16 on CPUs with AVX512-BF16 or AMX (about twice as fast; "
                        "on val, counts within 0.01 per field of fp32), else fp32; fp32 pins it (the torch backend's "
                        "numbers, the same on every CPU); int8 runs the NNCF-quantised OpenVINO export (bccd-yolo "
                        "export --precision int8). The JSON records what ran")
    p.add_argument("--all-tiles", action="store_true",
                   help="predict every tile of a slide, also those of bare background (skipped by default: a "
                        "low-resolution read finds where stained cells can be)")
    p.add_argument("--labels-out", type=Path, default=None, metavar="DIR",
                   help="write the detections as labels to correct in LabelImg, CVAT or Label Studio: DIR/Annotations "
                        "(VOC XML) with DIR/JPEGImages, and DIR/labels (YOLO txt, classes.txt); bccd-yolo convert reads "
                        "DIR back as a VOC folder")
    p.add_argument("--differential", type=Path, default=None, metavar="PT",
                   help="white-cell type classifier (default: the shipped one): each WBC's type, the differential "
                        "per 100 white cells with 95%% intervals, erythroblasts per 100 white cells")
    p.add_argument("--no-differential", action="store_true", help="count white cells without typing them")
    p.add_argument("--no-qc", action="store_true",
                   help="leave out the qc verdict (per image: reasons its counts may not be trusted, e.g. stain with few "
                        "cells found, most cells near their threshold, red cells of the wrong size)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: tiles of many slides on a pool of Ray workers, one model each (pip install "
                        "'bccd-yolo[ray]'); the same counts as local")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (auto, or ray://host:10001; default: start a local Ray)")
    p.add_argument("--workers", type=POSITIVE, default=None, help="Ray workers (default: one per CPU, or per GPU share)")
    p.add_argument("--gpus-per-worker", type=float_in(0, 8), default=0.0, help="GPUs per Ray worker (e.g. 0.5: two per GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_count(sub: Any) -> None:
    from .core.edges import DEFAULT_EDGE, EdgeRule
    from .count.counting import TILE_ABOVE
    from .count.options import DEFAULT_OVERLAP

    p = sub.add_parser("count", formatter_class=HelpFormatter, help="count RBC, WBC and platelets in images, folders and slides")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files, folders of images, or slides")
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--conf", type=conf_spec, default=None,
                   help="confidence threshold: one number for all classes, or e.g. RBC=0.5,WBC=0.3 "
                        "(default: the model's calibrated thresholds, else 0.25)")
    p.add_argument("--iou", type=UNIT, default=0.7, help="NMS IoU threshold")
    p.add_argument("--max-det", type=POSITIVE, default=300, help="most detections per image or tile")
    p.add_argument("--imgsz", type=IMGSZ, default=None,
                   help="network input size (default: the model's training size); another size shows every input "
                        "that much smaller or larger to the model (faster or finer, at its accuracy's cost)")
    p.add_argument("--tile", type=tile_size, default=None,
                   help=f"tile edge in input pixels for images over {TILE_ABOVE} tiles wide or high; 0 never tiles "
                        "(default: the network's input size at the model's scale). Tiles are resampled to the model's "
                        "scale, so the size trades speed and memory, not counts")
    p.add_argument("--overlap", type=float_in(0, 0.9), default=DEFAULT_OVERLAP, help="tile overlap, a fraction of --tile")
    p.add_argument("--edge", choices=[r.value for r in EdgeRule], default=DEFAULT_EDGE.value,
                   help="cells cut by the image edge: all counts every cell seen (as complete labels annotate them); "
                        "interior only cells clear of the edge; frame the unbiased counting frame (top/left edges "
                        "count, right/bottom do not), so counts of adjacent fields add up")
    p.add_argument("--out", type=Path, default=None, help="folder for overlay pictures")
    p.add_argument("--json", type=Path, default=None, help="write counts and detections as JSON")
    p.add_argument("--csv", type=Path, default=None, help="write one row per image as CSV")
    p.add_argument("--mpp", type=mpp_spec, default=None,
                   help="micrometres per pixel of the inputs, or auto to estimate it from the red cells (default: what "
                        "the file records, e.g. TIFF resolution or OpenSlide mpp, else auto, else the model's training "
                        "scale). Inputs are resampled to the model's scale; a scale the red cells contradict by over "
                        "25 %% is a qc reason")
    p.add_argument("--regions", type=Path, default=None,
                   help="GeoJSON of polygons (QuPath annotation export): counts, ratios and densities per region, cells "
                        "assigned by box centre; tiles touching no region are not read")
    p.add_argument("--geojson", type=Path, default=None,
                   help="QuPath-importable detections: a .geojson file for one input, else a folder of <name>.geojson")
    add_count_runtime(p)
    p.set_defaults(func=cmd_count)


def add_export(sub: Any) -> None:
    p = sub.add_parser("export", formatter_class=HelpFormatter,
                       help="export a checkpoint for counting without torch (OpenVINO or ONNX; INT8 with NNCF)")
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--backend", choices=("openvino", "onnx"), default="openvino")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: post-training quantisation by NNCF (pip install nncf), calibrated on --data's train split")
    p.add_argument("--data", default=None, help="data YAML whose train images calibrate INT8")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export)


def add_audit(sub: Any) -> None:
    from .measure.audit import AUDIT_IOU

    p = sub.add_parser("audit", formatter_class=HelpFormatter, help="propose cells a labelled VOC folder missed, and labels the model does not find")
    p.add_argument("voc", type=Path, metavar="VOCDIR", help="Pascal-VOC folder (Annotations/, JPEGImages/); only read")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for proposals.csv, overlays/ and Annotations/ (labels plus proposals, VOC XML)")
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--conf", type=conf_spec, default=None, help="thresholds as in count (default: the model's calibrated ones)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder bccd-yolo did not make, replacing only this command's outputs")
    p.add_argument("--iou", type=UNIT, default=AUDIT_IOU,
                   help=f"a detection and a label at this IoU or more are one cell (default {AUDIT_IOU})")
    p.add_argument("--imgsz", type=IMGSZ, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_audit)


def add_calibrate(sub: Any) -> None:
    p = sub.add_parser("calibrate", formatter_class=HelpFormatter, help="choose a confidence threshold per class that minimises count error")
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--data", default=str(DEFAULT_DATASET / "data.yaml"))
    p.add_argument("--split", default="val", choices=("val", "train", "test"), help="never test, unless --force")
    p.add_argument("--force", action="store_true", help="allow --split test")
    p.add_argument("--overwrite", action="store_true", help="replace the shipped model's calibration")
    p.add_argument("--imgsz", type=IMGSZ, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate)


def add_report(sub: Any) -> None:
    p = sub.add_parser("report", formatter_class=HelpFormatter, help="per-class AP, counting error and timing tables with plots")
    p.add_argument("--weights", type=Path, default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--data", default=str(DEFAULT_DATASET / "data.yaml"))
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument("--runs", type=Path, nargs="*", default=None, help="run folders with timing.json (default: runs/*)")
    p.add_argument("--also-data", nargs="+", default=None, metavar="DATA",
                   help="data YAMLs of other label sets for the same photos (e.g. complete labels from convert "
                        "--annotations): AP and count error against each, side by side")
    p.add_argument("--out", type=Path, default=Path("runs/report"))
    p.add_argument("--differential", type=Path, default=None, metavar="PT",
                   help="also score a white-cell type classifier: confusion matrix, precision, recall, F1 per type")
    p.add_argument("--types-data", type=Path, default=None, metavar="FOLDER",
                   help="typed fields it is scored on (val/<type>/), e.g. ../shared/pbc-wbc-types")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an existing folder bccd-yolo did not make, replacing only this command's outputs")
    p.add_argument("--imgsz", type=IMGSZ, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_report)


def add_serve(sub: Any) -> None:
    from .serve.cli import add_serve as add

    add(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bccd-yolo", formatter_class=HelpFormatter,
        description="Blood-cell (RBC, WBC, platelet) detection and counting with staged YOLOv3 transfer learning.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_convert(sub)
    add_stages(sub)
    add_finetune(sub)
    add_adapt(sub)
    add_train_differential(sub)
    add_import_darknet(sub)
    add_count(sub)
    add_export(sub)
    add_audit(sub)
    add_calibrate(sub)
    add_report(sub)
    add_serve(sub)
    return parser


def configure_logging(quiet: bool) -> None:
    """The library logs and stays silent by default; the command line shows its INFO messages on stdout and
    warnings on stderr, each as a plain line."""
    import logging

    log = logging.getLogger("bccd_yolo")
    for h in list(log.handlers):
        if getattr(h, "_bccd_cli", False):
            log.removeHandler(h)
    info = logging.StreamHandler(sys.stdout)
    info.addFilter(lambda r: r.levelno < logging.WARNING)
    warn = logging.StreamHandler(sys.stderr)
    warn.setLevel(logging.WARNING)
    for h, fmt in ((info, "%(message)s"), (warn, "warning: %(message)s")):
        h.setFormatter(logging.Formatter(fmt))
        h._bccd_cli = True  # type: ignore[attr-defined]
        log.addHandler(h)
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, batch schedulers, docker stop), unwound like Ctrl-C so temporary files are removed."""


def _terminate(signum, frame) -> NoReturn:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "quiet", False))
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except InputError as e:
        print(f"bccd-yolo {args.command}: error: {e.render(as_flag)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"bccd-yolo {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"bccd-yolo {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
