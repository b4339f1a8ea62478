"""darknet's published COCO weights and cfgs: fetched by name, checked against their cfg."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import InputError
from ..core.fetching import cache_dir, fetch
from .architectures import MODELS

DARKNET_URL = "https://pjreddie.com/media/files"
DARKNET_CFG_DIR = Path(__file__).resolve().parent / "darknet_cfg"  # darknet's cfgs (public domain), shipped
# sha256 of darknet's published files where this project has verified a copy; every download is also
# checked by reading it whole against its cfg (exact size, every tensor).
DARKNET_SHA256 = {
    "yolov3-tiny": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
}
DARKNET_MODELS = MODELS  # darknet publishes COCO weights for each architecture bccd-yolo trains


def fetch_darknet_weights(name: str, dest_dir: Path, url: str | None = None) -> Path:
    """darknet's published COCO weights for `name` (yolov3, yolov3-spp, yolov3-tiny), checked, with the cfg beside.

    The address can be moved with BCCD_YOLO_DARKNET_URL (a mirror, or a file:// URL).
    """
    import hashlib
    import shutil

    from .darknet import parse_cfg, read_weights

    if name not in DARKNET_MODELS:
        raise InputError(None, f"{name}: darknet weights are published for {', '.join(DARKNET_MODELS)}")
    dest_dir = Path(dest_dir)
    dest = dest_dir / f"{name}.weights"
    cfg_dest = dest.with_suffix(".cfg")
    if not cfg_dest.is_file():
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DARKNET_CFG_DIR / f"{name}.cfg", cfg_dest)
    if dest.is_file():
        return dest
    base = url or os.environ.get("BCCD_YOLO_DARKNET_URL") or DARKNET_URL
    source = f"{base.rstrip('/')}/{name}.weights"
    tmp = fetch(source, dest_dir / f".{name}.weights.part", hint="pass a local .weights file instead")
    try:
        want = DARKNET_SHA256.get(name)
        if want and hashlib.sha256(tmp.read_bytes()).hexdigest() != want:
            raise InputError(source, f"sha256 differs from darknet's published {name}.weights ({want[:12]}...): not kept")
        try:
            read_weights(tmp, parse_cfg(cfg_dest))  # exact size and layout, or a one-line error
        except InputError as e:
            raise InputError(source, e.template) from None
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def resolve_darknet_weights(weights: str | Path) -> Path:
    """A darknet weights path as given, or darknet's published file by name (`yolov3-tiny.weights`) from the cache."""
    path = Path(weights)
    if path.is_file() or path.stem not in DARKNET_MODELS or len(path.parts) > 1:
        return path
    return fetch_darknet_weights(path.stem, cache_dir() / "darknet")
