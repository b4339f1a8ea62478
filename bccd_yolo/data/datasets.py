"""The BCCD dataset: the folder given, else downloaded and unpacked."""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

from ..core.errors import InputError
from ..core.fetching import fetch

LOGGER = logging.getLogger(__name__)

BCCD_ARCHIVE_URL = "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip"


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
