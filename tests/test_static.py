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


def _imports(path):
    """(module imported, line) for every import in a file, relative ones resolved against its package."""
    import ast

    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            yield from ((f"{mod}.{a.name}" if not node.module else mod) for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_subpackages_depend_on_each_other_one_way_only():
    """No two subpackages of bccd_yolo import each other (lazily inside functions included), so each layer can be
    read, tested and replaced below the ones that use it; and the inference and measuring layers never import
    training code."""
    edges: dict[str, set[str]] = {}
    for path in (REPO / "bccd_yolo").rglob("*.py"):
        parts = path.relative_to(REPO / "bccd_yolo").parts
        if len(parts) < 2:
            continue  # cli.py, __main__.py: the thin top that may use everything
        for mod in _imports(path):
            target = mod.split(".")
            if target[0] == "bccd_yolo" and len(target) > 2 and target[1] != parts[0]:
                edges.setdefault(parts[0], set()).add(target[1])
    both_ways = sorted((a, b) for a, bs in edges.items() for b in bs if a < b and a in edges.get(b, set()))
    assert both_ways == [], both_ways
    assert "train" not in edges.get("count", set()) | edges.get("measure", set()), edges


def test_no_function_is_longer_than_60_lines():
    import ast

    long = []
    for path in sorted((REPO / "bccd_yolo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert long == [], long


def test_a_fresh_machine_sees_no_ultralytics_settings_banner(tmp_path):
    """Ultralytics announces its new settings file on the first import on a machine; bccd-yolo prints only what it
    means to say (a fresh HOME and config folder stand in for a fresh machine)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", "import bccd_yolo.yolo"], capture_output=True, text=True, timeout=300,
                         env=env, check=True)
    assert (tmp_path / "config" / "bccd-yolo" / "Ultralytics" / "settings.json").is_file()  # it was made, silently
    assert out.stdout == "" and out.stderr == "", (out.stdout, out.stderr)
