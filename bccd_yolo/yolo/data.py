"""Datasets as Ultralytics resolves them: data YAMLs, split image lists, label paths."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InputError
from ..core.images import IMAGE_SUFFIXES


def resolve_data(data: str) -> tuple[str, dict]:
    """Check a data YAML the way Ultralytics will load it; offline, a missing dataset is an error, not a download."""
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import ONLINE

    path = Path(data)
    if path.suffix not in {".yaml", ".yml"}:
        raise InputError(data, "data must be a .yaml file (e.g. datasets/bccd/data.yaml from bccd-yolo convert)")
    if path.exists():
        data = str(path.resolve())
    elif len(path.parts) > 1:
        raise InputError(data, "data YAML not found (run bccd-yolo convert first, or pass {data})")
    try:
        info = check_det_dataset(data, autodownload=ONLINE)
    except (FileNotFoundError, SyntaxError, KeyError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if ONLINE else " (offline: Ultralytics cannot download it; pass {data})"
        raise InputError(data, f"invalid or missing dataset: {first}{hint}") from None
    return data, info


def split_images(info: dict, split: str) -> list[Path]:
    """Image files of a split as Ultralytics resolves them (a folder, a list file, or a list)."""
    if split not in info or not info[split]:
        raise InputError(info.get("yaml_file"), f"data YAML has no {split!r} split")
    entries = info[split] if isinstance(info[split], list) else [info[split]]
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            files += sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif entry.suffix == ".txt" and entry.is_file():
            files += [(entry.parent / line.strip()).resolve() for line in entry.read_text().splitlines() if line.strip()]
        else:
            raise InputError(entry, f"{split} split not found")
    if not files:
        raise InputError(entries[0], f"{split} split holds no images")
    return files


def label_paths(images: list[Path]) -> list[Path]:
    """Where Ultralytics looks for each image's YOLO label file (/images/ -> /labels/, .txt)."""
    from ultralytics.data.utils import img2label_paths

    return [Path(p) for p in img2label_paths([str(p) for p in images])]
