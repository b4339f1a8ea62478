"""The documentation site builds with `mkdocs build --strict` (broken links, missing pages and anchors fail), and
README keeps to what a newcomer reads in five minutes."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_the_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    count_page = (tmp_path / "site" / "guide" / "count" / "index.html").read_text()
    assert "--no-qc" in count_page and "--mpp" in count_page  # the options come from the parser itself
    card = tmp_path / "site" / "weights" / "MODEL_CARD" / "index.html"
    assert card.is_file()


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text) <= 12_000, len(text)
    blocks = text.split("```bash\n")[1:3]
    assert blocks[0].split("\n")[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/bccd-yolo count")
    ci = (REPO / ".ci" / "run").read_text()
    assert blocks[1].split("\n")[0] in ci  # .ci/run runs exactly README's test command
