"""Counts as the user reads them: the table, JSON, CSV and QuPath GeoJSON, written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.detections import Detections
from ..core.edges import DEFAULT_EDGE
from ..core.errors import InputError
from ..core.fsutil import atomic_write_text
from .counting import area_mm2, sizes
from .differential import differential, merged

if TYPE_CHECKING:
    from .counting import ImageCount
    from .detector import Detector
    from .differential import CellTypes


Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion k / n, the formula scipy's binomtest(k, n).proportion_ci(
    method="wilson") evaluates (tests/test_outputs.py checks they agree), written out because importing scipy.stats
    costs half a second of every count."""
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * (p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_ci(k: int, ref: int, per: float = 1000.0) -> tuple[float, float] | None:
    """95 % interval of `per` * k / ref, from Wilson's score interval for p = k / (k + ref) (counts taken as Poisson,
    so k given k + ref is binomial) mapped through per * p / (1 - p). None when ref is 0 (the ratio is undefined)."""
    if ref <= 0:
        return None
    low, high = wilson(int(k), int(k + ref))
    return round(per * low / (1 - low), 2), (round(per * high / (1 - high), 2) if high < 1 else float("inf"))


def ratios(counts: dict[str, int], names: list[str]) -> dict[str, dict | None]:
    """Every other class per 1,000 of the model's first class (BCCD: WBC and platelets per 1,000 RBC), each as
    {"value": v, "ci95": [low, high]}; None where the reference count is 0."""
    ref = names[0]
    out: dict[str, dict | None] = {}
    for n in names[1:]:
        ci = ratio_ci(counts[n], counts[ref])
        out[f"{n}_per_1000_{ref}"] = None if ci is None else {"value": round(1000 * counts[n] / counts[ref], 2),
                                                              "ci95": list(ci)}
    return out


def scaled(counts: dict[str, int], area_px: float, mpp: float | None) -> dict[str, object]:
    """Scale, analysed area and cells per mm^2 (null without a scale: then sizes are in pixels)."""
    mm2 = area_mm2(area_px, mpp)
    return {"mpp": mpp, "units": "um" if mpp is not None else "px", "area_px": round(area_px, 1), "area_mm2": mm2,
            "per_mm2": per_mm2(counts, mm2)}


def per_mm2(counts: dict[str, int], mm2: float | None) -> dict[str, float] | None:
    """Cells per mm^2 of each class; None without an area."""
    return {n: round(c / mm2, 1) for n, c in counts.items()} if mm2 else None


def totals(results: list[ImageCount], names: list[str]) -> dict[str, int]:
    return {n: sum(r.counts[n] for r in results) for n in names}


def total_density(results: list[ImageCount], total: dict[str, int]) -> dict[str, object]:
    """The images' analysed area together and the total's cells per mm^2: null unless every image has a scale
    (an area in pixels cannot be added to one in mm^2)."""
    areas = [area_mm2(r.area_px, r.mpp) for r in results]
    if not areas or any(a is None for a in areas):
        return {"total_area_mm2": None, "total_per_mm2": None}
    mm2 = round(sum(a for a in areas if a is not None), 6)
    return {"total_area_mm2": mm2, "total_per_mm2": per_mm2(total, mm2)}


def to_json(results: list[ImageCount], detector: Detector, errors: list[InputError], tile: int | None = None,
            overlap: float | None = None) -> dict:
    """Everything counted; `tile` and `overlap` as asked (per image, `tile` is the edge in its own pixels)."""
    names = detector.names
    total = totals(results, names)
    return {
        "model": str(detector.weights),
        "backend": detector.backend,
        "precision": getattr(detector, "runs_at", None),  # what the runtime computed in (f32, bf16, ...)
        "thresholds": detector.thresholds.by_class,
        "thresholds_source": detector.thresholds.source,
        "edge_rule": results[0].edge if results else DEFAULT_EDGE.value,
        "model_mpp": detector.scale.mpp if detector.scale else None,
        "tile": tile, "overlap": overlap,
        "images": [
            {
                "path": r.path, "width": r.width, "height": r.height, "tiles": r.tiles, "tiles_skipped": r.tiles_skipped, "tile": r.tile,
                "mpp_source": r.mpp_source, "qc": r.qc, "notes": r.notes,
                "counts": r.counts, "ratios": ratios(r.counts, names), **scaled(r.counts, r.area_px, r.mpp),
                "sizes": sizes(r.detections, names, r.mpp), "overlay": r.overlay,
                **({"regions": [{"name": g.name, "counts": g.counts, "ratios": ratios(g.counts, names),
                                 **scaled(g.counts, g.area_px, r.mpp)} for g in r.regions]} if r.regions else {}),
                **({"differential": differential(r.types)} if r.types is not None else {}),
                "detections": [
                    {"class": names[c], "score": round(float(s), 4), "box": [round(float(v), 1) for v in b],
                     **_type_fields(r, i)}
                    for i, (b, s, c) in enumerate(zip(r.detections.xyxy, r.detections.score, r.detections.cls))
                ],
            }
            for r in results
        ],
        "total": total,
        "total_ratios": ratios(total, names),
        **total_density(results, total),
        **({"total_differential": differential(t)} if (t := merged([r.types for r in results if r.types])) else {}),
        "errors": [{"path": e.path, "error": e.problem} for e in errors],
    }


def _type_fields(r: ImageCount, i: int) -> dict:
    label = r.types.label(i) if r.types is not None else None
    return {} if label is None or r.types is None else {"type": label, "type_score": round(float(r.types.score[i]), 4)}


def differential_columns(types_names: list[str]) -> list[str]:
    from .differential import UNCLASSIFIED

    cols = [f"wbc_{t}" for t in [*types_names, UNCLASSIFIED]]
    for t in types_names:
        cols += [f"{t}_per_100_wbc", f"{t}_per_100_wbc_ci95_low", f"{t}_per_100_wbc_ci95_high"]
    return cols


def differential_cells(types: CellTypes | None, types_names: list[str]) -> list:
    from .differential import UNCLASSIFIED, share

    if types is None:
        return [""] * len(differential_columns(types_names))
    diff = differential(types)
    cells: list = [diff["counts"][t] for t in [*types_names, UNCLASSIFIED]]
    for t in types_names:
        v = share(diff, t)
        cells += ["", "", ""] if v is None else [v["value"], *v["ci95"]]
    return cells


def to_csv(results: list[ImageCount], detector: Detector) -> str:
    names = detector.names
    buf = io.StringIO()
    ratio_keys = list(ratios({n: 0 for n in names}, names))
    thr = ";".join(f"{n}={v:g}" for n, v in detector.thresholds.by_class.items())
    w = csv.writer(buf, lineterminator="\n")
    ratio_cols = [c for k in ratio_keys for c in (k, f"{k}_ci95_low", f"{k}_ci95_high")]
    size_cols = [f"{n}_size_{q}" for n in names for q in ("median", "q1", "q3")]
    typed = next((r.types.names for r in results if r.types is not None), None)
    w.writerow(["path", "region", "width", "height", *names, *ratio_cols, "mpp", "mpp_source", "area_mm2",
                *(f"{n}_per_mm2" for n in names), *size_cols, "size_units", "thresholds", "edge_rule", "qc", "notes",
                *(differential_columns(typed) if typed else [])])

    def row(r: ImageCount, region: str, counts: dict[str, int], area_px: float, d: Detections,
            types: CellTypes | None) -> list:
        rt = ratios(counts, names)
        cells: list = []
        for k in ratio_keys:
            v = rt[k]
            cells += ["", "", ""] if v is None else [v["value"], *v["ci95"]]
        mm2 = area_mm2(area_px, r.mpp)
        size = sizes(d, names, r.mpp)
        size_cells: list = []
        for n in names:
            s = size[n]
            size_cells += ["", "", ""] if s is None else [s["median"], *s["iqr"]]
        return [r.path, region, r.width, r.height, *(counts[n] for n in names), *cells,
                "" if r.mpp is None else r.mpp, r.mpp_source or "", "" if mm2 is None else mm2,
                *("" if not mm2 else round(counts[n] / mm2, 1) for n in names), *size_cells,
                "um" if r.mpp is not None else "px", thr, r.edge, "; ".join(r.qc), "; ".join(r.notes),
                *(differential_cells(types, typed) if typed else [])]

    for r in results:
        w.writerow(row(r, "", r.counts, r.area_px, r.detections, r.types))
        for g in r.regions:
            w.writerow(row(r, g.name, g.counts, g.area_px, g.detections, g.types))
    return buf.getvalue()


def table(results: list[ImageCount], names: list[str]) -> str:
    ratio_keys = list(ratios({n: 0 for n in names}, names))
    heads = ["image", *names, *(k.replace("_per_1000_", "/1000 ") + " [95% CI]" for k in ratio_keys)]
    rows, total = [], totals(results, names)
    for label, counts in [*((Path(r.path).name, r.counts) for r in results), ("TOTAL", total)]:
        rt = ratios(counts, names)
        rows.append([label, *(str(counts[n]) for n in names),
                     *("-" if (v := rt[k]) is None else f"{v['value']:.1f} [{v['ci95'][0]:.1f}-{v['ci95'][1]:.1f}]"
                       for k in ratio_keys)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = [fmt(heads), *(fmt(r) for r in rows)]
    for r in results:
        for label, counts, area, d in [("", r.counts, r.area_px, r.detections),
                                       *((f" / {g.name}", g.counts, g.area_px, g.detections) for g in r.regions)]:
            if r.regions or (r.mpp is not None and r.mpp_source != "model"):
                unit = "um" if r.mpp is not None else "px"
                size = sizes(d, names, r.mpp)
                diam = "; ".join(f"{n} {s['median']} [{s['iqr'][0]}-{s['iqr'][1]}]" for n in names
                                 if (s := size[n]) is not None)
                lines.append(f"{Path(r.path).name}{label}: " + scale_line(counts, area, r.mpp, names)
                             + (f"; diameter median [IQR] {unit}: {diam}" if diam else ""))
    if len(results) > 1 and all(r.mpp_source != "model" for r in results):
        pooled = total_density(results, total)
        if isinstance(dens := pooled["total_per_mm2"], dict):  # None unless every image has a scale
            lines.append(f"TOTAL: {pooled['total_area_mm2']:.4f} mm^2; cells per mm^2: "
                         + ", ".join(f"{n} {dens[n]:,.0f}" for n in names))
    return "\n".join(lines)


def differential_table(results: list[ImageCount], score_floor: float = 0.0) -> str:
    """Per image and in total: each type's count and share per 100 classified white cells [95 % CI], erythroblasts
    per 100 white cells, the unclassified; a note when the total rests on fewer than 100 white cells, and a
    warning when the white cells score lower than the classifier's val cells (`score_floor`)."""
    from .differential import ABBREVIATIONS, CLINICAL_MINIMUM, ERYTHROBLAST, UNCLASSIFIED, doubts, share

    typed = [r for r in results if r.types is not None]
    total = merged([r.types for r in typed if r.types is not None])
    if total is None:
        return ""
    names = total.names
    heads = ["white cells", *(ABBREVIATIONS.get(t, t) + (" /100 WBC" if t == ERYTHROBLAST else " %") for t in names),
             UNCLASSIFIED]
    rows = []
    for label, types in [*((Path(r.path).name, r.types) for r in typed), ("TOTAL", total)]:
        assert types is not None
        diff = differential(types)
        cells = [label]
        for t in names:
            v = share(diff, t)
            n = diff["counts"][t]
            cells.append(f"{n}" if v is None else f"{n}: {v['value']:.0f} [{v['ci95'][0]:.0f}-{v['ci95'][1]:.0f}]")
        cells.append(str(diff["counts"][UNCLASSIFIED]))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = ["differential: count: per 100 classified white cells [95% CI]", fmt(heads), *(fmt(r) for r in rows)]
    classified = differential(total)["classified"]
    if classified < CLINICAL_MINIMUM:
        lines.append(f"note: this differential rests on {classified} classified white cells; a manual differential "
                     f"counts at least {CLINICAL_MINIMUM}, and the intervals above show how little fewer can say")
    if len(typed) > 1:  # one image: its own qc lines say it
        lines += [f"qc: all images: {reason}" for reason in doubts(total, score_floor)]
    return "\n".join(lines)


def qc_lines(results: list[ImageCount]) -> list[str]:
    """One warning line per reason, then one line per note, naming the image: what the terminal shows under the
    table."""
    return ([f"qc: {Path(r.path).name}: {reason}" for r in results for reason in r.qc]
            + [f"note: {Path(r.path).name}: {note}" for r in results for note in r.notes])


def scale_line(counts: dict[str, int], area_px: float, mpp: float | None, names: list[str]) -> str:
    mm2 = area_mm2(area_px, mpp)
    if mm2 is None:
        return f"{area_px:,.0f} px^2 (no scale: give --mpp for mm^2 and micrometres)"
    dens = ", ".join(f"{n} {counts[n] / mm2:,.0f}" for n in names)
    return f"{mm2:.4f} mm^2 at {mpp:g} um/px; cells per mm^2: {dens}"


def to_geojson(result: ImageCount, colours: dict[str, tuple[int, int, int]],
               offset: tuple[float, float] = (0.0, 0.0)) -> dict:
    """A QuPath-importable FeatureCollection: one detection object per box, a closed polygon of its corners in the
    input's level-0 pixels, less `offset` (an OpenSlide slide's bounds origin, which QuPath takes as its (0, 0))."""
    ox, oy = offset
    features = []
    for i, ((x1, y1, x2, y2), s, c) in enumerate(zip(result.detections.xyxy.tolist(), result.detections.score.tolist(),
                                                     result.detections.cls.tolist())):
        x1, y1, x2, y2 = (round(v, 2) for v in (x1 - ox, y1 - oy, x2 - ox, y2 - oy))
        name = result.names[c]
        kind = _type_fields(result, i)
        measurements = {"score": round(float(s), 4), **({"type score": kind["type_score"]} if kind else {})}
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]},
            # a typed white cell is QuPath's derived class "WBC: neutrophil" (a subclass of WBC)
            "properties": {"objectType": "detection",
                           "classification": {"name": f"{name}: {kind['type']}" if kind else name,
                                              "color": list(colours[name])},
                           "measurements": measurements},
        })
    return {"type": "FeatureCollection", "features": features}


def geojson_paths(results: list[ImageCount], target: Path) -> dict[str, Path]:
    """One file per input: `target` itself for a single input named *.geojson, else target/<stem>.geojson."""
    from .counting import output_stems

    if len(results) == 1 and target.suffix == ".geojson" and not target.is_dir():
        return {results[0].path: target}
    stems = output_stems([Path(r.path) for r in results])
    return {r.path: target / f"{stems[Path(r.path)]}.geojson" for r in results}


def write_reports(results: list[ImageCount], detector: Detector, errors: list[InputError], json_path: Path | None,
                  csv_path: Path | None, geojson: Path | None = None, tile: int | None = None,
                  overlap: float | None = None) -> None:
    if json_path:
        atomic_write_text(json_path, json.dumps(to_json(results, detector, errors, tile, overlap), indent=1) + "\n")
    if csv_path:
        atomic_write_text(csv_path, to_csv(results, detector))
    if geojson:
        from .overlay import colour

        colours = {n: colour(n, i) for i, n in enumerate(detector.names)}
        paths = geojson_paths(results, geojson)
        for r in results:
            atomic_write_text(paths[r.path], json.dumps(to_geojson(r, colours, r.origin)) + "\n")
