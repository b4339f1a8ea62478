"""Sliced inference geometry, and the merge of the views overlapping tiles give of one cell.

Boxes are compared only with boxes near them (an R-tree), by intersection over the smaller box: a
cell cut by a tile edge is a partial box inside the whole one. Views of one cell are joined into one cell,
never two boxes of one tile (touching cells one tile separated stay separate), and the cell keeps its best
whole view; duplicates are dropped, not fused, because fusing joins touching cells. Only a cell that no
tile saw whole (larger than the overlap) gets the extent of its parts. Cost grows with the number of
cells, not with its square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.detections import Detections
from ..core.matching import ios_of, iou_of, overlap_areas


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    x: int
    y: int
    w: int
    h: int


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]  # the last tile is flush with the far edge


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[Tile]:
    """Row-major tiles of `tile` pixels (smaller only where the image is), overlapping by `overlap` of a tile."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap {overlap} must be in [0, 1)")
    stride = max(1, round(tile * (1 - overlap)))
    ys, xs = _starts(height, tile, stride), _starts(width, tile, stride)
    return [Tile(r, c, x, y, min(tile, width), min(tile, height)) for r, y in enumerate(ys) for c, x in enumerate(xs)]


NESTED_IOS = 0.8  # same-class boxes overlapping this much of the smaller one are one cell


SAME_BOX_IOU = 0.7  # boxes of different classes this alike are one object labelled twice (Ultralytics' NMS IoU)


def suppress_nested(d: Detections, ios: float = NESTED_IOS) -> Detections:
    """One cell, one box: drop a box whose intersection with a higher-scoring box of its class covers at least `ios`
    of the smaller box, and a box that a higher-scoring box of another class matches at IoU >= SAME_BOX_IOU (one
    object, two labels: Ultralytics' NMS is per class). NMS (IoU 0.7) leaves nested pairs; IoS removes them while
    touching cells, which overlap little, stay apart. In the complete labels of 181 train/val photos only 18 of
    47,890 same-class pairs of real cells overlap this much (0.1 per photo). Meant for one image or one tile."""
    if len(d) < 2:
        return d
    order = np.argsort(-d.score, kind="stable")
    overlaps = overlap_areas(d.xyxy[order], d.xyxy[order])
    same = d.cls[order][:, None] == d.cls[order][None, :]
    dup = np.where(same, ios_of(*overlaps) >= ios, iou_of(*overlaps) >= SAME_BOX_IOU)
    alive = np.ones(len(d), bool)
    for i in range(len(d)):
        if alive[i]:
            alive[i + 1 :] &= ~dup[i, i + 1 :]
    keep = np.zeros(len(d), bool)
    keep[order[alive]] = True
    return d.subset(keep)


def edge_room(d: Detections, t: Tile, width: int, height: int) -> np.ndarray:
    """Each box's distance (px) to the nearest edge of tile t lying inside the image (inf: none near it). A box
    within a small margin of such an edge is likely a partial cell, cut by the tile."""
    x1, y1, x2, y2 = d.xyxy.T
    inf = np.full(len(d), np.inf)
    return np.minimum.reduce([
        x1 - t.x if t.x > 0 else inf,
        y1 - t.y if t.y > 0 else inf,
        t.x + t.w - x2 if t.x + t.w < width else inf,
        t.y + t.h - y2 if t.y + t.h < height else inf,
    ])


def merge_tiles(tiles: list[tuple[Tile, Detections]], width: int, height: int, ios: float = 0.5,
                margin: float = 2.0) -> Detections:
    """Detections of all tiles (image coordinates), one box per cell.

    Boxes of different tiles are views of one cell when they overlap by `ios` of the smaller box and are of one
    class, or when one is cut by its tile's edge and lies (NESTED_IOS) in a larger whole box of the other (a cut
    cell can look like another class: half a white cell like a platelet). Views are joined strongest first (by IoU) into cells
    that never hold two boxes of one tile (one tile's touching cells stay apart); chains of views join, so a
    cell larger than the overlap, seen in parts by three tiles, is still one cell. Each cell keeps its most
    central whole view: the one farthest from its tile's edges, as a photo would show it. Not the highest score
    of its views: the best of several looks lifts faint cells (platelets) over a threshold calibrated on one
    look. A cell no tile saw whole gets the extent of its parts.
    Candidates come from an R-tree of the boxes (shapely's STRtree): cost grows with the cells, not their square."""
    parts = [(t, suppress_nested(d)) for t, d in tiles]
    parts = [(t, d) for t, d in parts if len(d)]
    if not parts:
        return Detections.empty()
    d = Detections.concat([p for _, p in parts])
    tile_of = np.concatenate([np.full(len(p), k) for k, (_, p) in enumerate(parts)])
    room = np.concatenate([edge_room(p, t, width, height) for t, p in parts])
    cut = room <= margin
    room[cut] = 0.0  # cut views are ranked by score alone
    edges = _same_cell_pairs(d, tile_of, cut, ios)
    cell = _join(edges, tile_of)
    keep = np.zeros(len(d), bool)
    xyxy = d.xyxy.copy()
    order = np.lexsort((-d.score, -room, cut))  # whole before cut, then the most central, then by score
    seen: set[int] = set()
    for i in order:
        root = cell[i]
        if root in seen:
            continue
        seen.add(root)
        keep[i] = True
        if cut[i]:  # no whole view: the union of the parts
            members = np.flatnonzero(cell == root)
            xyxy[i] = [*d.xyxy[members, :2].min(axis=0), *d.xyxy[members, 2:].max(axis=0)]
    kept = np.flatnonzero(keep)
    return Detections(xyxy[kept], d.score[kept], d.cls[kept])


def _join(pairs: list[tuple[float, int, int]], tile_of: np.ndarray) -> np.ndarray:
    """Union-find over the pairs, strongest first, never joining two cells that hold boxes of one tile.
    Returns each box's cell (a root index)."""
    parent = np.arange(len(tile_of))
    tiles: dict[int, set[int]] = {i: {int(t)} for i, t in enumerate(tile_of)}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for _, i, j in sorted(pairs, key=lambda p: -p[0]):
        a, b = root(i), root(j)
        if a == b or tiles[a] & tiles[b]:
            continue
        if len(tiles[a]) < len(tiles[b]):
            a, b = b, a
        parent[b] = a
        tiles[a] |= tiles.pop(b)
    return np.array([root(i) for i in range(len(tile_of))])


def _same_cell_pairs(d: Detections, tile_of: np.ndarray, cut: np.ndarray, ios: float) -> list[tuple[float, int, int]]:
    """(strength, i, j) for every pair of boxes of different tiles that are views of one cell; strength is the
    IoU, plus 1 for boxes of one class (views of one class join first: a cut piece must not take a neighbouring
    cell's place in a tile). Candidates are the pairs of boxes that intersect, from shapely's STRtree
    (benchmarks/merge_speed.py: half the time of the spatial hash it replaced, identical merges)."""
    import shapely

    boxes = shapely.box(*d.xyxy.T)
    ia, ib = shapely.STRtree(boxes).query(boxes, predicate="intersects")
    keep = (ia < ib) & (tile_of[ia] != tile_of[ib])
    ia, ib = ia[keep], ib[keep]
    a, b = d.xyxy[ia].astype(np.float64), d.xyxy[ib].astype(np.float64)
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    m = inter / np.maximum(np.minimum(area_a, area_b), 1e-9)
    same_class = d.cls[ia] == d.cls[ib]
    cut_in_whole = (cut[ia] & ~cut[ib] & (area_a <= area_b)) | (~cut[ia] & cut[ib] & (area_b <= area_a))
    ok = ((m >= ios) & same_class) | ((m >= NESTED_IOS) & cut_in_whole)
    iou = inter[ok] / np.maximum(area_a[ok] + area_b[ok] - inter[ok], 1e-9)
    return list(zip((iou + same_class[ok]).tolist(), ia[ok].tolist(), ib[ok].tolist()))
