"""White-cell detections -> their types: crops of one physical size, an exported classifier, an honest
`unclassified`, and the differential a haematology lab reads (share per 100 classified white cells with 95 %
intervals, erythroblasts per 100 white cells).

Runs the classifier's OpenVINO or ONNX export (made once beside its weights, like the detector's), so counting
needs neither torch nor Ultralytics. The classifier's sidecar (`<weights>.types.json`, written by
`train-differential`) holds its classes, crop geometry and unclassified threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..core.errors import InputError
from ..core.images import ImageSource
from ..data.cell_crops import CROP_PX, cell_crop, crop_side
from ..model.exports import ExportRecord

SHIPPED_TYPES = Path(__file__).resolve().parents[1] / "weights" / "bccd_wbc_types.pt"
UNCLASSIFIED = "unclassified"
NOT_TYPED = -2  # a detection that is not a white cell
UNTYPED = -1  # a white cell whose top score is under the threshold
ERYTHROBLAST = "erythroblast"  # nucleated red cells: reported per 100 white cells, outside the leukocyte shares
CLINICAL_MINIMUM = 100  # white cells a manual differential counts at least
MIN_CELLS_FOR_SHIFT = 3  # white cells whose median type score can say the microscope is unlike the training one
# Erythroblasts per 100 white cells above which a differential is checked by eye: normal adult blood shows none,
# and beyond ~20 only severe marrow stress or neonates do. On photos of a microscope the classifier never saw
# (BCCD: docs/guide/differential.md) it calls neutrophils and lymphocytes erythroblasts, with high scores.
ERYTHROBLAST_PLAUSIBLE = 20.0
MIN_CELLS_FOR_PLAUSIBILITY = 10
ABBREVIATIONS = {"basophil": "BA", "eosinophil": "EO", "erythroblast": "ERB", "ig": "IG", "lymphocyte": "LY",
                 "monocyte": "MO", "neutrophil": "NE", UNCLASSIFIED: "?"}
WBC = "WBC"
# White-cell crops per classifier pass: on a CPU one 128 px crop at a time is as fast and holds the fewest buffers
# (benchmarks/crop_batch.py, 282 crops on 2 cores: OpenVINO batch 1 0.24 s and +33 MB against 16 0.28 s and +67 MB;
# ONNX Runtime 0.20 s and +2 MB against 0.25 s and +58 MB). The torch backend classifies an image's crops in one pass.
CROP_BATCH = {"openvino": 1, "onnx": 1}
# White cells read and classified at a time: memory stays flat in a slide's white cells (a 192 px crop is 110 kB; all
# 282 of a 10,000 px slide at once were 31 MB, and a large slide holds thousands)
CROP_CHUNK = 64


@dataclass(frozen=True)
class CellTypes:
    """Per detection of one image: its type index into `names` (UNTYPED, or NOT_TYPED for other classes) and the
    classifier's top score (0 for detections that are not white cells)."""

    names: list[str]
    index: np.ndarray
    score: np.ndarray

    def subset(self, keep: np.ndarray) -> "CellTypes":
        return CellTypes(self.names, self.index[keep], self.score[keep])

    def label(self, i: int) -> str | None:
        k = int(self.index[i])
        return None if k == NOT_TYPED else (UNCLASSIFIED if k == UNTYPED else self.names[k])

    def counts(self) -> dict[str, int]:
        out = {n: int((self.index == k).sum()) for k, n in enumerate(self.names)}
        out[UNCLASSIFIED] = int((self.index == UNTYPED).sum())
        return out


def types_sidecar(weights: Path) -> Path:
    """The classifier's classes, crop geometry and unclassified threshold, beside its weights."""
    return Path(weights).with_suffix(".types.json")


def read_types_sidecar(weights: Path) -> dict:
    path = types_sidecar(weights)
    try:
        body = json.loads(path.read_text())
        _ = body["classes"], float(body["threshold"]), int(body["imgsz"]), float(body["geometry"]["crop_um"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(weights, f"not a white-cell type classifier: its sidecar {path.name} is missing or unreadable "
                                  "(train-differential writes it)") from None
    return body


class Differential:
    """A white-cell type classifier ready to run on crops, loaded on first use (photos without white cells never
    load it)."""

    def __init__(self, weights: Path, backend: str = "auto", batch: int | None = None):
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise InputError(self.weights, "differential model not found")
        body = read_types_sidecar(self.weights)
        self.names: list[str] = list(body["classes"])
        self.threshold = float(body["threshold"])
        self.imgsz = int(body["imgsz"])
        self.crop_um = float(body["geometry"]["crop_um"])
        self.field_mpp = float(body["geometry"]["mpp"])  # the training fields' scale
        self.score_floor = float(body.get("score_floor", 0.0))  # 5th percentile of val cells' top scores
        self.backend, self.batch = backend, batch  # None: CROP_BATCH for the backend
        self._model: object | None = None

    def _load(self) -> object:
        from .runtime import find_export, resolve_backend

        backend, _ = resolve_backend(self.backend, None)
        if backend == "torch":
            return _TorchClassifier(self.weights)
        found = find_export(self.weights, backend)
        if found is None:
            from ..yolo.export import export  # first use only: later counts find the export

            path = export(self.weights, backend, quiet=True)
            record = ExportRecord.read(path.with_name(path.name + ".json"))
            assert record is not None
            found = (path, record)
        if sorted(found[1].names) != sorted(self.names):
            raise InputError(self.weights, f"its export names {found[1].names}, its sidecar {self.names}")
        return ExportedClassifier(found[0], found[1], self.batch or CROP_BATCH[backend])

    def release_memory(self) -> None:
        """Give back the runtime's buffers between counts (a long-running server)."""
        getattr(self._model, "release_memory", lambda: None)()

    def probabilities(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, classes) probabilities of RGB crops."""
        if not crops:
            return np.zeros((0, len(self.names)), np.float32)
        if self._model is None:
            self._model = self._load()
        x = [_resize(c, self.imgsz) for c in crops]
        return self._model(x)  # type: ignore[operator]

    def types(self, src: ImageSource, d: Detections, wbc: int, mpp: float) -> CellTypes:
        """Types of the white cells among `d` in `src` (at `mpp` um/px), read and classified CROP_CHUNK at a time."""
        index = np.full(len(d), NOT_TYPED, np.int64)
        score = np.zeros(len(d), np.float32)
        rows = np.flatnonzero(d.cls == wbc)
        for start in range(0, len(rows), CROP_CHUNK):
            part = rows[start : start + CROP_CHUNK]
            probs = self.probabilities([read_crop(src, d.xyxy[i], mpp, self.crop_um) for i in part])
            top, best = probs.max(axis=1), probs.argmax(axis=1)
            index[part] = np.where(top >= self.threshold, best, UNTYPED)
            score[part] = top
        return CellTypes(self.names, index, score)


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR)


def read_crop(src: ImageSource, box: np.ndarray, mpp: float, crop_um: float, out_px: int = CROP_PX) -> np.ndarray:
    """The crop of `crop_um` around a box's centre, read from the source (a slide is never read whole)."""
    side = crop_side(crop_um, mpp)
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    x1, y1 = min(src.width, round(cx + side / 2) + 1), min(src.height, round(cy + side / 2) + 1)
    region = src.read(x0, y0, x1 - x0, y1 - y0)
    return cell_crop(region, cx - x0, cy - y0, mpp, crop_um, out_px)


class ExportedClassifier:
    """An exported classifier: RGB crops at its input size in, softmax probabilities out."""

    def __init__(self, export: Path, record: ExportRecord, batch: int = 16):
        from .runtime import ExportedModel

        self._runner = ExportedModel(export, record, batch)
        self.batch = batch

    def release_memory(self) -> None:
        self._runner.release_memory()

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(crops), self.batch):
            x = np.ascontiguousarray(np.stack(crops[i:i + self.batch]).transpose(0, 3, 1, 2), dtype=np.float32) / 255
            out.append(self._runner.raw(x).reshape(len(x), -1))
        return np.concatenate(out)


class _TorchClassifier:
    """The checkpoint itself, for `--backend torch`."""

    def __init__(self, weights: Path):
        from ..yolo.classify import load_classifier

        self.model = load_classifier(weights)

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        from ..yolo.classify import predict_probs

        return predict_probs(self.model, [c[..., ::-1] for c in crops], crops[0].shape[0])


def default_differential(weights: Path | None, backend: str = "auto") -> Differential | None:
    """The classifier `count` and the page run: `weights`, else the shipped one where it is installed."""
    chosen = weights or (SHIPPED_TYPES if SHIPPED_TYPES.is_file() else None)
    return None if chosen is None else Differential(chosen, backend)


def share(diff: dict, name: str) -> dict | None:
    """A type's figure in a `differential`: its share per 100 classified leukocytes, or for erythroblasts their
    number per 100 of them."""
    return diff.get(f"{ERYTHROBLAST}_per_100_wbc") if name == ERYTHROBLAST else diff["per_100"][name]


def differential(types: CellTypes) -> dict:
    """Counts per type, each leukocyte type per 100 classified leukocytes with Wilson's 95 % interval, and
    erythroblasts per 100 classified leukocytes (a ratio, as analysers report nucleated red cells)."""
    from .outputs import ratio_ci, wilson

    counts = types.counts()
    leuko = [n for n in types.names if n != ERYTHROBLAST]
    n = sum(counts[t] for t in leuko)
    shares: dict[str, dict | None] = {}
    for t in leuko:
        if n == 0:
            shares[t] = None
            continue
        low, high = wilson(counts[t], n)
        shares[t] = {"value": round(100 * counts[t] / n, 1), "ci95": [round(100 * low, 1), round(100 * high, 1)]}
    out: dict = {"counts": counts, "classified": n, "per_100": shares}
    if ERYTHROBLAST in types.names:
        ci = ratio_ci(counts[ERYTHROBLAST], n, per=100.0)
        out[f"{ERYTHROBLAST}_per_100_wbc"] = None if ci is None else {
            "value": round(100 * counts[ERYTHROBLAST] / n, 1), "ci95": list(ci)}
    return out


def merged(parts: list[CellTypes]) -> CellTypes | None:
    """Several images' types as one (for totals)."""
    if not parts:
        return None
    return CellTypes(parts[0].names, np.concatenate([p.index for p in parts]), np.concatenate([p.score for p in parts]))


def doubts(types: CellTypes, floor: float) -> list[str]:
    """Why a differential may be wrong: low type scores for the classifier, or an implausible erythroblast share."""
    return [r for r in (shift_reason(types, floor), erythroblast_reason(types)) if r]


def erythroblast_reason(types: CellTypes) -> str | None:
    if ERYTHROBLAST not in types.names:
        return None
    diff = differential(types)
    ratio = diff.get(f"{ERYTHROBLAST}_per_100_wbc")
    cells = diff["classified"] + diff["counts"][ERYTHROBLAST]
    if ratio is None or cells < MIN_CELLS_FOR_PLAUSIBILITY or ratio["value"] <= ERYTHROBLAST_PLAUSIBLE:
        return None
    return (f"differential: {diff['counts'][ERYTHROBLAST]} of {cells} white cells called erythroblasts "
            f"({ratio['value']:.0f} per 100 white cells), which blood rarely shows: check the types on the overlay; "
            "on a microscope the classifier has not learnt it takes neutrophils and lymphocytes for erythroblasts")


def shift_reason(types: CellTypes, floor: float) -> str | None:
    """A qc reason when an image's white cells score lower than the classifier's own val cells do: the mark of a
    microscope, stain or scale it has not learnt, where its types are guesses. Needs 3 cells to say anything."""
    scores = types.score[types.index != NOT_TYPED]
    if len(scores) < MIN_CELLS_FOR_SHIFT or floor <= 0:
        return None
    median = float(np.median(scores))
    if median >= floor:
        return None
    return (f"differential: its {len(scores)} white cells score {median:.2f} (median), under what 95 % of the "
            f"classifier's own val cells score ({floor:.2f}): a stain or microscope it has not learnt; read the "
            "types as guesses")


def overlay_labels(types: CellTypes | None, d: Detections, floor: float = 0.0) -> list[str | None] | None:
    """Per detection, the text drawn beside its box instead of its score: type abbreviation and type score for
    white cells, with a "?" where the score is under `floor` (what 95 % of the classifier's val cells beat: a
    guess, e.g. a cell from a microscope it has not learnt); None keeps the detection score."""
    if types is None:
        return None
    out: list[str | None] = []
    for i in range(len(d)):
        label = types.label(i)
        doubt = "?" if label is not None and label != UNCLASSIFIED and types.score[i] < floor else ""
        out.append(None if label is None else f"{ABBREVIATIONS.get(label, label[:3].upper())}{doubt} {types.score[i]:.2f}")
    return out
