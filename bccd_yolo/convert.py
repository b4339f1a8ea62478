"""Pascal-VOC folder -> Ultralytics dataset: images/, labels/, data.yaml and report.json."""

from __future__ import annotations

import json
import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import InputError
from .fsutil import staged_dir
from .voc import Defect, ImageAnnotation, VocLayout, parse_annotation, raw_class_names, read_split_list

SPLITS = ("train", "val", "test")
BCCD_CLASSES = "RBC,WBC,Platelets"  # the one place class names are written; downstream reads data.yaml
IMAGE_MODES = ("copy", "hardlink", "symlink")


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
            raise InputError(None, f"--classes {text!r}: give distinct class names, e.g. RBC,WBC,Platelets")
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
class ConversionResult:
    source: str
    out: str
    names: list[str]
    splits: dict[str, SplitSummary]
    defects: list[Defect]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        head = f"{'split':<6} {'images':>6} " + " ".join(f"{n:>10}" for n in self.names)
        rows = [head]
        for split, s in self.splits.items():
            rows.append(f"{split:<6} {s.images:>6} " + " ".join(f"{s.boxes.get(n, 0):>10}" for n in self.names))
        rows.append(f"{len(self.defects)} defect(s) found:")
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
            raise InputError(None, f"--val-frac {val_frac} and --test-frac {test_frac} must be >= 0 and sum below 1")
        ids = sorted(p.stem for p in layout.annotations.glob("*.xml"))
        if not ids:
            raise InputError(layout.annotations, "no .xml annotations found")
        random.Random(seed).shuffle(ids)
        n_val, n_test = round(len(ids) * val_frac), round(len(ids) * test_frac)
        plan = {"train": sorted(ids[n_val + n_test :]), "val": sorted(ids[:n_val]), "test": sorted(ids[n_val : n_val + n_test])}
    else:
        raise InputError(None, f"--split {split!r}: choose official or random")
    seen: dict[str, str] = {}
    for s, ids in plan.items():
        for image_id in ids:
            if image_id in seen:
                raise InputError(layout.splits / f"{s}.txt", f"image {image_id} is also listed in {seen[image_id]}")
            seen[image_id] = s
    return plan


def yolo_label_lines(ann: ImageAnnotation, names: tuple[str, ...]) -> list[str]:
    """`class cx cy w h`, normalised to the image size, 6 decimals."""
    index = {n: i for i, n in enumerate(names)}
    w, h = ann.width, ann.height
    return [
        f"{index[b.name]} {(b.x1 + b.x2) / 2 / w:.6f} {(b.y1 + b.y2) / 2 / h:.6f} {b.width / w:.6f} {b.height / h:.6f}"
        for b in ann.boxes
    ]


def data_yaml_text(names: tuple[str, ...]) -> str:
    """data.yaml without `path:`, so Ultralytics resolves the splits against the yaml's own folder."""
    body = {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    return "# Written by bccd-yolo convert. Paths are relative to this file's folder.\n" + yaml.safe_dump(
        body, sort_keys=False
    )


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
) -> ConversionResult:
    """Convert a VOC folder into an Ultralytics dataset at `out`; `out` is replaced only on success.

    `classes`: class order and XML-name mapping (see ClassSpec.parse), or "auto" for every name found.
    """
    if images not in IMAGE_MODES:
        raise InputError(None, f"--images {images!r}: choose one of {', '.join(IMAGE_MODES)}")
    layout = VocLayout.find(Path(source))
    plan = plan_splits(layout, split, seed, val_frac, test_frac)
    xml_of = {s: [layout.annotations / f"{i}.xml" for i in ids] for s, ids in plan.items()}
    all_xml = [p for paths in xml_of.values() for p in paths]
    spec = ClassSpec.from_counts(raw_class_names(all_xml)) if classes == "auto" else ClassSpec.parse(classes)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # JPEG decoding releases the GIL
        parsed = list(pool.map(lambda p: parse_annotation(p, layout, spec.class_of), all_xml))
    by_xml = dict(zip(all_xml, parsed))

    defects: list[Defect] = []
    summaries: dict[str, SplitSummary] = {}
    with staged_dir(Path(out)) as tmp:
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
        (tmp / "data.yaml").write_text(data_yaml_text(spec.names))
        defects.sort(key=lambda d: (d.file, -1 if d.object is None else d.object))
        result = ConversionResult(str(layout.root), str(Path(out)), list(spec.names), summaries, defects)
        (tmp / "report.json").write_text(result.to_json())
    return result
