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


def test_the_readme_commands_run(bccd_source, tiny_weights, tmp_path, monkeypatch, capsys):
    """README's first command (the install aside) and the three commands of the card, run as written in a fresh
    folder with BCCD where the default looks for it; finetune gets small-data options appended (1 epoch at 64 px
    from a tiny model), as the README says it is the study's stage 3."""
    import shlex

    from PIL import Image

    from bccd_yolo.cli import main
    from bccd_yolo.measure.synthetic import paste_canvas

    text = (REPO / "README.md").read_text()
    first = text.split("```bash\n")[1].split("\n")[0].split(" && ")[-1]
    card = [line.split("#")[0].split() for line in text.split("## The three commands")[1].split("```bash\n")[1]
            .split("```")[0].strip().splitlines()]
    assert [c[:2] for c in card] == [["bccd-yolo", "convert"], ["bccd-yolo", "finetune"], ["bccd-yolo", "count"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "BCCD_Dataset").symlink_to(bccd_source)
    photos = sorted((bccd_source / "BCCD" / "JPEGImages").glob("*.jpg"))[:8]
    Image.fromarray(paste_canvas(photos, 1800, 1300)[0]).save(tmp_path / "slide.png")
    args = shlex.split(first)[1:]
    args = [str(REPO / a) if a.startswith("../") else a for a in args]  # README runs from the checkout
    assert main(args) == 0 and any((tmp_path / "runs" / "count").glob("*_overlay.jpg"))
    assert main(card[0][1:]) == 0 and (tmp_path / "datasets" / "bccd" / "data.yaml").is_file()
    small = ["--model", "yolov3-tiny", "--weights", str(tiny_weights), "--epochs", "1", "--imgsz", "64", "--batch", "4",
             "--workers", "0"]
    assert main(card[1][1:] + small) == 0 and (tmp_path / "runs" / "stage3" / "weights" / "best.pt").is_file()
    assert main(card[2][1:] + ["--quiet"]) == 0 and any((tmp_path / "o").glob("slide_*"))
    assert "slide.png" in capsys.readouterr().out
