"""Training augmentation Ultralytics lacks: the detail a lower-resolution scan loses.

A slide scanned coarser than the photos a model learned from is resampled up to the model's scale before
detection (`images.resize`: INTER_AREA down, INTER_LINEAR up), so the model sees cells of the right size
but softer. `ResampleTransform` shows it such images while it trains: each training image is, with
probability `p`, shrunk by a random factor in `factors` and resampled back to its own size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

FACTORS = (0.5, 0.95)  # a scan at half to nearly the photos' resolution


@dataclass(frozen=True)
class ResampleTransform:
    p: float
    factors: tuple[float, float] = FACTORS

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p <= 0 or random.random() >= self.p:
            return labels
        labels["img"] = resample(labels["img"], random.uniform(*self.factors))
        return labels


def resample(img: np.ndarray, factor: float) -> np.ndarray:
    """`img` shrunk by `factor` and resampled back to its size, as `images.resize` would do both ways."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def resample_callback(p: float, factors: tuple[float, float] = FACTORS) -> Callable[[Any], None]:
    """An `on_train_start` callback putting `ResampleTransform` into the training set's transforms, before
    Ultralytics' final Format step; it stays there when Ultralytics rebuilds them (close_mosaic)."""
    transform = ResampleTransform(p, factors)

    def install(trainer: Any) -> None:
        dataset = trainer.train_loader.dataset
        build = dataset.build_transforms

        def build_with_resample(hyp: Any) -> Any:
            transforms = build(hyp)
            transforms.insert(-1, transform)
            return transforms

        dataset.build_transforms = build_with_resample
        dataset.transforms.insert(-1, transform)

    return install
