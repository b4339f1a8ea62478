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
- stain: labs stain differently (May-Grunwald-Giemsa, Wright, Giemsa; fresh or faded; thick or thin).
  `StainTransform` scales and shifts each stain's optical density in haematoxylin-eosin-DAB space
  (scikit-image's `rgb2hed` / `hed2rgb`; Tellez et al. 2018's HED jitter), which moves colours along the
  directions real stains vary, where a hue shift moves them anywhere.
- grey: a share of images in grey (a camera without colour balance, a phone on an eyepiece): shape must carry
  the class, not hue alone.
- blur: a share blurred by a Gaussian of sigma 0.5-1.5 px (focus, a cheap objective, a compressed phone photo).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
from ultralytics.data.augment import RandomPerspective

from ..core.images import resize, scaled_size

FACTORS = (0.5, 0.95)  # a scan at half to nearly the photos' resolution
PAD = 114  # Ultralytics' padding grey (Mosaic canvas, RandomPerspective borderValue, LetterBox)


def applies(p: float) -> bool:
    """Whether a transform with share `p` applies to this image."""
    return p > 0 and random.random() < p


@dataclass(frozen=True)
class ResampleTransform:
    p: float
    factors: tuple[float, float] = FACTORS

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
            return labels
        labels["img"] = resample(labels["img"], random.uniform(*self.factors))
        return labels


@dataclass(frozen=True)
class RefillTransform:
    p: float

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
            return labels
        labels["img"] = refill(labels["img"], random.randint(0, 255))
        return labels


@dataclass(frozen=True)
class FrameTransform:
    p: float
    kept: tuple[float, float] = (0.55, 0.95)  # share of each side inside the frame

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
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


@dataclass(frozen=True)
class StainTransform:
    p: float
    scale: float = 0.2  # each stain's density scaled by 1 +- scale (Tellez et al.'s "HED-strong")
    shift: float = 0.05  # and shifted by +- shift (optical density)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
            return labels
        alpha = np.random.uniform(1 - self.scale, 1 + self.scale, 3)
        beta = np.random.uniform(-self.shift, self.shift, 3)
        labels["img"] = stain_jitter(labels["img"], alpha, beta)
        return labels


@dataclass(frozen=True)
class GreyTransform:
    p: float

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
            return labels
        img = labels["img"]
        labels["img"] = np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
        return labels


@dataclass(frozen=True)
class BlurTransform:
    p: float
    sigmas: tuple[float, float] = (0.5, 1.5)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if not applies(self.p):
            return labels
        labels["img"] = cv2.GaussianBlur(labels["img"], (0, 0), random.uniform(*self.sigmas))
        return labels


def stain_jitter(bgr: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """A BGR uint8 image with each HED stain's optical density d set to d * alpha + beta (per stain), by
    scikit-image's stain matrices. Densities are not clipped at zero (as `rgb2hed` does), so alpha 1, beta 0 gives
    the image back."""
    from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

    od = -np.log((bgr[..., ::-1].astype(np.float32) + 1) / 256)
    stains = od @ hed_from_rgb.astype(np.float32)
    rgb = 256 * np.exp(-((stains * alpha + beta) @ rgb_from_hed.astype(np.float32))) - 1
    return np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)[..., ::-1])


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


def augment_callback(resample_p: float = 0.0, refill_p: float = 0.0, frame_p: float = 0.0, stain_p: float = 0.0,
                     grey_p: float = 0.0, blur_p: float = 0.0) -> Callable[[Any], None]:
    """An `on_train_start` callback putting the transforms asked for into the training set's: frame, then refill,
    right after Ultralytics' mosaic and affine step (boxes are pixel xyxy there, and colour changes have not yet
    moved the padding off 114); stain, grey, blur and resample before the final Format step. They stay there when
    Ultralytics rebuilds the transforms (close_mosaic)."""
    after_pre: list[Any] = [t for t in (FrameTransform(frame_p) if frame_p else None, RefillTransform(refill_p) if refill_p else None) if t]
    last: list[Any] = [t for t in (StainTransform(stain_p) if stain_p else None, GreyTransform(grey_p) if grey_p else None,
                        BlurTransform(blur_p) if blur_p else None, ResampleTransform(resample_p) if resample_p else None) if t]

    def add(transforms: Any) -> Any:
        for t in reversed(after_pre):
            transforms.insert(1, t)
        for t in last:
            transforms.insert(-1, t)
        return transforms

    def install(trainer: Any) -> None:
        dataset = trainer.train_loader.dataset
        build = dataset.build_transforms
        dataset.build_transforms = lambda hyp: add(build(hyp))
        add(dataset.transforms)

    return install
