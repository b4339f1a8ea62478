"""Picking a few of many, evenly: tiles to estimate a scale on or judge a slide's stain on, fields to sample."""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def spread(items: Sequence[T], n: int) -> list[T]:
    """Up to `n` of `items`, spread evenly from the first to the last, in order, none twice."""
    return [items[round(i)] for i in np.linspace(0, len(items) - 1, min(n, len(items)))]
