"""Exported models (OpenVINO IR, ONNX): their names, where they are kept, and the record that lets them run
without their checkpoint. Made by `bccd_yolo.yolo.export`, run by `bccd_yolo.count.runtime`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

EXPORTED = ("openvino", "onnx")
SUFFIX = {"onnx": ".onnx", "openvino": "_openvino_model"}  # what Ultralytics' exporter writes
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExportRecord:
    """What an export needs to be run without its checkpoint, written beside it (`<export>.json`)."""

    weights_sha256: str
    names: list[str]
    train_imgsz: int
    stride: int
    backend: str
    precision: str = "fp32"

    def write(self, path: Path) -> None:
        from ..core.fsutil import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> "ExportRecord | None":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def weights_digest(weights: Path) -> str:
    """The first 12 hex digits of the checkpoint's sha256, remembered per (path, size, mtime, ctime) in the cache, so
    a start costs a stat call, and a checkpoint copied over another (even with `cp -p`) is hashed again."""
    from ..core.fetching import cache_dir

    weights = Path(weights).resolve()
    st = weights.stat()
    key, stamp = str(weights), [st.st_size, st.st_mtime_ns, st.st_ctime_ns]  # ctime: no copy or utime can set it
    memo = cache_dir() / "digests.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), list) and known[key][:3] == stamp:
        return str(known[key][3])
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    try:
        from ..core.fsutil import atomic_write_text

        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo, json.dumps({**(known if isinstance(known, dict) else {}), key: [*stamp, digest]}))
    except OSError:  # a read-only cache only costs the hash next time
        pass
    return digest


def export_name(weights: Path, backend: str, precision: str = "fp32", digest: str | None = None) -> str:
    """`<stem>.<hash>[.int8]<suffix>`: the name carries the checkpoint's hash, so another checkpoint never finds it."""
    tag = "" if precision == "fp32" else f".{precision}"
    return f"{Path(weights).stem}.{digest or weights_digest(weights)}{tag}{SUFFIX[backend]}"


def export_candidates(weights: Path, backend: str, precision: str = "fp32") -> list[Path]:
    """Where an export of these weights may be: beside them, else in the cache (a read-only weights folder)."""
    from ..core.fetching import cache_dir

    name = export_name(weights, backend, precision)
    return [Path(weights).with_name(name), cache_dir() / backend / name]


def record_path(export: Path) -> Path:
    return export.with_name(export.name + ".json")
