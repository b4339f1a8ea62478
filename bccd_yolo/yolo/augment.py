"""Training augmentation Ultralytics lacks: how slides differ from the photos a model learned from.

- resample: a slide scanned coarser than the photos is resampled up to the model's scale before detection
  (`images.resize`: INTER_AREA down, INTER_LINEAR up), so the model sees cells of the right size but softer.
  `ResampleTransform` shrinks a training image by a random factor and resamples it back.
- refill: Ultralytics pads mosaics, affine borders and letterboxes with grey 114, so every cell a model saw
  cut by a frame was cut against that grey. Cells at the edge of a scanned region, of a pasted photo or of a
  tile meet glass, white or black instead. `RefillTransform` repaints the padding one random grey level.
- frame: Ultralytics' mosaic cuts cells mostly where one photo meets another; a photo pasted into a slide or a
  canvas cuts them against padding on all four sides. `FrameTransform` keeps a random rectangle of a training
  image and pads the rest (refill then repaints it), keeping the cut cells' boxes by Ultralytics' own rule
  (a box keeps its label while over 10 % of its area and over 2 px each way remain).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from ultralytics.data.augment import RandomPerspective

from ..images import resize, scaled_size

FACTORS = (0.5, 0.95)  # a scan at half to nearly the photos' resolution
PAD = 114  # Ultralytics' padding grey (Mosaic canvas, RandomPerspective borderValue, LetterBox)


@dataclass(frozen=True)
class ResampleTransform:
    p: float
    factors: tuple[float, float] = FACTORS

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p <= 0 or random.random() >= self.p:
            return labels
        labels["img"] = resample(labels["img"], random.uniform(*self.factors))
        return labels


@dataclass(frozen=True)
class RefillTransform:
    p: float

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p <= 0 or random.random() >= self.p:
            return labels
        labels["img"] = refill(labels["img"], random.randint(0, 255))
        return labels


@dataclass(frozen=True)
class FrameTransform:
    p: float
    kept: tuple[float, float] = (0.55, 0.95)  # share of each side inside the frame

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p <= 0 or random.random() >= self.p:
            return labels
        img = labels["img"]
        h, w = img.shape[:2]
        fw, fh = round(w * random.uniform(*self.kept)), round(h * random.uniform(*self.kept))
        x0, y0 = random.randint(0, w - fw), random.randint(0, h - fh)
        instances = labels["instances"]
        instances.convert_bbox("xyxy")
        labels["img"], boxes, keep = frame(img, instances.bboxes, (x0, y0, x0 + fw, y0 + fh))
        instances.update(boxes)
        labels["instances"] = instances[keep]
        labels["cls"] = labels["cls"][keep]
        return labels


def frame(img: np.ndarray, xyxy: np.ndarray, rect: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`img` padded outside `rect` (x0, y0, x1, y1), the boxes clipped to it, and which boxes keep their label:
    Ultralytics' own `box_candidates`, the rule it applies after an affine step (over 10 % of the area and over
    2 px each way inside)."""
    x0, y0, x1, y1 = rect
    out = np.full_like(img, PAD)
    out[y0:y1, x0:x1] = img[y0:y1, x0:x1]
    clipped = np.clip(xyxy, (x0, y0, x0, y0), (x1, y1, x1, y1)).astype(xyxy.dtype)
    return out, clipped, RandomPerspective.box_candidates(xyxy.T, clipped.T)


def resample(img: np.ndarray, factor: float) -> np.ndarray:
    """`img` shrunk by `factor` and resampled back to its size, by the `images.resize` counting uses."""
    h, w = img.shape[:2]
    return resize(resize(img, scaled_size(w, h, factor)), (w, h))


def refill(img: np.ndarray, level: int) -> np.ndarray:
    """`img` with its padding (pixels exactly PAD in every channel) set to `level`. A stained smear has
    next to no pixels of exactly that neutral grey, so what changes is the padding."""
    out = img.copy()
    out[(img == PAD).all(axis=2)] = level
    return out


def augment_callback(resample_p: float = 0.0, refill_p: float = 0.0, frame_p: float = 0.0) -> Callable[[Any], None]:
    """An `on_train_start` callback putting the transforms asked for into the training set's: frame, then refill,
    right after Ultralytics' mosaic and affine step (boxes are pixel xyxy there, and colour changes have not yet
    moved the padding off 114), resample before the final Format step. They stay there when Ultralytics
    rebuilds the transforms (close_mosaic)."""
    after_pre = [t for t in (FrameTransform(frame_p) if frame_p else None, RefillTransform(refill_p) if refill_p else None) if t]
    last = ResampleTransform(resample_p) if resample_p else None

    def add(transforms: Any) -> Any:
        for t in reversed(after_pre):
            transforms.insert(1, t)
        if last is not None:
            transforms.insert(-1, last)
        return transforms

    def install(trainer: Any) -> None:
        dataset = trainer.train_loader.dataset
        build = dataset.build_transforms
        dataset.build_transforms = lambda hyp: add(build(hyp))
        add(dataset.transforms)

    return install
