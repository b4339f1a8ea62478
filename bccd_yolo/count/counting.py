"""Images -> detections -> per-class counts and ratios, as a table, JSON, CSV and overlays."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from ..core.detections import Detections
from ..core.edges import DEFAULT_EDGE, apply_edge_rule
from ..core.errors import InputError
from ..core.fsutil import owned_entries, record_outputs
from ..core.images import ImageSource, list_images, open_image, read_scaled
from ..core.sampling import spread
from ..core.scale import DISAGREE, MIN_AUTO_CELLS, Scale, check_mpp, diameters, disagreement, measurable_diameters, mpp_from_cells, whole_cell_diameters
from .options import AUTO, DEFAULT_OVERLAP, MIN_TILE, UNRECORDED_SCALE, CountOptions
from .overlay import write_photo_overlay, write_slide_overlay
from .regions import in_region, read_regions, touches_any
from .tiling import Tile, merge_tiles, suppress_nested, tile_grid

LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:  # the detector pulls in torch and Ultralytics; counting itself needs neither
    from .detector import Detector
    from .differential import CellTypes, Differential

READ_AHEAD = True  # benchmarks/read_ahead.py: measured on and off
UNSCALED_RBC_PX = 103.5  # a model with no recorded scale takes inputs to be BCCD-like photos: its median red cell, px
MERGE_FLOOR = 0.5  # of a class's threshold: tile views scoring less never enter the merge
TILE_ABOVE = 1.5  # images more than this many tiles wide or high are counted tile by tile
QC_WHOLE_PIXELS = 4_200_000  # images up to about 2048 x 2048 are read whole for the qc verdict's stained share


def counts_by_name(d: Detections, names: list[str]) -> dict[str, int]:
    return dict(zip(names, map(int, d.counts(len(names)))))


@dataclass
class ImageCount:
    path: str
    width: int
    height: int
    names: list[str]
    detections: Detections
    tiles: int
    overlay: list[str] = field(default_factory=list)
    edge: str = DEFAULT_EDGE.value  # which cells cut by the image edge are counted (see edges.py)
    origin: tuple[float, float] = (0.0, 0.0)  # level-0 pixel QuPath calls (0, 0): an OpenSlide slide's bounds
    mpp: float | None = None  # micrometres per pixel the image was counted at; None: no scale known, units are pixels
    mpp_source: str | None = None  # given, file, auto or model
    tile: int = 0  # tile edge in input pixels
    tiles_skipped: int = 0  # tiles of bare background never predicted
    regions: list[RegionCount] = field(default_factory=list)
    qc: list[str] = field(default_factory=list)  # why the counts may not be trusted; empty: nothing suspicious
    notes: list[str] = field(default_factory=list)  # worth knowing, no reason to doubt the counts (a scale assumed)
    types: CellTypes | None = None  # white-cell types per detection, where a differential model ran

    @property
    def counts(self) -> dict[str, int]:
        return counts_by_name(self.detections, self.names)

    @property
    def area_px(self) -> float:
        return float(self.width * self.height)


@dataclass
class RegionCount:
    """The cells whose box centre lies in one region."""

    name: str
    names: list[str]
    detections: Detections
    area_px: float
    types: CellTypes | None = None

    @property
    def counts(self) -> dict[str, int]:
        return counts_by_name(self.detections, self.names)


def area_mm2(area_px: float, mpp: float | None) -> float | None:
    return None if mpp is None else round(area_px * mpp * mpp / 1e6, 6)


def sizes(d: Detections, names: list[str], mpp: float | None) -> dict[str, dict[str, Any] | None]:
    """Per class, the median and interquartile range of box diameters (mean of width and height), in micrometres
    when the scale is known, else in pixels."""
    diam = diameters(d) * (1.0 if mpp is None else mpp)
    out: dict[str, dict[str, Any] | None] = {}
    for k, n in enumerate(names):
        v = diam[d.cls == k] if len(d) else diam
        out[n] = None if not len(v) else {"median": round(float(np.median(v)), 2),
                                          "iqr": [round(float(q), 2) for q in np.percentile(v, [25, 75])]}
    return out


def tile_pixels(detector: Detector, mpp: float | None, tile: int | None) -> int:
    """The tile edge in input pixels: `tile` as given, or the network's input size (`imgsz` px at the model's
    scale, the view it was trained on) converted to this input's pixels. 0: never tile."""
    if tile is not None:
        return tile
    return max(1, round(detector.imgsz / detector.factor(mpp)))


@dataclass
class TileReport:
    """What tiled counting did with an image's tiles."""

    predicted: int = 0
    skipped: int = 0  # tiles of bare background (see foreground.py), never predicted


@dataclass
class TilePlan:
    """How an image is predicted: resampled by `factor` to the model's scale, whole or in batches of tiles."""

    width: int
    height: int
    factor: float
    tile: int  # tile edge in input pixels; 0: never tiled
    whole: bool
    batches: list[list[Tile]]
    skipped: int = 0

    @property
    def predicted(self) -> int:
        return sum(len(b) for b in self.batches)


def cell_px(detector: Detector, mpp: float | None) -> float:
    """A red cell's diameter in input pixels at `mpp` um/px (None: the model's photo scale). The `imgsz` knob
    changes what the network sees, not the input, so it has no part here."""
    if detector.scale is None:
        return UNSCALED_RBC_PX
    return detector.scale.rbc_px * detector.scale.mpp / (mpp if mpp is not None else detector.scale.photo_mpp)


def plan_tiles(src: ImageSource, detector: Detector, tile: int | None = None, overlap: float = DEFAULT_OVERLAP,
               needed: Callable[[Tile], bool] | None = None, mpp: float | None = None,
               skip_background: bool = True) -> TilePlan:
    """The tiles to predict (see detect_image): a bad tile size is an InputError naming the file."""
    f = detector.factor(mpp)
    tile = tile_pixels(detector, mpp, tile)
    if tile and tile * f < MIN_TILE:
        raise InputError(src.path, f"a {tile} px tile is {tile * f:.0f} px at the model's scale; the least is "
                                   f"{MIN_TILE} (raise {{tile}} or check {{mpp}})", option="tile")
    if not tile or (src.width <= tile * TILE_ABOVE and src.height <= tile * TILE_ABOVE):
        return TilePlan(src.width, src.height, f, tile, True, [[Tile(0, 0, 0, 0, src.width, src.height)]])
    grid = [t for t in tile_grid(src.width, src.height, tile, overlap) if needed is None or needed(t)]
    skipped = 0
    if skip_background and len(grid) > 1:
        from .foreground import foreground

        fg = foreground(src, cell_px=cell_px(detector, mpp))
        if fg is not None:
            kept = [t for t in grid if fg.touches(t.x, t.y, t.w, t.h)]
            skipped, grid = len(grid) - len(kept), kept
    batches = [grid[i : i + detector.batch] for i in range(0, len(grid), detector.batch)]
    return TilePlan(src.width, src.height, f, tile, False, batches, skipped)


def read_batch(src: ImageSource, plan: TilePlan, k: int) -> list[np.ndarray]:
    """Batch k's tiles read and resampled to the model's scale."""
    return [read_scaled(src, t.x, t.y, t.w, t.h, plan.factor) for t in plan.batches[k]]


def predict_batch(plan: TilePlan, k: int, views: list[np.ndarray], detector: Detector) -> list[Detections]:
    """Batch k's detections per tile, in image coordinates: a photo's at the model's thresholds; tiles' down to
    MERGE_FLOOR of them, for merge_plan (one box per cell within each)."""
    tiles = plan.batches[k]
    found = _in_tile_pixels(tiles, views, detector(views, threshold=plan.whole, native=True))
    if plan.whole:
        return [suppress_nested(found[0])]
    # Views scoring under half their class's threshold are dropped before merging: they are not cells in any
    # tile, and as members of a cell they would hold their tile's place in it (see merge_tiles).
    floor = [MERGE_FLOOR * detector.thresholds.by_class[n] for n in detector.names]
    return [suppress_nested(d.above(floor)).shifted(t.x, t.y) for t, d in zip(tiles, found)]


def merge_plan(plan: TilePlan, per_tile: list[Detections], detector: Detector) -> Detections:
    """One box per cell from every tile's detections (in plan order), at the model's thresholds."""
    if plan.whole:
        return per_tile[0]
    tiles = [t for batch in plan.batches for t in batch]
    # Threshold after merging: a cell cut by a tile edge can score above the threshold while the
    # neighbour's whole view of it scores below; matched first, the whole view decides.
    merged = merge_tiles(list(zip(tiles, per_tile)), plan.width, plan.height,
                         margin=max(2.0, 2.0 / plan.factor))  # 2 px at the model's scale
    return detector.thresholds.keep(merged, detector.names)


def detect_image(src: ImageSource, detector: Detector, tile: int | None = None, overlap: float = DEFAULT_OVERLAP,
                 progress: bool = True, needed: Callable[[Tile], bool] | None = None,
                 mpp: float | None = None, skip_background: bool = True,
                 report: TileReport | None = None) -> tuple[Detections, int]:
    """Detections in image pixels and the number of tiles predicted, with the image seen at the model's scale
    whatever its size or the tile size.

    The input (at `mpp` um/px; None: the model's photo scale) is resampled to the model's scale. Photos up to
    TILE_ABOVE tiles are predicted whole; larger images as overlapping tiles of `tile` input pixels, merged.
    `needed` picks the tiles worth reading (e.g. those touching a region); with `skip_background`, tiles of
    bare glass are not predicted either. Tiles are read on a background thread while the network runs."""
    plan = plan_tiles(src, detector, tile, overlap, needed, mpp, skip_background)
    if report is not None:
        report.predicted, report.skipped = plan.predicted, plan.skipped
    return run_plan(src, plan, detector, progress), plan.predicted


def run_plan(src: ImageSource, plan: TilePlan, detector: Detector, progress: bool = True,
             tiles_done: Callable[[int, int], None] | None = None) -> Detections:
    """Every batch of the plan read ahead and predicted, then merged: the image's cells. `tiles_done(done, total)`
    is told after each batch (the page's progress)."""
    per_tile: list[Detections] = []
    with tqdm(total=plan.predicted, desc=f"{src.path.name} tiles", unit="tile", disable=not progress or plan.whole) as bar:
        for k, views in _read_ahead(src, plan):
            per_tile += predict_batch(plan, k, views, detector)
            bar.update(len(views))
            if tiles_done is not None:
                tiles_done(len(per_tile), plan.predicted)
    return merge_plan(plan, per_tile, detector)


def _read_ahead(src: ImageSource, plan: TilePlan) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Each batch's views, the next batch read (decoded, resampled) on a thread while this one is predicted:
    decoding and resizing release the GIL, so they overlap the network. One batch ahead bounds the memory."""
    if len(plan.batches) == 1 or not READ_AHEAD:
        for k in range(len(plan.batches)):
            yield k, read_batch(src, plan, k)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="tile-reader") as pool:
        ahead = pool.submit(read_batch, src, plan, 0)
        for k in range(len(plan.batches)):
            views = ahead.result()
            if k + 1 < len(plan.batches):
                ahead = pool.submit(read_batch, src, plan, k + 1)
            yield k, views


def _in_tile_pixels(tiles: list[Tile], views: list[np.ndarray], found: list[Detections]) -> list[Detections]:
    """Boxes found on views at the model's scale, clipped to each view and scaled back to its tile's pixels."""
    return [d.clipped(v.shape[1], v.shape[0]).scaled(t.w / v.shape[1], t.h / v.shape[0])
            for t, v, d in zip(tiles, views, found)]


def output_stems(files: list[Path]) -> dict[Path, str]:
    """Output names per input: its stem, and stem-2, stem-3, ... for later inputs of the same stem
    (a/x.jpg and b/x.jpg give x_overlay.jpg and x-2_overlay.jpg)."""
    seen: dict[str, int] = {}
    out = {}
    for f in files:
        n = seen[f.stem] = seen.get(f.stem, 0) + 1
        out[f] = f.stem if n == 1 else f"{f.stem}-{n}"
    return out


AUTO_TILES = 12  # tiles sampled, spread over the image, to estimate its scale from its red cells
# where too few red cells are found at the assumed scale, the estimate starts again as if the input were twice as
# fine, twice as coarse, four times as fine: a camera's 2,560 px field of BCCD's photo had cells 4x too large to find
RETRY_SCALES = (0.5, 2.0, 0.25)
REFINE_ABOVE = 0.10  # an estimate further than this from the scale its pass ran at gets another pass at it
# Cells far larger than the model's are found with boxes pulled towards the size it learnt, so an estimate from them
# moves only part of the way: a BCCD photo at 4x went 0.080 -> 0.045 -> 0.027 -> 0.019 um/px, settling at the fourth
AUTO_PASSES = 4


def _rbc_class(detector: Detector) -> int | None:
    return detector.names.index("RBC") if "RBC" in detector.names else None


def estimate_scale(src: ImageSource, detector: Detector, assumed: float | None, snap: float = 0.0) -> tuple[float | None, int]:
    """The scale of `src` from the red cells found on up to AUTO_TILES tiles, and how many cells it rests on.

    Detection is best at the right scale, so an estimate made at the `assumed` scale (the file's or the model's) is
    refined by another pass at that estimate while the two differ by more than REFINE_ABOVE (AUTO_PASSES in all;
    most photos settle in one or two). With `snap`, an estimate within it of the scale its pass ran at keeps that
    scale (so that pass could be the count): counting never does, because benchmarks/auto_snap.py measured BCCD val
    RBC count MAE 1.16 without, 1.35 at 0.05."""
    k = _rbc_class(detector)
    if detector.scale is None or k is None:
        return None, 0
    estimate, n = None, 0
    for _ in range(AUTO_PASSES):
        tile = tile_pixels(detector, assumed, None)
        grid = tile_grid(src.width, src.height, tile, 0.0)
        picks = spread(grid, AUTO_TILES)
        views = [read_scaled(src, t.x, t.y, t.w, t.h, detector.factor(assumed)) for t in picks]
        boxes = _in_tile_pixels(picks, views, detector(views, native=True))
        found = np.concatenate([measurable_diameters(suppress_nested(d), k, t.w, t.h) for t, d in zip(picks, boxes)])
        n, estimate = len(found), mpp_from_cells(found, detector.scale, MIN_AUTO_CELLS)
        if estimate is None:
            return None, n
        if assumed is not None and snap and disagreement(estimate, assumed) <= snap:
            return assumed, n
        if assumed is not None and disagreement(estimate, assumed) <= REFINE_ABOVE:
            break
        assumed = estimate
    return estimate, n


def image_scale(src: ImageSource, detector: Detector, mpp: float | str | None) -> Scale | None:
    """An input's scale: `mpp` as given, `auto` (from its red cells), the file's, else the model's photo scale.
    None when no scale is known at all (a model calibrated before scales were recorded, and no other source)."""
    read = getattr(src, "mpp", None)
    asked = mpp == AUTO
    if mpp is None and read is None and UNRECORDED_SCALE == AUTO and detector.scale is not None:
        mpp = AUTO  # nothing records this input's scale: its red cells tell it (see options.UNRECORDED_SCALE)
    if mpp == AUTO:
        assumed = read if read is not None else (detector.scale.photo_mpp if detector.scale else None)
        estimate, n = estimate_scale(src, detector, assumed)
        if estimate is None and assumed is not None:
            for k in RETRY_SCALES:  # cells too large or small to be found as assumed
                estimate, _ = estimate_scale(src, detector, assumed * k)
                if estimate is not None:
                    break
        if estimate is not None:
            (LOGGER.info if asked else LOGGER.debug)("%s: scale %.4f um/px, estimated from %d red cells", src.path, estimate, n)
            return Scale(round(estimate, 6), AUTO)
        fallback = recorded_scale(read, detector)
        if fallback is None:
            return None
        said = (f"scale unknown: {'--mpp ' if asked else ''}auto found {n} measurable red cells (needs {MIN_AUTO_CELLS}); "
                f"counted at the {'file' if read is not None else 'model'}'s scale")
        # asked for, it is a qc reason; by default (nothing records the scale) it is said, as the counts of so few
        # cells hardly depend on it (9 Raabin val fields: RBC count MAE 1.33 at the model's scale, 1.11 at theirs)
        return Scale(fallback.mpp, fallback.source, said) if asked else Scale(fallback.mpp, fallback.source, notice=said)
    if isinstance(mpp, (int, float)):
        given_note = None if detector.scale is not None else (
            "scale ignored: this model records no training scale (run calibrate on it), so --mpp changed nothing")
        return Scale(check_mpp(mpp), "given", given_note)
    return recorded_scale(read, detector)


def recorded_scale(read: float | None, detector: Detector) -> Scale | None:
    """The scale nothing needs estimating for: the file's, else the model's photo scale, else none."""
    if read is not None:
        return Scale(float(read), "file")
    if detector.scale is not None:
        return Scale(detector.scale.photo_mpp, "model")
    return None


def check_scale(d: Detections, scale: Scale | None, detector: Detector, width: int, height: int) -> str | None:
    """A qc reason when the red cells counted say the image's scale is off by more than DISAGREE from the one used."""
    k = _rbc_class(detector)
    if scale is None or scale.source == AUTO or detector.scale is None or k is None:
        return None
    cells = whole_cell_diameters(d, k, width, height)
    implied = mpp_from_cells(cells, detector.scale)
    if implied is not None and disagreement(implied, scale.mpp) > DISAGREE:
        used = {"given": "--mpp", "file": "the file's scale", "model": "the model's scale"}[scale.source]
        return (f"scale: counted at {scale.mpp:.4f} um/px ({used}), but its {len(cells)} red cells measure as if at "
                f"{implied:.4f} um/px; pass --mpp or --mpp auto")
    return None


def judge(plan: ImagePlan, d: Detections, detector: Detector, src: ImageSource | None) -> list[str]:
    """The image's qc verdict (see qc.py), from its detections before the edge rule and its pixels (a photo's
    whole, a larger image's on QC_WINDOWS windows)."""
    from .qc import pooled, reasons, signals, stain_of, window_stains

    t = plan.tiles
    notes = [n for n in (plan.scale.note if plan.scale else None, check_scale(d, plan.scale, detector, t.width, t.height)) if n]
    px = cell_px(detector, plan.scale.mpp if plan.scale else None)
    opened = src if src is not None else open_image(plan.path)
    try:
        if t.whole or t.width * t.height <= QC_WHOLE_PIXELS:  # photos, also when tiled: their stain read whole
            stain, area, covered = stain_of(opened, px), float(t.width * t.height), d
        else:  # too large to read whole: the stain of windows spread over what was predicted, against their cells
            windows = qc_windows(t)
            areas = [float(w * h) for _, _, w, h in windows]
            stain, area = pooled(window_stains(opened, windows, px), areas), sum(areas)
            covered = Detections.concat([d.subset(centred_in(d, *w)) for w in windows])
    finally:
        if src is None:
            opened.close()
    found = signals(d, detector.names, detector.thresholds.by_class, area, stain.share, stain.hue, covered)
    return notes + reasons(found, detector.stain_hues)


QC_WINDOWS = 16  # tiles of an image too large to read whole whose stain qc measures


def qc_windows(plan: TilePlan) -> list[tuple[int, int, int, int]]:
    """Up to QC_WINDOWS of the tiles predicted (glass skipped is not smear), spread evenly through the plan."""
    return [(t.x, t.y, t.w, t.h) for t in spread([t for b in plan.batches for t in b], QC_WINDOWS)]


def centred_in(d: Detections, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Which boxes have their centre inside the region."""
    cx, cy = d.centres
    return (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)


@dataclass
class ImagePlan:
    """An image ready to be predicted: where it is, its scale, its regions and its tile plan."""

    path: Path
    origin: tuple[float, float]
    scale: Scale | None
    tiles: TilePlan
    regions: list | None  # regions.Region, where --regions was given

    @property
    def predicted(self) -> int:
        return self.tiles.predicted

    @property
    def batches(self) -> list[list[Tile]]:
        return self.tiles.batches


def plan_image(src: ImageSource, detector: Detector, options: CountOptions = CountOptions()) -> ImagePlan:
    """Scale, regions and tiles of one opened image; bad regions or tile sizes are InputErrors naming it."""
    origin = getattr(src, "origin", (0.0, 0.0))
    areas = read_regions(options.regions, src.width, src.height, origin) if options.regions is not None else None
    scale = image_scale(src, detector, options.mpp)
    used_mpp = scale.mpp if scale else None
    tile_px = tile_pixels(detector, used_mpp, options.tile)
    reach = tile_px * options.overlap  # the largest cell the tiling is set up for: a cell centred inside reaches that far
    needed = (lambda t: touches_any(areas, t.x, t.y, t.w, t.h, reach)) if areas else None
    plan = plan_tiles(src, detector, tile_px, options.overlap, needed, used_mpp, options.skip_background)
    return ImagePlan(Path(src.path), origin, scale, plan, areas)


def type_cells(d: Detections, detector: Detector, differential: Differential, src: ImageSource,
               mpp: float | None) -> CellTypes:
    """The white cells' types (at the image's scale, else the model's photo scale)."""
    from .differential import WBC

    if WBC not in detector.names:
        raise InputError(detector.weights, f"has no {WBC} class: a differential needs white cells to type")
    used = mpp or (detector.scale.photo_mpp if detector.scale else None) or differential.field_mpp
    return differential.types(src, d, detector.names.index(WBC), used)


def finish_image(plan: ImagePlan, d: Detections, detector: Detector, options: CountOptions, out: Path | None,
                 stem: str, src: ImageSource | None = None, differential: Differential | None = None,
                 progress: bool = False) -> ImageCount:
    """The merged detections of one image as its count: scale check, edge rule, regions, qc verdict, white-cell
    types, overlays (`progress`: a bar for a slide's)."""
    t = plan.tiles
    edge = options.edge
    verdict = judge(plan, d, detector, src) if options.qc else []
    d = apply_edge_rule(d, edge, t.width, t.height)
    result = ImageCount(str(plan.path), t.width, t.height, detector.names, d, t.predicted, edge=edge.value,
                        origin=plan.origin, mpp=plan.scale.mpp if plan.scale else None,
                        mpp_source=plan.scale.source if plan.scale else None, tile=t.tile, tiles_skipped=t.skipped,
                        qc=verdict, notes=[plan.scale.notice] if plan.scale and plan.scale.notice else [])
    result.regions = [RegionCount(r.name, detector.names, d.subset(in_region(d, r)), r.area_px)
                      for r in plan.regions or []]
    if differential is not None:
        from .differential import doubts

        opened = src if src is not None else open_image(plan.path)
        try:
            result.types = type_cells(d, detector, differential, opened, result.mpp)
            if options.qc:
                result.qc += doubts(result.types, differential.score_floor)
            for g, r in zip(result.regions, plan.regions or []):
                g.types = result.types.subset(in_region(d, r))
        finally:
            if src is None:
                opened.close()
    if out is not None:
        from .differential import overlay_labels

        labels = overlay_labels(result.types, d, differential.score_floor if differential is not None else 0.0)
        opened = src if src is not None else open_image(plan.path)
        try:
            files_out: tuple[Path, ...]
            if not t.whole:
                files_out = write_slide_overlay(opened, d, detector.names, result.counts,
                                                out / f"{stem}_overlay.tif" if options.slide_overlay else None,
                                                out / f"{stem}_preview.png", labels, progress)
            else:
                files_out = (write_photo_overlay(opened, d, detector.names, result.counts, out / f"{stem}_overlay.jpg",
                                                 labels),)
        finally:
            if src is None:
                opened.close()
        result.overlay = [str(p) for p in files_out]
        record_outputs(out, [Path(p).name for p in result.overlay])
    return result


def input_files(paths: list[Path], out: Path | None) -> list[Path]:
    """The images to count: folders expanded, overlays an earlier run wrote into `out` left out."""
    files = list_images(paths)
    if out is not None:  # never count overlays an earlier run wrote into the same folder
        ours = {(Path(out).resolve() / name) for name in owned_entries(Path(out)) or []}
        files = [f for f in files if Path(f).resolve() not in ours]
    return files


@dataclass(frozen=True)
class Progress:
    """How far a count is: images finished of all, and the tiles predicted of the image being counted."""

    images_done: int
    images: int
    tiles_done: int = 0
    tiles: int = 0


def count_images(paths: list[Path], detector: Detector, options: CountOptions = CountOptions(), out: Path | None = None,
                 progress: bool = True, differential: Differential | None = None,
                 on_progress: Callable[[Progress], None] | None = None) -> tuple[list[ImageCount], list[InputError]]:
    """Count every image (see CountOptions); a bad file is reported and the rest are still counted. With
    `options.regions`, cells are also counted per region, and tiles that touch no region are never read; with
    `out`, overlays are written there; with `differential`, white cells are typed; `on_progress` is told after
    every batch of tiles and every image."""
    results: list[ImageCount] = []
    errors: list[InputError] = []
    files = input_files(paths, out)
    stems = output_stems(files)
    tell = on_progress or (lambda p: None)
    for i, path in enumerate(tqdm(files, desc="images", unit="img", disable=not progress or len(files) < 2)):
        tell(Progress(i, len(files)))
        try:
            src = open_image(path)
        except InputError as e:
            errors.append(e)
            continue
        try:
            plan = plan_image(src, detector, options)
            d = run_plan(src, plan.tiles, detector, progress, lambda done, total: tell(Progress(i, len(files), done, total)))
            if not plan.tiles.whole:
                detector.release_memory()
            results.append(finish_image(plan, d, detector, options, out, stems[path], src, differential, progress))
        except InputError as e:  # regions that do not fit this image, a tile too small at its scale, a bad read
            errors.append(e)
        finally:
            src.close()
    tell(Progress(len(files), len(files)))
    return results, errors
