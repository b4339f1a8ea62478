"""Counts as the user reads them: the table, JSON and CSV (GeoJSON to come), written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .edges import DEFAULT_EDGE
from .errors import InputError
from .fsutil import atomic_write_text

if TYPE_CHECKING:
    from .counting import ImageCount
    from .detector import Detector


def ratios(counts: dict[str, int], names: list[str]) -> dict[str, float | None]:
    """Every other class per 1,000 of the model's first class (BCCD: WBC and platelets per 1,000 RBC)."""
    ref = names[0]
    return {f"{n}_per_1000_{ref}": (round(1000 * counts[n] / counts[ref], 2) if counts[ref] else None) for n in names[1:]}


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
