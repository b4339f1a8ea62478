"""Fetch a file over HTTP(S) or file:// with a progress bar, a timeout and a clear error; where downloads are kept."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import InputError
from .fsutil import atomic_save

LOGGER = logging.getLogger(__name__)

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


def fetch_ultralytics_weights(name: str, dest_dir: Path) -> Path:
    """Ultralytics' released weights (e.g. yolov3u.pt), as its own downloader would fetch them."""
    dest = Path(dest_dir) / name
    if dest.is_file():
        return dest
    return fetch(f"{ULTRALYTICS_ASSETS_URL}/{name}", dest, hint="pass {weights} PT, or {scratch} to train from random init")
