"""Write-then-move helpers: a failed run never leaves half-written output, and a command replaces only
what it wrote itself (listed in a marker file in each output folder), never the user's files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import InputError

MARKER = ".bccd-yolo-output"  # JSON list of the entries a bccd-yolo command wrote into this folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def owned_entries(folder: Path) -> list[str] | None:
    """What bccd-yolo wrote into `folder` (None if the folder has no valid marker)."""
    try:
        entries = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entries, list) or not all(isinstance(e, str) and "/" not in e and e not in ("", ".", "..")
                                                for e in entries):
        return None
    return entries


def record_outputs(folder: Path, names: list[str]) -> None:
    """Add files a command wrote straight into `folder` (overlays) to its marker."""
    entries = sorted(set(owned_entries(folder) or []) | set(names))
    atomic_write_text(Path(folder) / MARKER, json.dumps(entries) + "\n")


def check_output_dir(dest: Path, overwrite: bool = False, inputs: Iterable[Path | str | None] = ()) -> None:
    """Refuse, before any work, an output folder that is a file, overlaps an input, or holds the user's files."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "exists and is not a folder; give a folder for this output")
    target = dest.resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if target == src or src in target.parents or target in src.parents:
            raise InputError(dest, f"output folder overlaps the input {item}; choose a folder outside it")
    if dest.is_dir() and any(dest.iterdir()) and owned_entries(dest) is None and not overwrite:
        raise InputError(dest, "folder holds files bccd-yolo did not write; choose a new or empty folder, "
                               "or pass {overwrite} to replace only this command's outputs in it")


@contextmanager
def staged_dir(dest: Path, overwrite: bool = False, inputs: Iterable[Path | str | None] = ()) -> Iterator[Path]:
    """Yield an empty folder beside `dest`; on success its entries move into `dest`.

    Only what this command writes, and what a bccd-yolo command wrote there before (its marker), is
    replaced; every other file in `dest` stays. On error the staging folder is removed and `dest` is
    untouched. Folders made here honour the umask (mkdtemp alone makes them private).
    """
    dest = Path(dest)
    check_output_dir(dest, overwrite, inputs)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    trash: Path | None = None
    try:
        yield tmp
        written = sorted(p.name for p in tmp.iterdir())
        (tmp / MARKER).write_text(json.dumps(written) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if not dest.exists():
            tmp.rename(dest)
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        for name in sorted(set(written) | set(owned_entries(dest) or []) | {MARKER}):
            if (dest / name).exists() or (dest / name).is_symlink():
                (dest / name).rename(trash / name)
        for name in [*written, MARKER]:
            (tmp / name).rename(dest / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def atomic_save(path: Path, save: Callable[[str], object]) -> Path:
    """Call `save(tmp)` on a temporary file beside `path` (same suffix), then move it into place.

    On any error the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; outputs follow the umask like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder."""
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
