"""Images -> detections -> per-class counts and ratios, as a table, JSON, CSV and overlays."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from .detections import Detections
from .edges import DEFAULT_EDGE, EdgeRule, apply_edge_rule
from .errors import InputError
from .fsutil import atomic_write_text, owned_entries, record_outputs
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

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.names, map(int, self.detections.counts(len(self.names)))))


def ratios(counts: dict[str, int], names: list[str]) -> dict[str, float | None]:
    """Every other class per 1,000 of the model's first class (BCCD: WBC and platelets per 1,000 RBC)."""
    ref = names[0]
    return {f"{n}_per_1000_{ref}": (round(1000 * counts[n] / counts[ref], 2) if counts[ref] else None) for n in names[1:]}


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
            result = ImageCount(str(path), src.width, src.height, detector.names, d, n_tiles, edge=edge.value)
            if out is not None:
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


def totals(results: list[ImageCount], names: list[str]) -> dict[str, int]:
    return {n: sum(r.counts[n] for r in results) for n in names}


def to_json(results: list[ImageCount], detector: Detector, errors: list[InputError]) -> dict:
    names = detector.names
    total = totals(results, names)
    return {
        "model": str(detector.weights),
        "backend": detector.backend,
        "thresholds": detector.thresholds.by_class,
        "thresholds_source": detector.thresholds.source,
        "edge_rule": results[0].edge if results else DEFAULT_EDGE.value,
        "images": [
            {
                "path": r.path, "width": r.width, "height": r.height, "tiles": r.tiles,
                "counts": r.counts, "ratios": ratios(r.counts, names), "overlay": r.overlay,
                "detections": [
                    {"class": names[c], "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
                    for b, s, c in zip(r.detections.xyxy, r.detections.score, r.detections.cls)
                ],
            }
            for r in results
        ],
        "total": total,
        "total_ratios": ratios(total, names),
        "errors": [{"path": e.path, "error": e.problem} for e in errors],
    }


def to_csv(results: list[ImageCount], detector: Detector) -> str:
    names = detector.names
    buf = io.StringIO()
    ratio_keys = list(ratios({n: 0 for n in names}, names))
    thr = ";".join(f"{n}={v:g}" for n, v in detector.thresholds.by_class.items())
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "width", "height", *names, *ratio_keys, "thresholds", "edge_rule"])
    for r in results:
        rt = ratios(r.counts, names)
        w.writerow([r.path, r.width, r.height, *(r.counts[n] for n in names),
                    *("" if rt[k] is None else rt[k] for k in ratio_keys), thr, r.edge])
    return buf.getvalue()


def table(results: list[ImageCount], names: list[str]) -> str:
    ratio_keys = list(ratios({n: 0 for n in names}, names))
    heads = ["image", *names, *(k.replace("_per_1000_", "/1000 ") for k in ratio_keys)]
    rows = []
    for label, counts in [*((Path(r.path).name, r.counts) for r in results), ("TOTAL", totals(results, names))]:
        rt = ratios(counts, names)
        rows.append([label, *(str(counts[n]) for n in names), *("-" if rt[k] is None else f"{rt[k]:.1f}" for k in ratio_keys)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(heads), *(fmt(r) for r in rows)])


def write_reports(results, detector, errors, json_path: Path | None, csv_path: Path | None) -> None:
    if json_path:
        atomic_write_text(json_path, json.dumps(to_json(results, detector, errors), indent=1) + "\n")
    if csv_path:
        atomic_write_text(csv_path, to_csv(results, detector))
