"""Fetch a file over HTTP(S) or file:// with a progress bar, a timeout and a clear error."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from .errors import InputError
from .fsutil import atomic_save

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


def fetch_bccd(datasets_dir: Path, url: str | None = None) -> Path:
    """Download and unpack the upstream BCCD archive into `datasets_dir/BCCD_Dataset`.

    The address can be moved with BCCD_YOLO_DATASET_URL (a mirror, or a file:// URL).
    """
    url = url or os.getenv("BCCD_YOLO_DATASET_URL", BCCD_ARCHIVE_URL)
    datasets_dir = Path(datasets_dir)
    target = datasets_dir / "BCCD_Dataset"
    archive = fetch(url, datasets_dir / "BCCD_Dataset.zip", hint="pass --source DIR with a BCCD_Dataset checkout")
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
    return fetch(f"{ULTRALYTICS_ASSETS_URL}/{name}", dest, hint="pass --weights PT, or --scratch to train from random init")
