"""Fetch a file over HTTP(S) or file:// with a progress bar, a timeout and a clear error."""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from .errors import InputError
from .fsutil import atomic_save

LOGGER = logging.getLogger(__name__)

BCCD_ARCHIVE_URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"
ULTRALYTICS_ASSETS_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0"


def cache_dir() -> Path:
    """Where downloads are kept: $BCCD_YOLO_CACHE, else ~/.cache/bccd-yolo."""
    return Path(os.getenv("BCCD_YOLO_CACHE") or Path(os.getenv("XDG_CACHE_HOME") or Path.home() / ".cache") / "bccd-yolo")


def fetch(url: str, dest: Path, timeout: float = 15.0, hint: str = "") -> Path:
    """Download `url` to `dest` (through a temporary file); raise InputError when it cannot."""
    dest = Path(dest)

    def stream(tmp: str) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {dest.name}") as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))

    try:
        return atomic_save(dest, stream)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise InputError(url, f"download failed ({reason}){'; ' + hint if hint else ''}") from None


def bccd_source(source: Path | None, default: Path) -> Path:
    """The VOC folder to convert: the one given, else `default`, downloaded there when absent."""
    if source is not None:
        return Path(source)
    if not Path(default).exists():
        LOGGER.info("%s not found: downloading the BCCD dataset", default)
        return fetch_bccd(Path(default).parent)
    return Path(default)


def fetch_bccd(datasets_dir: Path, url: str | None = None) -> Path:
    """Download and unpack the upstream BCCD archive into `datasets_dir/BCCD_Dataset`.

    The address can be moved with BCCD_YOLO_DATASET_URL (a mirror, or a file:// URL).
    """
    source = url or os.environ.get("BCCD_YOLO_DATASET_URL") or BCCD_ARCHIVE_URL
    datasets_dir = Path(datasets_dir)
    target = datasets_dir / "BCCD_Dataset"
    archive = fetch(source, datasets_dir / "BCCD_Dataset.zip", hint="pass {source} DIR with a BCCD_Dataset checkout")
    try:
        with tempfile.TemporaryDirectory(dir=datasets_dir) as tmp:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
            tops = [p for p in Path(tmp).iterdir() if p.is_dir()]
            if len(tops) != 1 or not (tops[0] / "BCCD" / "Annotations").is_dir():
                raise InputError(archive, "archive does not hold a BCCD_Dataset checkout (BCCD/Annotations)")
            tops[0].rename(target)
    except zipfile.BadZipFile:
        raise InputError(archive, "downloaded archive is not a zip file") from None
    finally:
        archive.unlink(missing_ok=True)
    return target


def fetch_ultralytics_weights(name: str, dest_dir: Path) -> Path:
    """Ultralytics' released weights (e.g. yolov3u.pt), as its own downloader would fetch them."""
    dest = Path(dest_dir) / name
    if dest.is_file():
        return dest
    return fetch(f"{ULTRALYTICS_ASSETS_URL}/{name}", dest, hint="pass {weights} PT, or {scratch} to train from random init")


DARKNET_URL = "https://pjreddie.com/media/files"
DARKNET_CFG_DIR = Path(__file__).resolve().parent / "darknet_cfg"  # darknet's cfgs (public domain), shipped
# sha256 of darknet's published files where this project has verified a copy; every download is also
# checked by reading it whole against its cfg (exact size, every tensor).
DARKNET_SHA256 = {
    "yolov3-tiny": "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
}
DARKNET_MODELS = ("yolov3", "yolov3-spp", "yolov3-tiny")


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
