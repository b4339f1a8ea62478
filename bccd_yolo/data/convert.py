"""Pascal-VOC folder -> Ultralytics dataset: images/, labels/, data.yaml and report.json."""

from __future__ import annotations

import json
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..core.errors import InputError
from ..core.fsutil import check_output_dir, staged_dir
from ..core.matching import match
from .labels import boxes_as_detections, read_yolo_boxes, yolo_label_lines
from .sources import SEPARATOR, SourceData, SourceSpec, on_canvas, plan_scales
from .voc import Box, Defect, ImageAnnotation, VocLayout, parse_annotation, raw_class_names, read_split_list
from .yolo_folder import read_yolo_folder

SPLITS = ("train", "val", "test")
BCCD_CLASSES = "RBC,WBC,Platelets"  # the one place class names are written; downstream reads data.yaml
IMAGE_MODES = ("copy", "hardlink", "symlink")
UNLABELLED = ("drop", "own")  # photos the other annotation set lacks: left out, or kept with their own labels
DIFF_IOU = 0.5  # a box of the other set "keeps" one of the photo's own labels at this IoU (VOC's match rule)


@dataclass(frozen=True)
class ClassSpec:
    """Output class names in index order, and which XML names map to each."""

    names: tuple[str, ...]
    class_of: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> "ClassSpec":
        """`RBC,WBC,Platelets=Platelet|platelets`: class order, plus extra XML names per class."""
        names, class_of = [], {}
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            name, _, aliases = entry.partition("=")
            name = name.strip()
            names.append(name)
            for alias in [name, *aliases.split("|")]:
                if alias.strip():
                    class_of[alias.strip()] = name
        if not names or len(set(names)) != len(names):
            raise InputError(None, f"{text!r}: give distinct class names, e.g. RBC,WBC,Platelets", option="classes")
        return cls(tuple(names), class_of)

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> "ClassSpec":
        """Every name found, most frequent first (BCCD: RBC, WBC, Platelets)."""
        names = tuple(sorted(counts, key=lambda n: (-counts[n], n)))
        return cls(names, {n: n for n in names})


@dataclass
class SplitSummary:
    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)


@dataclass
class LabelDiff:
    """How another annotation set differs from the photos' own labels, per split and class."""

    annotations: str
    unlabelled: str  # drop or own
    relabelled: dict[str, int] = field(default_factory=dict)  # photos per split with labels from `annotations`
    without: dict[str, list[str]] = field(default_factory=dict)  # photos per split the set lacks
    boxes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # split -> class -> kept/added/removed

    def table(self, names: tuple[str, ...] | list[str]) -> list[str]:
        verb = "left out" if self.unlabelled == "drop" else "kept with their own labels"
        rows = [f"labels from {self.annotations} (a box is kept at IoU >= {DIFF_IOU} with one of the photo's own):",
                f"{'split':<6} {'class':<10} {'kept':>6} {'added':>6} {'removed':>8}"]
        for split, per_class in self.boxes.items():
            rows += [f"{split:<6} {n:<10} {per_class[n]['kept']:>6} {per_class[n]['added']:>6} {per_class[n]['removed']:>8}"
                     for n in names]
        rows += [f"{split}: {self.relabelled[split]} photos relabelled, {len(ids)} without these labels ({verb})"
                 for split, ids in self.without.items()]
        return rows


@dataclass
class ConversionResult:
    source: str
    out: str
    names: list[str]
    splits: dict[str, SplitSummary]
    defects: list[Defect]
    labels: LabelDiff | None = None
    sources: dict[str, dict] | None = None  # per source: path, format, images per split, red-cell size, resampling

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        head = f"{'split':<6} {'images':>6} " + " ".join(f"{n:>10}" for n in self.names)
        rows = [head]
        for split, s in self.splits.items():
            rows.append(f"{split:<6} {s.images:>6} " + " ".join(f"{s.boxes.get(n, 0):>10}" for n in self.names))
        if self.labels:
            rows += self.labels.table(self.names)
        for name, info in (self.sources or {}).items():
            rows.append(f"source {name} ({info['format']}): " + ", ".join(f"{s} {n}" for s, n in info["images"].items())
                        + (f"; red cells {info['rbc_px']} px, resampled x{info['factor']}" if info["rbc_px"] else "")
                        + (f"; train repeated x{info['repeat']}" if info["repeat"] > 1 else ""))
        rows.append(f"{len(self.defects)} defect(s) found" + (":" if self.defects else ""))
        rows += [f"  {d.file} object {d.object}: {d.problem} -> {d.action}" for d in self.defects]
        return "\n".join(rows)


def plan_splits(
    layout: VocLayout, split: str, seed: int = 0, val_frac: float = 0.2, test_frac: float = 0.2
) -> dict[str, list[str]]:
    """Image ids per split: from ImageSets/Main (official) or a seeded shuffle of all annotations (random)."""
    if split == "official":
        plan = {s: read_split_list(layout.splits / f"{s}.txt") for s in SPLITS}
    elif split == "random":
        if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
            raise InputError(None, f"validation fraction {val_frac} and test fraction {test_frac} must be >= 0 and sum "
                                   "below 1", option="val_frac")
        ids = sorted(p.stem for p in layout.annotations.glob("*.xml"))
        if not ids:
            raise InputError(layout.annotations, "no .xml annotations found")
        random.Random(seed).shuffle(ids)
        n_val, n_test = round(len(ids) * val_frac), round(len(ids) * test_frac)
        plan = {"train": sorted(ids[n_val + n_test :]), "val": sorted(ids[:n_val]), "test": sorted(ids[n_val : n_val + n_test])}
    else:
        raise InputError(None, f"{split!r}: choose official or random", option="split")
    seen: dict[str, str] = {}
    for s, ids in plan.items():
        for image_id in ids:
            if image_id in seen:
                raise InputError(layout.splits / f"{s}.txt", f"image {image_id} is also listed in {seen[image_id]}")
            seen[image_id] = s
    return plan


def data_yaml_text(names: tuple[str, ...], labels: LabelDiff | None = None, sources: dict[str, dict] | None = None) -> str:
    """data.yaml without `path:`, so Ultralytics resolves the splits against the yaml's own folder."""
    body = {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    if sources:
        body["sources"] = {k: {"rbc_px": v["rbc_px"], "factor": v["factor"]} for k, v in sources.items()}
    card = ""
    if labels:
        left = sum(len(v) for v in labels.without.values())
        card = (f"# Labels: {labels.annotations} where it has the photo; {left} photos without them were "
                + ("left out" if labels.unlabelled == "drop" else "kept with their own labels") + " (see report.json).\n")
    return "# Written by bccd-yolo convert. Paths are relative to this file's folder.\n" + card + yaml.safe_dump(
        body, sort_keys=False
    )


class OtherLabels:
    """A second annotation set for the same photos: VOC XML (`Annotations/` or a folder of .xml) or YOLO .txt."""

    def __init__(self, folder: Path, layout: VocLayout, spec: ClassSpec):
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, "annotations folder does not exist")
        if (folder / "Annotations").is_dir():
            folder = folder / "Annotations"
        self.folder, self.layout, self.spec = folder, layout, spec
        self.xml = {p.stem: p for p in folder.glob("*.xml")}
        self.txt = {p.stem: p for p in folder.glob("*.txt") if p.stem not in ("classes", "train", "val", "test")}
        if not self.xml and not self.txt:
            raise InputError(folder, "holds no .xml (VOC) or .txt (YOLO) annotations")
        if self.xml and self.txt:
            raise InputError(folder, "holds both .xml and .txt annotations: give one kind")

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.xml or image_id in self.txt

    def read(self, own: ImageAnnotation) -> tuple[list[Box], list[Defect]]:
        if own.image_id in self.xml:
            ann, defects = parse_annotation(self.xml[own.image_id], self.layout, self.spec.class_of)
            return ann.boxes, defects
        return read_yolo_boxes(self.txt[own.image_id], self.spec.names, own.width, own.height), []


def _place_image(src: Path, dst: Path, mode: str) -> None:
    if mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError:  # another filesystem: a copy is the only way
            shutil.copy2(src, dst)
    else:
        shutil.copy2(src, dst)


def read_voc_source(
    spec: SourceSpec, classes: ClassSpec | None, split: str, seed: int, val_frac: float, test_frac: float,
    unlabelled: str,
) -> tuple[SourceData, ClassSpec, LabelDiff | None]:
    """A VOC folder's annotations per split (relabelled from `spec.annotations` where given)."""
    layout = VocLayout.find(spec.path)
    plan = plan_splits(layout, split, seed, val_frac, test_frac)
    xml_of = {s: [layout.annotations / f"{i}.xml" for i in ids] for s, ids in plan.items()}
    all_xml = [p for paths in xml_of.values() for p in paths]
    classes = classes or ClassSpec.from_counts(raw_class_names(all_xml))
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # JPEG decoding releases the GIL
        parsed = list(pool.map(lambda p: parse_annotation(p, layout, classes.class_of), all_xml))
    by_xml = dict(zip(all_xml, parsed))
    diff = None if spec.annotations is None else relabel(by_xml, xml_of, OtherLabels(spec.annotations, layout, classes),
                                                          classes, str(spec.annotations), unlabelled)
    data = SourceData(spec, "voc", str(layout.root), {s: [by_xml[p][0] for p in paths] for s, paths in xml_of.items()},
                      [d for paths in xml_of.values() for p in paths for d in by_xml[p][1]])
    return data, classes, diff


def relabel(by_xml: dict, xml_of: dict[str, list[Path]], other: OtherLabels, spec: ClassSpec, name: str,
            unlabelled: str) -> LabelDiff:
    """Replace each photo's boxes by the other set's (in place), counting boxes kept, added and removed."""
    diff = LabelDiff(name, unlabelled)
    for s, paths in xml_of.items():
        diff.boxes[s] = {n: {"kept": 0, "added": 0, "removed": 0} for n in spec.names}
        diff.without[s], kept_paths = [], []
        for xml_path in paths:
            own, found = by_xml[xml_path]
            if own.image_id not in other:
                diff.without[s].append(own.image_id)
                if unlabelled == "own":
                    kept_paths.append(xml_path)
                continue
            boxes, more = other.read(own)
            _count_kept(diff.boxes[s], boxes, own.boxes, spec.names)
            by_xml[xml_path] = (ImageAnnotation(own.image_id, own.image_path, own.width, own.height, boxes), found + more)
            kept_paths.append(xml_path)
        diff.relabelled[s] = len(paths) - len(diff.without[s])
        xml_of[s] = kept_paths
    return diff


def _count_kept(counts: dict[str, dict[str, int]], boxes: list[Box], own: list[Box], names: tuple[str, ...]) -> None:
    m = match(boxes_as_detections(boxes, names), boxes_as_detections(own, names), DIFF_IOU)
    for n in names:
        mine = np.array([b.name == n for b in boxes], bool)
        theirs = np.array([b.name == n for b in own], bool)
        counts[n]["kept"] += int(m.pred[mine].sum()) if len(mine) else 0
        counts[n]["added"] += int((~m.pred[mine]).sum()) if len(mine) else 0
        counts[n]["removed"] += int((~m.truth[theirs]).sum()) if len(theirs) else 0


def read_source(spec: SourceSpec, classes: ClassSpec, source_classes: str | None, split: str, seed: int,
                val_frac: float, test_frac: float, unlabelled: str) -> tuple[SourceData, LabelDiff | None]:
    """A VOC folder, a YOLO folder or a COCO JSON; YOLO files' class order from `source_classes`, COCO category
    and VOC names mapped by `classes`."""
    if Path(spec.path).suffix.lower() == ".json" and Path(spec.path).is_file():
        from .coco import read_coco

        splits, defects = read_coco(spec.path, classes.class_of, seed, val_frac, test_frac if split == "random" else 0.0)
        return SourceData(spec, "coco", str(spec.path), splits, defects), None
    if not Path(spec.path).is_dir():
        raise InputError(spec.path, "source folder does not exist")
    is_voc = (Path(spec.path) / "Annotations").is_dir() or any(Path(spec.path).glob("*/Annotations"))
    if is_voc:
        data, _, diff = read_voc_source(spec, classes, split, seed, val_frac, test_frac, unlabelled)
        return data, diff
    if spec.annotations is not None:
        raise InputError(spec.annotations, "another label set applies to VOC sources only", option="annotations")
    order = list(ClassSpec.parse(source_classes).names) if source_classes else None
    splits, defects, _ = read_yolo_folder(spec.path, order, classes.class_of, seed, val_frac,
                                          test_frac if split == "random" else 0.0)
    return SourceData(spec, "yolo", str(spec.path), splits, defects), None


def _place_array(a: np.ndarray, dst: Path) -> None:
    import cv2

    if not cv2.imwrite(str(dst), cv2.cvtColor(a, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise InputError(dst, "could not be written")


def write_source_images(tmp: Path, data: SourceData, names: tuple[str, ...], images: str, prefix: str,
                        canvas: tuple[int, int] | None, summaries: dict[str, SplitSummary]) -> None:
    """One source's images and labels into the staged dataset (resampled onto the canvas where asked)."""
    from ..core.images import open_image

    for s, anns in data.splits.items():
        summary = summaries.setdefault(s, SplitSummary(boxes={n: 0 for n in names}))
        copies = data.spec.repeat if s == "train" else 1
        for ann in anns:
            out_ann, pixels = ann, None
            if canvas is not None and (data.factor != 1.0 or (ann.width, ann.height) != canvas):
                src = open_image(ann.image_path)
                try:
                    pixels, out_ann = on_canvas(src.read(0, 0, ann.width, ann.height), ann, data.factor, canvas)
                finally:
                    src.close()
            lines = "".join(line + "\n" for line in yolo_label_lines(out_ann, names))
            for r in range(copies):
                stem = prefix + ann.image_path.stem + (f"{SEPARATOR}r{r}" if r else "")
                suffix = ".jpg" if pixels is not None else ann.image_path.suffix
                dst = tmp / "images" / s / f"{stem}{suffix}"
                if pixels is not None:
                    _place_array(pixels, dst)
                else:
                    _place_image(ann.image_path, dst, images)
                (tmp / "labels" / s / f"{stem}.txt").write_text(lines)
                summary.images += 1
                for b in ann.boxes:
                    summary.boxes[b.name] += 1


def convert_sources(
    specs: list[SourceSpec],
    out: Path,
    classes: str = BCCD_CLASSES,
    source_classes: dict[str, str] | None = None,
    split: str = "official",
    seed: int = 0,
    val_frac: float = 0.2,
    test_frac: float = 0.2,
    images: str = "copy",
    unlabelled: str = "drop",
    same_scale: bool = False,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert VOC and YOLO folders into one Ultralytics dataset at `out`; `out` is replaced only on success.

    `classes`: output class order and name mapping (see ClassSpec.parse), or "auto" (VOC: every name found).
    `source_classes`: a YOLO source's class order in its files, by source name (None: every YOLO source).
    `same_scale`: resample every source to the first one's red-cell size (see `sources`).
    """
    if images not in IMAGE_MODES:
        raise InputError(None, f"{images!r}: choose one of {', '.join(IMAGE_MODES)}", option="images")
    if unlabelled not in UNLABELLED:
        raise InputError(None, f"{unlabelled!r}: choose one of {', '.join(UNLABELLED)}", option="unlabelled")
    if not specs:
        raise InputError(None, "give at least one source", option="source")
    if len({s.name for s in specs}) != len(specs):
        raise InputError(None, "two sources share a name: name each, e.g. bccd=PATH pbc=PATH", option="source")
    inputs = [s.path for s in specs] + [s.annotations for s in specs]
    check_output_dir(Path(out), overwrite, inputs)
    read, spec, diff = read_sources(specs, classes, source_classes or {}, split, seed, val_frac, test_frac, unlabelled)
    canvas = plan_scales(read, spec.names) if same_scale else None
    multi = len(read) > 1
    summaries: dict[str, SplitSummary] = {}
    with staged_dir(Path(out), overwrite, inputs) as tmp:
        for split_name in SPLITS:
            (tmp / "images" / split_name).mkdir(parents=True)
            (tmp / "labels" / split_name).mkdir(parents=True)
        for data in read:
            write_source_images(tmp, data, spec.names, images, data.spec.name + SEPARATOR if multi else "", canvas,
                                summaries)
        per_source = {d.spec.name: source_summary(d, canvas) for d in read} if multi or same_scale else None
        (tmp / "data.yaml").write_text(data_yaml_text(spec.names, diff, per_source))
        defects = sorted((d for data in read for d in data.defects), key=lambda d: (d.file, -1 if d.object is None else d.object))
        root = read[0].root if not multi else ", ".join(f"{d.spec.name}={d.root}" for d in read)
        result = ConversionResult(root, str(Path(out)), list(spec.names), {s: summaries.get(s, SplitSummary(0, {n: 0 for n in spec.names})) for s in SPLITS},
                                  defects, diff, per_source)
        (tmp / "report.json").write_text(result.to_json())
    return result


def read_sources(specs: list[SourceSpec], classes: str, source_classes: dict[str, str], split: str, seed: int,
                 val_frac: float, test_frac: float, unlabelled: str) -> tuple[list[SourceData], ClassSpec, LabelDiff | None]:
    """Every source read, the output classes (from `classes`, or for "auto" the first VOC source's names), and the
    label-set comparison of the source relabelled by --annotations, if any."""
    spec = None if classes == "auto" else ClassSpec.parse(classes)
    read: list[SourceData] = []
    diff = None
    for s in specs:
        if spec is None:
            if not ((Path(s.path) / "Annotations").is_dir() or any(Path(s.path).glob("*/Annotations"))):
                raise InputError(s.path, "classes 'auto' reads VOC names; give the class order for YOLO labels", option="classes")
            data, spec, d = read_voc_source(s, None, split, seed, val_frac, test_frac, unlabelled)
        else:
            data, d = read_source(s, spec, source_classes.get(s.name), split, seed, val_frac, test_frac, unlabelled)
        diff = diff or d
        read.append(data)
    assert spec is not None
    return read, spec, diff


def source_summary(data: SourceData, canvas: tuple[int, int] | None) -> dict:
    """What data.yaml and report.json say of one source."""
    return {"path": data.root, "format": data.format, "images": {s: len(a) for s, a in data.splits.items()},
            "repeat": data.spec.repeat, "rbc_px": None if data.rbc_px is None else round(data.rbc_px, 2),
            "factor": round(data.factor, 4), "canvas": list(canvas) if canvas else None}


def convert(
    source: Path,
    out: Path,
    classes: str = BCCD_CLASSES,
    split: str = "official",
    seed: int = 0,
    val_frac: float = 0.2,
    test_frac: float = 0.2,
    images: str = "copy",
    annotations: Path | None = None,
    unlabelled: str = "drop",
    overwrite: bool = False,
) -> ConversionResult:
    """Convert one VOC (or YOLO) folder into an Ultralytics dataset at `out`; `out` is replaced only on success.

    `classes`: class order and XML-name mapping (see ClassSpec.parse), or "auto" for every name found.
    `annotations`: another label set for the same photos, used instead of their own labels where it has
    the photo; photos it lacks are left out (`unlabelled="drop"`) or keep their own labels ("own").
    """
    spec = SourceSpec("bccd", Path(source), annotations=None if annotations is None else Path(annotations))
    return convert_sources([spec], out, classes, None, split, seed, val_frac, test_frac, images, unlabelled, False, overwrite)
