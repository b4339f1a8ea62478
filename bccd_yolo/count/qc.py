"""A verdict per counted image: reasons, from evidence in the image, why its counts may not be trusted.

A model trained on some microscopes can be silently wrong on another: it finds 2 cells in a field of 115, or calls
grey-violet red cells white cells. Each reason below is something a person would see on the overlay:
- `few cells`: the cells found cover little of the stained area of the field (stain but no cells: the model does
  not see this smear's cells);
- `faint`: the cells found cover far more than what stands out from the background (a stain paler or greyer
  than any the model was trained on, where it misses cells it cannot tell from the glass);
- `stain colour`: what stands out from the background has a hue (CIELAB) outside the range of the model's training
  fields, widened by HUE_MARGIN (recorded by calibrate from the train split);
- `uncertain`: most cells found score just above their class's threshold;
- `scale`: the red cells found measure other than the scale the image was counted at says they should;
- `white cells`: more white cells than a smear holds beside its red cells (red cells taken for white ones);
- `scale unknown`: `--mpp auto` could not estimate the scale (too few whole red cells), so it was assumed.
A verdict never changes the counts. Constants were set on val fields of BCCD, PBC and Raabin (see
benchmarks/qc_check.py and its result file), not on any test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.detections import Detections
from ..core.images import ImageSource

THUMB_SIDE = 256  # px: enough to tell stained from bare at a photo's scale, a few milliseconds
BACKGROUND_DELTA = 18.0  # CIELAB distance (8-bit) from the background colour beyond which a pixel is stained
MIN_COVERAGE = 0.95  # cell area found / stained area below this: `few cells` (val fields counted right: 1.06-1.16 at the 10th percentile)
MIN_STAINED = 0.05  # share of the field: less stain than this (bare glass) is not judged for `few cells`
# cell area found / stained area above this: `faint`. Val fields as they are reach 1.53, hue-turned ones 1.91; a pale
# grey-blue copy of BCCD's val photos, whose red cells were undercounted by over 25 %, 3.5-10 (benchmarks/qc_check.py)
MAX_COVERAGE = 2.5
HUE_MARGIN = 20.0  # degrees beyond the training fields' 1st-99th percentile hue: `stain colour`. Val fields as they
# are lie inside the range, the hue-turned copies of benchmarks/qc_check.py mostly 30-150 degrees out of it
MIN_CHROMA = 5.0  # CIELAB a*b* chroma under which the stain is too grey for its hue to mean anything
UNCERTAIN_MARGIN = 0.10  # a score this close above its class threshold is a near call
UNCERTAIN_SHARE = 0.35  # of at least UNCERTAIN_MIN cells: `uncertain` (val fields counted right: 0.21 at the 90th percentile)
UNCERTAIN_MIN = 8
WBC_SHARE = 0.3  # white cells over this share of red and white cells together (at least WBC_MIN): `white cells`
WBC_MIN = 3


@dataclass(frozen=True)
class Stain:
    """What stands out from a field's background: its share of the field, and its mean colour's hue angle in
    CIELAB's a*b* plane (degrees; None where there is too little stain, or it is too grey, to tell a hue)."""

    share: float
    hue: float | None


def stain_of(src: ImageSource) -> Stain:
    """The stained pixels: those further than BACKGROUND_DELTA (CIELAB, 8-bit) from the image's most common colour.
    Glass, plasma or a tinted background is the most common colour of a smear field (on BCCD, PBC and Raabin val
    fields it is 45-50 % of the pixels); where cells crowd out the background the mode is a cell colour, the
    stained share comes out lower, and `few cells` errs towards silence."""
    import cv2

    from .foreground import thumbnail

    thumb, _ = thumbnail(src, THUMB_SIDE)
    lab = cv2.cvtColor(thumb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    q = (lab // 8).astype(np.int64)
    keys = q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]
    mode = lab[keys == np.bincount(keys).argmax()].mean(0)
    stained = np.linalg.norm(lab - mode, axis=1) >= BACKGROUND_DELTA
    hue = None
    if stained.mean() >= MIN_STAINED:
        a, b = lab[stained, 1].mean() - 128, lab[stained, 2].mean() - 128
        hue = float(np.degrees(np.arctan2(b, a))) if np.hypot(a, b) >= MIN_CHROMA else None
    return Stain(float(stained.mean()), hue)


def hue_outside(hue: float, hues: tuple[float, float]) -> float:
    """Degrees from `hue` to the range `hues` (lo to hi, counter-clockwise); 0 inside it."""
    lo, hi = hues
    if (hue - lo) % 360 <= (hi - lo) % 360:
        return 0.0
    return min((lo - hue) % 360, (hue - hi) % 360)


def cell_area(d: Detections) -> float:
    """Area of the cells found, each taken as the ellipse inscribed in its box."""
    return float(np.pi / 4 * d.area.sum())


@dataclass(frozen=True)
class Signals:
    """What the verdict is read from: cell area found over stained area (and the stained share), share of
    near-threshold cells (of how many), white and red cells found."""

    coverage: float | None
    near: float
    cells: int
    wbc: int
    rbc: int
    stained: float | None = None
    hue: float | None = None


def signals(d: Detections, names: list[str], thresholds: dict[str, float], area_px: float, stained: float | None,
            hue: float | None = None) -> Signals:
    coverage = None
    if stained is not None and (stained >= MIN_STAINED or len(d)):
        coverage = cell_area(d) / (max(stained, 1 / THUMB_SIDE**2) * area_px)  # a field with no stain at all: one pixel
    near = 0.0
    if len(d):
        limit = np.array([thresholds[names[c]] for c in d.cls]) + UNCERTAIN_MARGIN
        near = float((d.score < limit).mean())
    counts = d.counts(len(names))
    wbc = int(counts[names.index("WBC")]) if "WBC" in names else 0
    rbc = int(counts[names.index("RBC")]) if "RBC" in names else 0
    return Signals(coverage, near, len(d), wbc, rbc, stained, hue)


def reasons(s: Signals, hues: tuple[float, float] | None = None) -> list[str]:
    """The qc reasons the signals of one image's detections (before the edge rule) give; `hues`, the training
    fields' stain hue range (the model's sidecar), where known."""
    out = []
    if s.hue is not None and hues is not None and (off := hue_outside(s.hue, hues)) > HUE_MARGIN:
        out.append(f"stain colour: hue {s.hue:.0f} degrees (CIELAB), {off:.0f} outside the model's training fields "
                   f"({hues[0]:.0f} to {hues[1]:.0f}): a stain it has not learnt")
    judged = s.stained is None or s.stained >= MIN_STAINED
    if s.coverage is not None and s.coverage < MIN_COVERAGE and judged:
        out.append(f"few cells: the cells found cover {s.coverage:.0%} of the stained area")
    if s.coverage is not None and s.coverage > MAX_COVERAGE:
        out.append(f"faint: the cells found cover {s.coverage:.0f}x the area that stands out from the background; a "
                   "stain this pale was not trained on, and cells like the glass are missed")
    if s.cells >= UNCERTAIN_MIN and s.near > UNCERTAIN_SHARE:
        out.append(f"uncertain: {s.near:.0%} of the cells found score within {UNCERTAIN_MARGIN} of their threshold")
    if s.wbc >= WBC_MIN and s.wbc > WBC_SHARE * (s.wbc + s.rbc):
        out.append(f"white cells: {s.wbc} white cells beside {s.rbc} red cells (red cells taken for white?)")
    return out
