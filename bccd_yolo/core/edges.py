"""Which cells cut by the edge of a field count: every one, none, or the unbiased counting frame.

- `all`: every detected cell, whole or cut (what the overlay shows and what complete labels annotate).
- `interior`: only cells clear of every edge (more than `margin` px inside).
- `frame`: the unbiased counting frame of stereology and the haemocytometer's L-rule: a cell touching
  the top or left edge counts, a cell touching the right or bottom edge does not (even if it also
  touches top or left). Fields and tiles that tile a plane then count every cell exactly once, so
  their counts add up without bias.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from .detections import Detections

EDGE_MARGIN = 2.0  # px: a box this close to an edge is taken to be cut by it (box regression is not exact)


class EdgeRule(str, Enum):
    ALL = "all"
    INTERIOR = "interior"
    FRAME = "frame"


DEFAULT_EDGE = EdgeRule.ALL


def edge_mask(d: Detections, rule: EdgeRule | str, x1: float, y1: float, x2: float, y2: float,
              margin: float = EDGE_MARGIN) -> np.ndarray:
    """Which boxes of `d` count under `rule` in the field (x1, y1)-(x2, y2)."""
    rule = EdgeRule(rule)
    bx1, by1, bx2, by2 = d.xyxy.T if len(d) else (np.zeros(0),) * 4
    left, top = bx1 <= x1 + margin, by1 <= y1 + margin
    right, bottom = bx2 >= x2 - margin, by2 >= y2 - margin
    if rule is EdgeRule.ALL:
        return np.ones(len(d), bool)
    if rule is EdgeRule.INTERIOR:
        return ~(left | top | right | bottom)
    return ~(right | bottom)


def apply_edge_rule(d: Detections, rule: EdgeRule | str, width: float, height: float) -> Detections:
    """The detections of a whole image that count under `rule`."""
    return d.subset(edge_mask(d, rule, 0, 0, width, height))
