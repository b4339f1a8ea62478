"""A verdict per counted image: reasons, from evidence in the image, why its counts may not be trusted.

A model trained on some microscopes can be silently wrong on another: it finds 2 cells in a field of 115, or calls
grey-violet red cells white cells. Each reason below is something a person would see on the overlay:
- `few cells`: the cells found cover little of the stained area of the field (stain but no cells: the model does
  not see this smear's cells; bare glass, a camera's dark surround and uneven light are not stain);
- `faint`: the cells found cover far more than what stands out from the background (a stain paler or greyer
  than any the model was trained on, where it misses cells it cannot tell from the glass);
- `stain colour`: what stands out from the background has a hue (CIELAB) outside the range of the model's training
  fields, widened by HUE_MARGIN (recorded by calibrate from the train split);
- `uncertain`: most cells found score just above their class's threshold;
- `scale`: the red cells found measure other than the scale the image was counted at says they should;
- `white cells`: more white cells than a smear holds beside its red cells (red cells taken for white ones);
- `scale unknown`: `--mpp auto`, asked for, could not estimate the scale (too few whole red cells), so it was assumed.
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
BARE_CELL = 16  # px: a red cell's size at which bare ground is looked for
LIGHT_REACH = 1.0  # red cells: how far `even_light` looks for the background (plasma lies within a cell of any pixel)
LIGHT_CELL = 8  # px: a red cell's size at which the light is found
LIGHT_GAIN = 2.0  # most `even_light` brightens or darkens: corners 30 % darker need 1.43
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


def stain_of(src: ImageSource, cell_px: float | None = None) -> Stain:
    """The stained pixels: those further than BACKGROUND_DELTA (CIELAB, 8-bit) from the smear's background, taken to
    be the image's most common colour. Glass, plasma or a tinted background is the most common colour of a smear
    field (on BCCD, PBC and Raabin val fields it is 45-50 % of the pixels); where cells crowd out the background
    the mode is a cell colour, the stained share comes out lower, and `few cells` errs towards silence.
    Given `cell_px` (a red cell's diameter in input pixels), what is colourless and wider than a red cell is bare
    (glass at a smear's edge, a camera's dark surround, the plasma of a sparse smear) and never stained; where the
    most common colour is bare, the background is found by `ground`. Uneven light is evened out (`even_light`) from
    what is background-coloured or not bare, so glass or a dark surround beside the smear does not set its light,
    and the background found again."""
    from .foreground import thumbnail

    thumb, s = thumbnail(src, THUMB_SIDE)
    return stain_of_pixels(thumb, cell_px * s if cell_px else None)


def stain_of_pixels(thumb: np.ndarray, cell_px: float | None = None) -> Stain:
    """`stain_of` an RGB image already shrunk (its red cells `cell_px` of its pixels across)."""
    bare = bare_of(thumb, cell_px) if cell_px else None
    radius = cell_px / 2 if cell_px else 0.0
    if cell_px:
        unlit = None
        if bare is not None:  # bare ground of the background's own colour (a sparse smear's plasma) still sets the light
            lab, common = background(thumb, bare, radius)
            unlit = bare & ~(distance(lab, lab[common].mean(0)) < BACKGROUND_DELTA).reshape(bare.shape)
        thumb = even_light(thumb, cell_px, unlit)
    lab, common = background(thumb, bare, radius)
    smear = np.ones(len(lab), bool) if bare is None else ~bare.reshape(-1)
    stained = (distance(lab, lab[common].mean(0)) >= BACKGROUND_DELTA) & smear
    hue = None
    if stained.mean() >= MIN_STAINED:
        a, b = lab[stained, 1].mean() - 128, lab[stained, 2].mean() - 128
        hue = float(np.degrees(np.arctan2(b, a))) if np.hypot(a, b) >= MIN_CHROMA else None
    return Stain(float(stained.mean()), hue)


def window_stains(src: ImageSource, windows: list[tuple[int, int, int, int]], cell_px: float | None) -> list[Stain]:
    """The stain of each window (x, y, w, h) of an image too large to read whole, each shrunk as a photo is."""
    from ..core.images import read_scaled

    out = []
    for x, y, w, h in windows:
        f = min(1.0, THUMB_SIDE / max(w, h))
        out.append(stain_of_pixels(read_scaled(src, x, y, w, h, f), cell_px * f if cell_px else None))
    return out


def pooled(stains: list[Stain], areas: list[float]) -> Stain:
    """Windows' stains as one: the stained share over their area; the hue, their hues' mean direction weighed by
    stained area (windows with too little stain, or too grey, to tell a hue left out)."""
    stained = np.array([s.share * a for s, a in zip(stains, areas)])
    share = float(stained.sum() / max(sum(areas), 1.0))
    turns = [(np.radians(s.hue), w) for s, w in zip(stains, stained) if s.hue is not None]
    if not turns or share < MIN_STAINED:
        return Stain(share, None)
    x, y = sum(w * np.cos(t) for t, w in turns), sum(w * np.sin(t) for t, w in turns)
    return Stain(share, float(np.degrees(np.arctan2(y, x))))


def distance(lab: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """CIELAB distance of each pixel (rows of `lab`) from `colour`."""
    d = lab - colour
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def background(rgb: np.ndarray, bare: np.ndarray | None, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """`rgb` in CIELAB (flat), and the pixels whose colour is its background: the most common colour, or where that
    is bare, `ground`'s (`radius`: a red cell's)."""
    import cv2

    lab8 = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB), np.uint8).reshape(-1, 3)
    q = (lab8 >> 3).astype(np.int32)  # bins of 8 levels
    keys = (q[:, 0] << 10) | (q[:, 1] << 5) | q[:, 2]
    lab = lab8.astype(np.float32)
    common = keys == commonest(keys)
    if bare is not None and bare.reshape(-1)[common].mean() >= 0.5 and (~bare).mean() >= MIN_STAINED:
        common = ground(keys, bare, radius)
    return lab, common


def commonest(keys: np.ndarray) -> int:
    """The background's colour among quantised CIELAB colours `keys` (5 bits each of L, a, b): the most common bin,
    or the most common bin of the densest neighbourhood of bins where that is lighter. A colour on a bin's edge
    splits between bins (plasma a lamp lights unevenly spreads over several) and a plain count then crowns a
    narrower colour, the red cells'; counted with their neighbours, the red cells' own spread of shades can win
    instead. A brightfield background is lighter than the cells on it, so the lighter of the two."""
    counts = np.bincount(keys, minlength=1 << 15).reshape(32, 32, 32)
    padded = np.pad(counts, 1)
    dense = sum(padded[i : i + 32, j : j + 32, k : k + 32] for i in range(3) for j in range(3) for k in range(3))
    low = [max(0, int(c) - 1) for c in np.unravel_index(int(np.argmax(dense)), counts.shape)]
    window = counts[low[0] : low[0] + 3, low[1] : low[1] + 3, low[2] : low[2] + 3]
    light, a, b = (x + int(i) for x, i in zip(low, np.unravel_index(int(np.argmax(window)), window.shape)))
    top = int(np.argmax(counts))
    return max(top, (light << 10) | (a << 5) | b, key=lambda key: key >> 10)


def bare_of(rgb: np.ndarray, cell_px: float) -> np.ndarray | None:
    """foreground's glass (colourless, wider than a red cell `cell_px` across) of `rgb`, found where a red cell is
    BARE_CELL pixels across (an opening with a larger disc costs a photo's whole count) and brought back to size."""
    import cv2

    from .foreground import glass_of

    h, w = rgb.shape[:2]
    f = min(1.0, BARE_CELL / cell_px)
    small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    glass = glass_of(small, cell_px * f)
    if glass is None or f == 1:
        return glass
    return cv2.resize(glass.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def even_light(rgb: np.ndarray, cell_px: float, unlit: np.ndarray | None = None) -> np.ndarray:
    """`rgb` (red cells `cell_px` across) as if evenly lit: each pixel scaled by the median background lightness over
    the local one, the brightest within LIGHT_REACH red cells (plasma or glass: a brightfield background is lighter
    than the cells on it), smoothed over as far. `unlit` pixels (glass, a dark surround) tell nothing of the light,
    so the plasma beside them keeps its own level, and are left as they are where no other pixel is in reach; gains
    are held to LIGHT_GAIN. Light varies slowly: it is found where a red cell is LIGHT_CELL pixels across."""
    import cv2

    h, w = rgb.shape[:2]
    lit = np.ones((h, w), np.float32) if unlit is None else (~unlit).astype(np.float32)
    f = min(1.0, LIGHT_CELL / cell_px)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    grey = cv2.resize(rgb.astype(np.float32).mean(axis=2) * lit, size, interpolation=cv2.INTER_AREA)
    share = cv2.resize(lit, size, interpolation=cv2.INTER_AREA)
    lit_small = (share > 0.5).astype(np.float32)
    grey = grey / np.maximum(share, 1e-3) * lit_small
    if not lit_small.any():
        return rgb
    k = max(3, int(LIGHT_REACH * cell_px * f) | 1)
    local = cv2.dilate(grey, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    weight = cv2.GaussianBlur(lit_small, (0, 0), k / 2)
    local = cv2.GaussianBlur(local * lit_small, (0, 0), k / 2) / np.maximum(weight, 1e-3)
    reached = (weight > 1e-3) & (local > 0)
    if not reached.any():
        return rgb
    gain = np.ones_like(local)  # bare ground far from the smear is left as it is
    gain[reached] = np.clip(np.median(local[lit_small > 0]) / local[reached], 1 / LIGHT_GAIN, LIGHT_GAIN)
    full = np.asarray(cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)
    return np.clip(rgb * full[..., None], 0, 255).astype(np.uint8)


def ground(keys: np.ndarray, bare: np.ndarray, radius: float) -> np.ndarray:
    """The pixels (flat, as `keys`, the quantised colours) whose colour is a smear's background when its most common
    colour is bare: the commonest colour of what is not bare if that lies mostly deeper inside it than half a red
    cell's `radius` (a smear's own plasma, beside glass or inside a dark surround; a lone cell's pixels lie at a
    median 0.29 radii from its edge), else the commonest colour of the bare pixels within `radius` of the rest (the
    ground that sparse cells lie on)."""
    import cv2

    smear = ~bare
    inner = smear.reshape(-1) & (keys == commonest(keys[smear.reshape(-1)]))
    depth = cv2.distanceTransform(smear.astype(np.uint8), cv2.DIST_L2, 3).reshape(-1)
    if np.median(depth[inner]) > radius / 2:
        return inner
    near = (bare & (cv2.distanceTransform(bare.astype(np.uint8), cv2.DIST_L2, 3) <= radius)).reshape(-1)
    if not near.any():
        return inner
    return near & (keys == commonest(keys[near]))


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
            hue: float | None = None, covered: Detections | None = None) -> Signals:
    """The signals of an image's cells `d`; coverage sets the cells `covered` (default: all of them) against the
    `stained` share of `area_px` (the image's, or that of the windows its stain was measured on)."""
    coverage = None
    covered = d if covered is None else covered
    if stained is not None and (stained >= MIN_STAINED or len(covered)):
        coverage = cell_area(covered) / (max(stained, 1 / THUMB_SIDE**2) * area_px)  # a field with no stain at all: one pixel
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
