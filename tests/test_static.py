"""The package is typed and linted (pinned mypy and ruff from the test extra), and its pure modules need no torch."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

PURE = sorted(".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "bccd_yolo").rglob("*.py")
              if "yolo" not in p.relative_to(REPO / "bccd_yolo").parts[:1] and p.name != "__main__.py")


def test_mypy_is_clean():
    proc = subprocess.run([sys.executable, "-m", "mypy", "bccd_yolo"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "bccd_yolo", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_only_the_yolo_package_imports_torch_or_ultralytics(tmp_path):
    """Importing every other module (detector and finetune too: they reach the door only when called) loads
    neither torch nor Ultralytics; the door itself applies the offline settings first."""
    code = ("import sys\n" + "".join(f"import {m}\n" for m in PURE)
            + "print(sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))\n"
            + "import bccd_yolo.yolo, os\nprint(os.environ['YOLO_OFFLINE'], os.environ['ULTRALYTICS_SAFE_LOAD'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}).stdout.strip().splitlines()
    assert out[0] == "[]" and out[-1] == "1 1", out
