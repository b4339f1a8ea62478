"""Training augmentation Ultralytics lacks: how slides differ from the photos a model learned from.

- resample: a slide scanned coarser than the photos is resampled up to the model's scale before detection
  (`images.resize`: INTER_AREA down, INTER_LINEAR up), so the model sees cells of the right size but softer.
  `ResampleTransform` shrinks a training image by a random factor and resamples it back.
- refill: Ultralytics pads mosaics, affine borders and letterboxes with grey 114, so every cell a model saw
  cut by a frame was cut against that grey. Cells at the edge of a scanned region, of a pasted photo or of a
  tile meet glass, white or black instead. `RefillTransform` repaints the padding one random grey level.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

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


def resample(img: np.ndarray, factor: float) -> np.ndarray:
    """`img` shrunk by `factor` and resampled back to its size, as `images.resize` would do both ways."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def refill(img: np.ndarray, level: int) -> np.ndarray:
    """`img` with its padding (pixels exactly PAD in every channel) set to `level`. A stained smear has
    next to no pixels of exactly that neutral grey, so what changes is the padding."""
    out = img.copy()
    out[(img == PAD).all(axis=2)] = level
    return out


def augment_callback(resample: float = 0.0, refill: float = 0.0) -> Callable[[Any], None]:
    """An `on_train_start` callback putting the transforms asked for into the training set's: refill right after
    Ultralytics' mosaic and affine step (before colour changes move the padding off 114), resample before the
    final Format step. They stay there when Ultralytics rebuilds the transforms (close_mosaic)."""
    after_pre = RefillTransform(refill) if refill else None
    last = ResampleTransform(resample) if resample else None

    def add(transforms: Any) -> Any:
        if after_pre is not None:
            transforms.insert(1, after_pre)
        if last is not None:
            transforms.insert(-1, last)
        return transforms

    def install(trainer: Any) -> None:
        dataset = trainer.train_loader.dataset
        build = dataset.build_transforms
        dataset.build_transforms = lambda hyp: add(build(hyp))
        add(dataset.transforms)

    return install
