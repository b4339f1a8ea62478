"""Ultralytics configured for offline use, before it is imported.

Import this module before `ultralytics`. It sets, unless the user already has:
- YOLO_OFFLINE=1: no DNS probe, no hub or asset downloads (bccd-yolo fetches what it needs itself).
- YOLO_CONFIG_DIR: a config folder of our own holding the plot fonts, because `check_font`
  otherwise asks the network for Arial.ttf on every train and val run. The fonts are
  matplotlib's DejaVu Sans under Ultralytics' expected names.
- settings `sync=False`: no usage events.
- ULTRALYTICS_SAFE_LOAD=1: every checkpoint is unpickled with torch's weights-only loader against
  Ultralytics' allow-list of model classes, so a `.pt` from elsewhere cannot run code when it loads.
  BCCD_YOLO_ALLOW_PICKLE=1 turns this off for checkpoints you trust that need other classes
  (a full pickle can run any command on load).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def _default_config_dir() -> Path:
    base = Path(os.getenv("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "bccd-yolo"


def _install_fonts(user_config_dir: Path) -> None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return
    font = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    user_config_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = user_config_dir / name
        if not target.exists() and font.is_file():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(font, tmp)
            tmp.replace(target)


ALLOW_PICKLE = os.getenv("BCCD_YOLO_ALLOW_PICKLE", "").lower() in ("1", "true", "yes")
os.environ["ULTRALYTICS_SAFE_LOAD"] = "0" if ALLOW_PICKLE else "1"
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_default_config_dir()))
_install_fonts(Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics")

def _settings_notice(record) -> bool:
    """False for the lines Ultralytics logs when it first writes its settings file (a fresh machine's first run):
    bccd-yolo prints only what it means to say."""
    text = record.getMessage()
    return not ("Settings" in text and ("Creating new Ultralytics" in text or "yolo settings" in text or "View Ultralytics" in text))


import logging  # noqa: E402

logging.getLogger("ultralytics").addFilter(_settings_notice)  # the logger Ultralytics configures on import keeps it

from ultralytics.utils import SETTINGS  # noqa: E402  (must follow the environment above)

if SETTINGS.get("sync"):
    SETTINGS.update(sync=False)


def cpu_threads() -> int:
    """Every core this process may run on (taskset, cpusets): Ultralytics uses cpu_count-1, one thread on 2 cores.
    BCCD_YOLO_THREADS caps it (a Ray worker gets the CPUs Ray gave it)."""
    cap = os.environ.get("BCCD_YOLO_THREADS")
    if cap and cap.isdigit() and int(cap) > 0:
        return int(cap)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def use_all_cpu_threads(*_args) -> None:
    """Give torch every core; usable as an Ultralytics callback (it ignores its argument)."""
    import torch

    torch.set_num_threads(cpu_threads())
