"""Scale: micrometres per pixel of an input, of the model, and the red cell as a ruler between them.

The model sees cells at one scale, the one it was trained at: `model_mpp` micrometres per network pixel.
Every input is resampled to that scale before it reaches the network, so neither the tile size nor the
input's pixel count changes how large a cell looks to it. The input's own scale comes from `--mpp`, else
from the file (OpenSlide, TIFF resolution tags), else `--mpp auto` estimates it from the red cells found,
else it is taken to be the model's.

BCCD records no scale. Its scale is derived from what it shows: a normal red cell is 7.5-8 um across
(RBC_DIAMETER_UM = 7.8, the middle of that range), and the median red cell clear of the frame edge in the
complete labels of the 124 training photos measures 103.5 px across (mean of box width and height; 1,553
cells; BCCD's own labels give 104.0): 0.0754 um/px, a 48 um wide field. `calibrate` derives it from the
training labels and records it in the model's sidecar (`model_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .detections import Detections
from .edges import EdgeRule, edge_mask
from .errors import InputError

RBC_DIAMETER_UM = 7.8  # a normal erythrocyte is 7.5-8 um across (smears; the disc's diameter)
MPP_RANGE = (0.01, 10.0)  # um/px: from beyond oil-immersion optics to a coarse overview; outside is a typo
DISAGREE = 0.25  # a given or read scale this far from the red cells' estimate gets a warning
MIN_CELLS = 10  # labelled red cells needed before their sizes say what scale a model learnt
MIN_AUTO_CELLS = 6  # measurable red cells for --mpp auto: their median is within ~5 % (cell sizes vary ~10 %)


@dataclass(frozen=True)
class ModelScale:
    """The scale a model learnt: micrometres per network pixel, the scale of its training photos as they were
    given (the scale an input with no other scale is taken to have), and its red cells' median diameter in
    network pixels."""

    mpp: float
    photo_mpp: float
    rbc_px: float

    def as_dict(self) -> dict[str, float]:
        return {"mpp": round(self.mpp, 6), "photo_mpp": round(self.photo_mpp, 6), "rbc_px": round(self.rbc_px, 2)}


def model_scale(images: Iterable[tuple[Detections, float, float]], rbc: int, imgsz: int) -> tuple[ModelScale, int]:
    """A model's scale from the labelled photos it was trained on (each resized so its long side is `imgsz`,
    as Ultralytics trains), taking their median red cell to be RBC_DIAMETER_UM across."""
    native, network = [], []
    for d, w, h in images:
        sizes = whole_cell_diameters(d, rbc, w, h)
        native.append(sizes)
        network.append(sizes * imgsz / max(w, h))
    n = int(sum(len(s) for s in native))
    if n < MIN_CELLS:
        raise ValueError(f"only {n} whole red cells labelled; the scale needs {MIN_CELLS}")
    photo_px, net_px = float(np.median(np.concatenate(native))), float(np.median(np.concatenate(network)))
    return ModelScale(mpp_from_rbc(net_px), mpp_from_rbc(photo_px), net_px), n


@dataclass(frozen=True)
class Scale:
    """An input's micrometres per pixel, where the figure came from (given, file, auto, model), and why, if it is
    not the one asked for: `note` a qc reason, `notice` worth saying but no reason to doubt the counts."""

    mpp: float
    source: str
    note: str | None = None
    notice: str | None = None


def check_mpp(value: float, what: str = "mpp") -> float:
    lo, hi = MPP_RANGE
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise InputError(None, f"{value:g} um/px is outside {lo:g}-{hi:g} (micrometres per pixel; a 40x scan is "
                               "about 0.25, a 100x oil photo about 0.1)", option=what)
    return float(value)


def diameters(d: Detections) -> np.ndarray:
    """Mean of box width and height, per box."""
    return ((d.xyxy[:, 2] - d.xyxy[:, 0]) + (d.xyxy[:, 3] - d.xyxy[:, 1])) / 2 if len(d) else np.zeros(0, np.float32)


def whole_cell_diameters(d: Detections, cls: int, width: float, height: float) -> np.ndarray:
    """Diameters of the boxes of class `cls` clear of the image edge (a cut cell's box is not its size)."""
    keep = (d.cls == cls) & edge_mask(d, EdgeRule.INTERIOR, 0, 0, width, height)
    return diameters(d.subset(keep))


def measurable_diameters(d: Detections, cls: int, width: float, height: float) -> np.ndarray:
    """Diameters of the red cells a field shows whole, and of those cut by one edge whose centre is inside: a cell
    cut by the left or right edge still shows its full height (and by the top or bottom, its full width) while the
    part inside is at least half as wide as it is high. A small field holds few whole cells; this about doubles
    what it can be measured by."""
    from .edges import EDGE_MARGIN

    k = d.subset(d.cls == cls)
    if not len(k):
        return np.zeros(0, np.float32)
    x1, y1, x2, y2 = k.xyxy.T
    w, h = x2 - x1, y2 - y1
    side = (x1 <= EDGE_MARGIN) | (x2 >= width - EDGE_MARGIN)
    end = (y1 <= EDGE_MARGIN) | (y2 >= height - EDGE_MARGIN)
    whole = edge_mask(k, EdgeRule.INTERIOR, 0, 0, width, height)  # ~side & ~end, as whole_cell_diameters judges it
    cut_side = side & ~end & (w >= 0.5 * h)
    cut_end = end & ~side & (h >= 0.5 * w)
    return np.concatenate([((w + h) / 2)[whole], h[cut_side], w[cut_end]]).astype(np.float32)


def mpp_from_rbc(diameter_px: float) -> float:
    """The scale at which a red cell of `diameter_px` pixels is RBC_DIAMETER_UM across."""
    return RBC_DIAMETER_UM / diameter_px


def mpp_from_cells(sizes: np.ndarray, model: ModelScale, min_cells: int = MIN_CELLS) -> float | None:
    """An input's scale from its whole red cells' diameters in input pixels, read against the model's own: its
    red cells measure `rbc_px` network pixels at `mpp`, so cells of median d input pixels put the input at
    rbc_px * mpp / d um/px (for BCCD, the fixed diameter; for any model, consistent with what it learnt).
    None if fewer than `min_cells` cells."""
    if len(sizes) < min_cells:
        return None
    return float(model.rbc_px * model.mpp / np.median(sizes))


def disagreement(a: float, b: float) -> float:
    """Relative difference of two scales, symmetric: 0.25 means one is 25 % larger than the other."""
    return max(a, b) / min(a, b) - 1
