"""Detections as plain arrays, the way supervision.Detections holds them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """N boxes in pixels (x1, y1, x2, y2), their scores and class indices."""

    xyxy: np.ndarray
    score: np.ndarray
    cls: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: list["Detections"]) -> "Detections":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("xyxy", "score", "cls")))

    def __len__(self) -> int:
        return len(self.score)

    def subset(self, mask: np.ndarray) -> "Detections":
        return Detections(self.xyxy[mask], self.score[mask], self.cls[mask])

    def above(self, limits) -> "Detections":
        """The boxes scoring at or above their class's limit (limits indexed by class)."""
        return self.subset(self.score >= np.asarray(limits, np.float32)[self.cls])

    def shifted(self, dx: float, dy: float) -> "Detections":
        return Detections(self.xyxy + np.array([dx, dy, dx, dy], np.float32), self.score, self.cls)

    def scaled(self, sx: float, sy: float) -> "Detections":
        return Detections(self.xyxy * np.array([sx, sy, sx, sy], np.float32), self.score, self.cls)

    def clipped(self, width: float, height: float) -> "Detections":
        """Boxes clipped to the image (0, 0)-(width, height)."""
        limit = np.array([width, height, width, height], np.float32)
        return Detections(np.clip(self.xyxy, 0, limit).astype(np.float32), self.score, self.cls)

    def counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.cls, minlength=n_classes)[:n_classes]

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    @property
    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The boxes' centres, x and y."""
        return (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2
