"""Regions drawn in QuPath (GeoJSON annotations in, shapely geometry): which cells lie in each, and which tiles
need reading at all. A cell belongs to every region that contains its box centre (regions may overlap)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError


@dataclass(frozen=True)
class Region:
    name: str
    geometry: Any  # shapely Polygon or MultiPolygon, in the input's level-0 pixels

    @property
    def area_px(self) -> float:
        return float(self.geometry.area)


def read_regions(path: Path, width: int, height: int, origin: tuple[float, float] = (0.0, 0.0)) -> list[Region]:
    """Polygon and MultiPolygon features of a GeoJSON file (QuPath's annotation export), named by `name` or their
    classification; coordinates are QuPath's, so an OpenSlide bounds `origin` is added back. Invalid geometry and
    regions reaching outside the image are errors."""
    import shapely
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a GeoJSON file ({e})") from None
    features = data.get("features", []) if isinstance(data, dict) and data.get("type") == "FeatureCollection" else (
        [data] if isinstance(data, dict) else data)
    regions = []
    for i, f in enumerate(features if isinstance(features, list) else []):
        props = f.get("properties") or {}
        name = props.get("name") or (props.get("classification") or {}).get("name") or f"region {i + 1}"
        geom_json = f.get("geometry") or {}
        if geom_json.get("type") not in ("Polygon", "MultiPolygon"):
            continue  # points, lines and detections are not regions
        try:
            geom = shapely.affinity.translate(shape(geom_json), *origin)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise InputError(path, f"feature {i + 1} ({name}): unreadable geometry ({e})") from None
        if not geom.is_valid:
            raise InputError(path, f"feature {i + 1} ({name}): invalid geometry ({explain_validity(geom)})")
        x1, y1, x2, y2 = geom.bounds
        if x1 < -0.5 or y1 < -0.5 or x2 > width + 0.5 or y2 > height + 0.5:
            raise InputError(path, f"feature {i + 1} ({name}) spans {x1:.0f},{y1:.0f} to {x2:.0f},{y2:.0f}, outside the "
                                   f"{width} x {height} image")
        regions.append(Region(str(name), geom))
    if not regions:
        raise InputError(path, "holds no Polygon or MultiPolygon features")
    return regions


def in_region(d: Detections, region: Region) -> np.ndarray:
    """Which detections have their box centre inside the region."""
    import shapely

    if not len(d):
        return np.zeros(0, bool)
    cx, cy = d.centres
    return np.asarray(shapely.contains_xy(region.geometry, cx, cy), bool)


def touches_any(regions: list[Region], x: float, y: float, w: float, h: float, margin: float = 0.0) -> bool:
    """Whether the tile meets a region widened by `margin` (a cell whose centre lies inside may reach that far)."""
    from shapely.geometry import box

    b = box(x - margin, y - margin, x + w + margin, y + h + margin)
    return any(r.geometry.intersects(b) for r in regions)
