"""How well a white-cell type classifier names cells: confusion matrix, per-class precision / recall / F1,
macro-F1 and accuracy, and the score below which a cell is better left `unclassified`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data.cell_crops import centre_crop, read_bgr

UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class TypeScores:
    """A classifier's figures on one labelled set; cells below `threshold` are left out of the confusion matrix
    and counted as unclassified."""

    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    precision: list[float]
    recall: list[float]
    f1: list[float]
    macro_f1: float
    accuracy: float  # of the classified cells
    unclassified: float  # share of all cells
    threshold: float
    cells: int

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        width = max(len(c) for c in self.classes)
        lines = [f"{'class':<{width}}  precision  recall     F1  cells"]
        for i, c in enumerate(self.classes):
            lines.append(f"{c:<{width}}  {self.precision[i]:9.3f}  {self.recall[i]:6.3f}  {self.f1[i]:5.3f}  "
                         f"{sum(self.confusion[i]):5d}")
        lines.append(f"accuracy {self.accuracy:.3f}, macro-F1 {self.macro_f1:.3f}, unclassified {self.unclassified:.1%} "
                     f"(top score < {self.threshold:.2f}) of {self.cells} cells")
        return "\n".join(lines)


def type_scores(probs: np.ndarray, truth: np.ndarray, classes: list[str], threshold: float = 0.0) -> TypeScores:
    """Scores of class probabilities `probs` (n, nc) against true class indices `truth` (n,)."""
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth, dtype=np.int64)
    nc = len(classes)
    top, pred = probs.max(axis=1), probs.argmax(axis=1)
    kept = top >= threshold
    confusion = np.zeros((nc, nc), dtype=np.int64)
    np.add.at(confusion, (truth[kept], pred[kept]), 1)
    tp = np.diag(confusion).astype(np.float64)
    called, real = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, called, out=np.zeros(nc), where=called > 0)
    recall = np.divide(tp, real, out=np.zeros(nc), where=real > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(nc), where=(precision + recall) > 0)
    n = len(truth)
    return TypeScores(list(classes), confusion.tolist(), _r(precision), _r(recall), _r(f1),
                      round(float(f1.mean()), 4), round(float(tp.sum() / max(1, kept.sum())), 4),
                      round(float(1 - kept.mean()) if n else 0.0, 4), round(float(threshold), 4), n)


def _r(a: np.ndarray) -> list[float]:
    return [round(float(x), 4) for x in a]


def unclassified_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The top-score threshold below which a call is more often wrong than right: a wrong type counts as much
    against the differential as a right one counts for it, so a cell is kept while its calls at that score are
    right more than half the time. Chosen as the threshold maximising (right kept - wrong kept) on labelled cells."""
    probs, truth = np.asarray(probs), np.asarray(truth)
    top = probs.max(axis=1)
    right = probs.argmax(axis=1) == truth
    order = np.argsort(top)
    # keeping every cell with score >= top[order[k]]: gain = right - wrong among order[k:]
    gain = np.cumsum(np.where(right[order], 1, -1)[::-1])[::-1]
    best = int(np.argmax(gain))
    return float(top[order[best]]) if best > 0 else 0.0


def evaluate_types(weights: Path, fields: Path, split: str = "val", backend: str = "auto") -> TypeScores:
    """The classifier as `count` runs it (its export, its threshold) on the typed fields of `split`, each cropped
    at its centre (every field is centred on its typed cell) at the fields' scale from the classifier's sidecar."""
    from ..core.errors import InputError
    from ..count.differential import Differential
    from ..data.cell_crops import typed_fields

    model = Differential(weights, backend)
    per_class = typed_fields(fields)[split]
    unknown = sorted(set(per_class) - set(model.names))
    if unknown:
        raise InputError(fields, f"holds types the classifier does not know: {', '.join(unknown)}")
    crops = [np.ascontiguousarray(centre_crop(read_bgr(f), model.field_mpp, model.crop_um)[..., ::-1])
             for files in per_class.values() for f in files]
    truth = [model.names.index(cls) for cls, files in per_class.items() for _ in files]
    return type_scores(model.probabilities(crops), np.array(truth), model.names, model.threshold)


def plot_confusion(scores: TypeScores, path: Path) -> None:
    """The confusion matrix as row shares (recall on the diagonal), with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array(scores.confusion, dtype=float)
    share = m / np.maximum(1, m.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(scores.classes)), scores.classes, rotation=45, ha="right")
    ax.set_yticks(range(len(scores.classes)), scores.classes)
    ax.set_xlabel("called")
    ax.set_ylabel("expert's type")
    for i in range(len(m)):
        for j in range(len(m)):
            if m[i, j]:
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_title(f"accuracy {scores.accuracy:.3f}, macro-F1 {scores.macro_f1:.3f}, unclassified {scores.unclassified:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
