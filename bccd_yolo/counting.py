"""Images -> detections -> per-class counts and ratios, as a table, JSON, CSV and overlays."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from .detections import Detections
from .edges import DEFAULT_EDGE, EdgeRule, apply_edge_rule
from .errors import InputError
from .fsutil import owned_entries, record_outputs
from .images import ImageSource, list_images, open_image
from .overlay import write_photo_overlay, write_slide_overlay
from .tiling import merge_tiles, suppress_nested, tile_grid

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

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.names, map(int, self.detections.counts(len(self.names)))))


def detect_image(src: ImageSource, detector: Detector, tile: int = DEFAULT_TILE, overlap: float = DEFAULT_OVERLAP,
                 progress: bool = True) -> tuple[Detections, int]:
    """Whole-image inference for photos; overlapping tiles, merged, for anything larger than TILE_ABOVE tiles."""
    if not tile or (src.width <= tile * TILE_ABOVE and src.height <= tile * TILE_ABOVE):
        return suppress_nested(detector([src.read(0, 0, src.width, src.height)])[0]), 1
    grid = tile_grid(src.width, src.height, tile, overlap)
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
                 ) -> tuple[list[ImageCount], list[InputError]]:
    """Count every image under the `edge` rule; a bad file is reported and the rest are still counted."""
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
            d, n_tiles = detect_image(src, detector, tile, overlap, progress)
            d = apply_edge_rule(d, edge, src.width, src.height)
            result = ImageCount(str(path), src.width, src.height, detector.names, d, n_tiles, edge=edge.value,
                                origin=getattr(src, "origin", (0.0, 0.0)))
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
