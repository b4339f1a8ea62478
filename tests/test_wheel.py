"""The wheel carries the shipped model: built, installed into a fresh folder, it counts a photo offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_the_wheel_counts_a_photo_from_anywhere(bccd_source, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("bccd_yolo-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    photo = bccd_source / "BCCD" / "JPEGImages" / "BloodImage_00007.jpg"
    env = {**os.environ, "PYTHONPATH": str(target), "YOLO_OFFLINE": "1"}
    code = ("import sys\nfrom bccd_yolo.cli import main\n"
            f"rc = main(['count', {str(photo)!r}, '--json', 'counts.json', '--quiet', '--backend', 'openvino'])\n"
            "print(rc, sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split("\n")[-2] == "0 []", proc.stderr  # the shipped export: no torch
    result = json.loads((elsewhere / "counts.json").read_text())
    assert result["model"].startswith(str(target))  # the installed copy, not the repository's
    assert result["thresholds_source"].startswith("calibrated")
    assert result["images"][0]["counts"]["WBC"] == 1 and result["images"][0]["counts"]["RBC"] > 5
