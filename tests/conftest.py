"""Shared fixtures: the real BCCD checkout beside the repo, and small VOC folders the tests write."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bccd_yolo.core.detections import Detections
from bccd_yolo.core.scale import ModelScale
from bccd_yolo.count.thresholds import Thresholds

REPO = Path(__file__).resolve().parents[1]
BCCD_SOURCE = Path(os.getenv("BCCD_DATASET", REPO.parent / "shared" / "BCCD_Dataset"))


@pytest.fixture(scope="session")
def bccd_source() -> Path:
    assert (BCCD_SOURCE / "BCCD" / "Annotations").is_dir(), f"BCCD checkout not found at {BCCD_SOURCE}"
    return BCCD_SOURCE


@pytest.fixture(scope="session")
def bccd_dataset(bccd_source, tmp_path_factory) -> Path:
    """The official BCCD split converted once per session."""
    from bccd_yolo.data.convert import convert

    out = tmp_path_factory.mktemp("bccd") / "bccd"
    convert(bccd_source, out)
    return out


def voc_xml(filename: str, size: tuple[int, int] | None, objects: list[tuple[str, tuple]]) -> str:
    parts = [f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename>"]
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x1, y1, x2, y2) in objects:
        parts.append(
            f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def make_voc(root: Path, n: int = 4, size=(64, 48)) -> Path:
    """A tiny valid VOC folder: n images, two classes, split 2/1/1 (for n=4)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{i:03d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        Image.new("RGB", size, (200, 30 * i % 255, 90)).save(root / "JPEGImages" / f"{image_id}.jpg")
        objects = [("RBC", (2, 3, 20, 21)), ("WBC", (30, 10, 60, 40))] if i % 2 == 0 else [("RBC", (5, 5, 15, 15))]
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", size, objects))
    split = {"train": ids[: n // 2], "val": ids[n // 2 : n // 2 + n // 4], "test": ids[n // 2 + n // 4 :]}
    for name, members in split.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(m + "\n" for m in members))
    return root


def tree_digest(path: Path) -> str:
    """Hash of every file's relative path and bytes under `path` (empty string if absent)."""
    if not path.exists():
        return ""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def make_bccd_subset(source: Path, root: Path, per_split: dict[str, int]) -> Path:
    """A VOC folder with the first n images of each official BCCD split (files linked, not copied)."""
    bccd = source / "BCCD"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, n in per_split.items():
        ids = (bccd / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        for i in ids:
            (root / "Annotations" / f"{i}.xml").symlink_to(bccd / "Annotations" / f"{i}.xml")
            (root / "JPEGImages" / f"{i}.jpg").symlink_to(bccd / "JPEGImages" / f"{i}.jpg")
    return root


# Ultralytics arguments that make a one-epoch run on a handful of images do real optimiser steps, fast.
TINY_TRAIN = {"nbs": 4, "warmup_epochs": 0, "plots": False, "mosaic": 0.0}


@pytest.fixture(scope="session")
def mini_bccd(bccd_source, tmp_path_factory) -> Path:
    """8 train / 4 val / 4 test BCCD images as a converted dataset; returns its data.yaml."""
    from bccd_yolo.data.convert import convert

    root = tmp_path_factory.mktemp("mini")
    src = make_bccd_subset(bccd_source, root / "voc", {"train": 8, "val": 4, "test": 4})
    convert(src, root / "ds")
    return root / "ds" / "data.yaml"


@pytest.fixture(scope="session")
def tiny_weights(mini_bccd, tmp_path_factory) -> Path:
    """A yolov3-tiny trained for one epoch at 64 px: real weights, made in seconds (its counts mean nothing)."""
    from bccd_yolo.train.finetune import FinetuneRequest, finetune

    project = tmp_path_factory.mktemp("tiny_runs")
    finetune(FinetuneRequest(stage="scratch", model="yolov3-tiny", data=str(mini_bccd), epochs=1, imgsz=64, batch=4,
                             workers=0, project=str(project), overrides=TINY_TRAIN))
    return project / "scratch" / "weights" / "best.pt"


@pytest.fixture
def local_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


class BlobDetector:
    """Finds red/green/blue discs by connected components: a stand-in for the network. Its "model" sees
    1 um per pixel (its training photos too) and its red cells are RBC_PX across; it records the size of
    every view it is shown."""

    names = ["RBC", "WBC", "Platelets"]
    batch = 4
    imgsz = train_imgsz = 400
    RBC_PX = 41.0  # a disc of radius 20 drawn by cv2.circle is 41 px across
    scale = ModelScale(1.0, 1.0, RBC_PX)
    stain_hues = None  # no stain range recorded: the `stain colour` reason stays silent
    thresholds = Thresholds({n: 0.5 for n in names}, "test")

    def __init__(self):
        self.views: list[tuple[int, int]] = []

    def factor(self, mpp):
        return (1.0 if mpp is None else mpp) / self.scale.mpp

    def release_memory(self):
        self.released = getattr(self, "released", 0) + 1

    def __call__(self, images, threshold=True, native=False):
        out = []
        for im in images:
            self.views.append(im.shape[:2])
            boxes, classes = [], []
            for c, rgb in enumerate(COLOURS):
                # near the pure colour: resampling blends a disc's rim with the background
                mask = (np.abs(im.astype(int) - rgb).max(axis=2) < 80).astype(np.uint8)
                n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
                for x, y, w, h, area in stats[1:]:
                    if area >= 4:
                        boxes.append([x, y, x + w, y + h])
                        classes.append(c)
            xyxy = np.array(boxes, np.float32).reshape(-1, 4)
            out.append(Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.array(classes, np.int64)))
        return out


class UnscaledBlob(BlobDetector):
    """A model calibrated before scales were recorded."""

    scale = None

    def factor(self, mpp):
        return 1.0


def disc_canvas(width, height, n, seed=0, rmax=45):
    """White canvas with n non-touching discs of random class and radius."""
    rng = np.random.default_rng(seed)
    canvas = np.full((height, width, 3), 255, np.uint8)
    placed = []
    while len(placed) < n:
        r = int(rng.integers(6, rmax))
        x, y = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 3) ** 2 for px, py, pr in placed):
            placed.append((x, y, r))
            cv2.circle(canvas, (x, y), r, COLOURS[int(rng.integers(0, 3))], -1)
    return canvas
