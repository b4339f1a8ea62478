"""Ultralytics validation: per-class AP on a split, as plain rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .env import use_all_cpu_threads


def per_class_ap(metrics: Any, names: list[str]) -> pd.DataFrame:
    """Ultralytics DetMetrics as rows per class plus `all`."""
    rows = []
    index = {int(c): i for i, c in enumerate(metrics.ap_class_index)}
    for k, n in enumerate(names):
        i = index.get(k)
        p, r, ap50, ap = (metrics.class_result(i) if i is not None else (0.0, 0.0, 0.0, 0.0))
        rows.append({"class": n, "ap50": ap50, "ap50_95": ap, "precision": p, "recall": r,
                     "instances": int(metrics.nt_per_class[k])})
    mp, mr, map50, mapall = metrics.mean_results()
    rows.append({"class": "all", "ap50": map50, "ap50_95": mapall, "precision": mp, "recall": mr,
                 "instances": int(np.sum(metrics.nt_per_class))})
    return pd.DataFrame(rows).round(4)


def validate(weights: Path, data: str, split: str, names: list[str], imgsz: int, conf: float, iou: float,
             project: Path, name: str, batch: int = 16, device: str | None = None, plots: bool = True) -> pd.DataFrame:
    """AP per class of `weights` on `split`; Ultralytics writes its plots into project/name."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    model.add_callback("on_val_start", use_all_cpu_threads)
    metrics = model.val(data=data, split=split, imgsz=imgsz, batch=batch, conf=conf, iou=iou, plots=plots,
                        save_json=False, project=str(Path(project).resolve()), name=name, exist_ok=True, verbose=False,
                        workers=0, **({"device": device} if device else {}))
    return per_class_ap(metrics, names)
