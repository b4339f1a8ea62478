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

from .errors import InputError
from .fsutil import check_output_dir, staged_dir
from .labels import boxes_as_detections, read_yolo_boxes, yolo_label_lines
from .matching import match
from .voc import Box, Defect, ImageAnnotation, VocLayout, parse_annotation, raw_class_names, read_split_list

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        head = f"{'split':<6} {'images':>6} " + " ".join(f"{n:>10}" for n in self.names)
        rows = [head]
        for split, s in self.splits.items():
            rows.append(f"{split:<6} {s.images:>6} " + " ".join(f"{s.boxes.get(n, 0):>10}" for n in self.names))
        if self.labels:
            rows += self.labels.table(self.names)
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


def data_yaml_text(names: tuple[str, ...], labels: LabelDiff | None = None) -> str:
    """data.yaml without `path:`, so Ultralytics resolves the splits against the yaml's own folder."""
    body = {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
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
    """Convert a VOC folder into an Ultralytics dataset at `out`; `out` is replaced only on success.

    `classes`: class order and XML-name mapping (see ClassSpec.parse), or "auto" for every name found.
    `annotations`: another label set for the same photos, used instead of their own labels where it has
    the photo; photos it lacks are left out (`unlabelled="drop"`) or keep their own labels ("own").
    """
    if images not in IMAGE_MODES:
        raise InputError(None, f"{images!r}: choose one of {', '.join(IMAGE_MODES)}", option="images")
    if unlabelled not in UNLABELLED:
        raise InputError(None, f"{unlabelled!r}: choose one of {', '.join(UNLABELLED)}", option="unlabelled")
    layout = VocLayout.find(Path(source))
    inputs = [layout.root, Path(source), annotations]
    check_output_dir(Path(out), overwrite, inputs)
    plan = plan_splits(layout, split, seed, val_frac, test_frac)
    xml_of = {s: [layout.annotations / f"{i}.xml" for i in ids] for s, ids in plan.items()}
    all_xml = [p for paths in xml_of.values() for p in paths]
    spec = ClassSpec.from_counts(raw_class_names(all_xml)) if classes == "auto" else ClassSpec.parse(classes)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # JPEG decoding releases the GIL
        parsed = list(pool.map(lambda p: parse_annotation(p, layout, spec.class_of), all_xml))
    by_xml = dict(zip(all_xml, parsed))
    diff = None
    if annotations is not None:
        other = OtherLabels(Path(annotations), layout, spec)
        diff = LabelDiff(str(annotations), unlabelled)
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
                m = match(boxes_as_detections(boxes, spec.names), boxes_as_detections(own.boxes, spec.names), DIFF_IOU)
                for k, n in enumerate(spec.names):
                    mine = np.array([b.name == n for b in boxes], bool)
                    theirs = np.array([b.name == n for b in own.boxes], bool)
                    counts = diff.boxes[s][n]
                    counts["kept"] += int(m.pred[mine].sum()) if len(mine) else 0
                    counts["added"] += int((~m.pred[mine]).sum()) if len(mine) else 0
                    counts["removed"] += int((~m.truth[theirs]).sum()) if len(theirs) else 0
                by_xml[xml_path] = (ImageAnnotation(own.image_id, own.image_path, own.width, own.height, boxes),
                                    found + more)
                kept_paths.append(xml_path)
            diff.relabelled[s] = len(paths) - len(diff.without[s])
            xml_of[s] = kept_paths

    defects: list[Defect] = []
    summaries: dict[str, SplitSummary] = {}
    with staged_dir(Path(out), overwrite, inputs) as tmp:
        for s, paths in xml_of.items():
            (tmp / "images" / s).mkdir(parents=True)
            (tmp / "labels" / s).mkdir(parents=True)
            summary = SplitSummary(boxes={n: 0 for n in spec.names})
            for xml_path in paths:
                ann, found = by_xml[xml_path]
                defects += found
                lines = yolo_label_lines(ann, spec.names)
                _place_image(ann.image_path, tmp / "images" / s / ann.image_path.name, images)
                label = tmp / "labels" / s / f"{ann.image_path.stem}.txt"
                label.write_text("".join(line + "\n" for line in lines))
                summary.images += 1
                for b in ann.boxes:
                    summary.boxes[b.name] += 1
            summaries[s] = summary
        (tmp / "data.yaml").write_text(data_yaml_text(spec.names, diff))
        defects.sort(key=lambda d: (d.file, -1 if d.object is None else d.object))
        result = ConversionResult(str(layout.root), str(Path(out)), list(spec.names), summaries, defects, diff)
        (tmp / "report.json").write_text(result.to_json())
    return result
