"""Images -> detections -> per-class counts and ratios, as a table, JSON, CSV and overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from tqdm import tqdm

from .detections import Detections
from .edges import DEFAULT_EDGE, EdgeRule, apply_edge_rule
from .errors import InputError
from .fsutil import owned_entries, record_outputs
from .images import ImageSource, list_images, open_image
from .overlay import write_photo_overlay, write_slide_overlay
from .regions import in_region, read_regions, touches_any
from .tiling import Tile, merge_tiles, suppress_nested, tile_grid

if TYPE_CHECKING:  # the detector pulls in torch and Ultralytics; counting itself needs neither
    from .detector import Detector

DEFAULT_TILE = 640  # BCCD's frame width: tiles show cells at the scale the model was trained on
DEFAULT_OVERLAP = 0.4  # 256 px of a 640 tile: at least the largest cell (WBC, up to ~260 px), so each cell is whole in some tile
MIN_TILE = 64  # smaller tiles see too little around a cell (and a 1 px tile would mean millions of tiles)
TILE_ABOVE = 1.5  # images more than this many tiles wide or high are counted tile by tile


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
    mpp: float | None = None  # micrometres per pixel (given, or read from the file); None: units are pixels
    regions: list[RegionCount] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.names, map(int, self.detections.counts(len(self.names)))))

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

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.names, map(int, self.detections.counts(len(self.names)))))


def area_mm2(area_px: float, mpp: float | None) -> float | None:
    return None if mpp is None else round(area_px * mpp * mpp / 1e6, 6)


def sizes(d: Detections, names: list[str], mpp: float | None) -> dict[str, dict[str, Any] | None]:
    """Per class, the median and interquartile range of box diameters (mean of width and height), in micrometres
    when the scale is known, else in pixels."""
    per = 1.0 if mpp is None else mpp
    diam = ((d.xyxy[:, 2] - d.xyxy[:, 0]) + (d.xyxy[:, 3] - d.xyxy[:, 1])) / 2 * per if len(d) else np.zeros(0)
    out: dict[str, dict[str, Any] | None] = {}
    for k, n in enumerate(names):
        v = diam[d.cls == k] if len(d) else diam
        out[n] = None if not len(v) else {"median": round(float(np.median(v)), 2),
                                          "iqr": [round(float(q), 2) for q in np.percentile(v, [25, 75])]}
    return out


def detect_image(src: ImageSource, detector: Detector, tile: int = DEFAULT_TILE, overlap: float = DEFAULT_OVERLAP,
                 progress: bool = True, needed: Callable[[Tile], bool] | None = None) -> tuple[Detections, int]:
    """Whole-image inference for photos; overlapping tiles, merged, for anything larger than TILE_ABOVE tiles.
    `needed` picks the tiles worth reading (e.g. those touching a region); the others are never read."""
    if not tile or (src.width <= tile * TILE_ABOVE and src.height <= tile * TILE_ABOVE):
        return suppress_nested(detector([src.read(0, 0, src.width, src.height)])[0]), 1
    grid = [t for t in tile_grid(src.width, src.height, tile, overlap) if needed is None or needed(t)]
    per_tile = []
    with tqdm(total=len(grid), desc=f"{src.path.name} tiles", unit="tile", disable=not progress) as bar:
        for i in range(0, len(grid), detector.batch):
            batch = grid[i : i + detector.batch]
            found = detector([src.read(t.x, t.y, t.w, t.h) for t in batch], threshold=False)
            per_tile += [(t, suppress_nested(d).shifted(t.x, t.y)) for t, d in zip(batch, found)]
            bar.update(len(batch))
    # Threshold after merging: a cell cut by a tile edge can score above the threshold while the
    # neighbour's whole view of it scores below; matched first, the whole view decides.
    return detector.thresholds.keep(merge_tiles(per_tile, src.width, src.height), detector.names), len(grid)


def output_stems(files: list[Path]) -> dict[Path, str]:
    """Output names per input: its stem, and stem-2, stem-3, ... for later inputs of the same stem
    (a/x.jpg and b/x.jpg give x_overlay.jpg and x-2_overlay.jpg)."""
    seen: dict[str, int] = {}
    out = {}
    for f in files:
        n = seen[f.stem] = seen.get(f.stem, 0) + 1
        out[f] = f.stem if n == 1 else f"{f.stem}-{n}"
    return out


def count_images(paths: list[Path], detector: Detector, tile: int = DEFAULT_TILE, overlap: float = DEFAULT_OVERLAP,
                 out: Path | None = None, progress: bool = True, edge: EdgeRule | str = DEFAULT_EDGE,
                 mpp: float | None = None, regions: Path | None = None,
                 ) -> tuple[list[ImageCount], list[InputError]]:
    """Count every image under the `edge` rule; a bad file is reported and the rest are still counted.

    `mpp` (micrometres per pixel) overrides the scale an image's file records. With `regions` (a GeoJSON file of
    polygons), cells are also counted per region, and tiles that touch no region are never read."""
    edge = EdgeRule(edge)
    results: list[ImageCount] = []
    errors: list[InputError] = []
    files = list_images(paths)
    if out is not None:  # never count overlays an earlier run wrote into the same folder
        ours = {(Path(out).resolve() / name) for name in owned_entries(Path(out)) or []}
        files = [f for f in files if Path(f).resolve() not in ours]
    stems = output_stems(files)
    for path in tqdm(files, desc="images", unit="img", disable=not progress or len(files) < 2):
        try:
            src = open_image(path)
        except InputError as e:
            errors.append(e)
            continue
        try:
            origin = getattr(src, "origin", (0.0, 0.0))
            try:
                areas = read_regions(regions, src.width, src.height, origin) if regions is not None else None
            except InputError as e:  # regions that do not fit this image: reported, the other images counted
                errors.append(e)
                continue
            reach = tile * overlap  # the largest cell the tiling is set up for: a cell centred inside reaches that far
            needed = (lambda t: touches_any(areas, t.x, t.y, t.w, t.h, reach)) if areas else None
            d, n_tiles = detect_image(src, detector, tile, overlap, progress, needed)
            d = apply_edge_rule(d, edge, src.width, src.height)
            result = ImageCount(str(path), src.width, src.height, detector.names, d, n_tiles, edge=edge.value,
                                origin=origin, mpp=mpp if mpp is not None else getattr(src, "mpp", None))
            result.regions = [RegionCount(r.name, detector.names, d.subset(in_region(d, r)), r.area_px)
                              for r in areas or []]
            if out is not None:
                files_out: tuple[Path, ...]
                if n_tiles > 1:
                    files_out = write_slide_overlay(src, d, detector.names, result.counts,
                                                    out / f"{stems[path]}_overlay.tif", out / f"{stems[path]}_preview.png")
                else:
                    files_out = (write_photo_overlay(src, d, detector.names, result.counts, out / f"{stems[path]}_overlay.jpg"),)
                result.overlay = [str(p) for p in files_out]
            results.append(result)
            if out is not None:
                record_outputs(out, [Path(p).name for p in result.overlay])
        finally:
            src.close()
    return results, errors
