"""The white-cell type classifier through Ultralytics: a detector's backbone with a classification head.

The classifier is the detector's own backbone (layers 0-12 of yolov3-tiny, darknet's activation) under
Ultralytics' `Classify` head, so the same tensors can start it: random, darknet's COCO weights, or the shipped
blood-cell detector. Ultralytics' `pretrained=` loads whatever matches by name and shape (the backbone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..core.errors import InputError
from .augment import BlurTransform, GreyTransform, StainTransform
from .models import load_model_yaml

BASE = "yolov3-tiny-darknet"


def classifier_cfg(nc: int, base: str = BASE) -> dict:
    """The model YAML dict: `base`'s backbone, then Classify(nc)."""
    cfg = load_model_yaml(base)
    return {"nc": nc, "activation": cfg.get("activation"), "backbone": cfg["backbone"],
            "head": [[-1, 1, "Classify", [nc]]]}


def classifier_yaml(nc: int, base: str = BASE) -> str:
    """The classifier's YAML, written to the cache (Ultralytics builds models from a file)."""
    import yaml

    from ..core.fetching import cache_dir
    from ..core.fsutil import atomic_write_text

    path = cache_dir() / "models" / f"{base}-cls{nc}.yaml"
    text = f"# {base} backbone with a {nc}-class Classify head, by bccd-yolo\n" + yaml.safe_dump(
        {k: v for k, v in classifier_cfg(nc, base).items() if v is not None}, sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    return str(path)


def backbone_layers(base: str = BASE) -> int:
    return len(load_model_yaml(base)["backbone"])


def load_classifier(path: str | Path) -> Any:
    """The classification model inside a checkpoint, or one line saying what the file is instead."""
    from .models import load_checkpoint_model

    try:
        model = load_checkpoint_model(path)
    except InputError as e:
        if "not an Ultralytics detection checkpoint" not in e.template:
            raise
        raise InputError(path, "not an Ultralytics classifier checkpoint") from None
    if getattr(model, "task", None) != "classify" and type(model).__name__ != "ClassificationModel":
        raise InputError(path, "a detection checkpoint, not a white-cell type classifier")
    return model


def _pil_wrapped(transforms: list[Any]) -> Callable[[Any], Any]:
    """The detector's augmentations (which take Ultralytics' labels dict of a BGR image) on a PIL RGB image."""
    from PIL import Image

    def apply(im: Any) -> Any:
        labels = {"img": cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)}
        for t in transforms:
            labels = t(labels)
        return Image.fromarray(cv2.cvtColor(labels["img"], cv2.COLOR_BGR2RGB))

    return apply


def classify_augment_callback(stain_p: float = 0.0, grey_p: float = 0.0, blur_p: float = 0.0) -> Callable[[Any], None]:
    """An `on_train_start` callback putting the stain, grey and blur transforms of the detector's training in
    front of Ultralytics' classification transforms (crop, flip, colour jitter, tensor)."""
    chosen = [t for t in (StainTransform(stain_p) if stain_p else None, GreyTransform(grey_p) if grey_p else None,
                          BlurTransform(blur_p) if blur_p else None) if t]

    def install(trainer: Any) -> None:
        import torchvision.transforms as T  # type: ignore[import-untyped]

        if chosen:
            dataset = trainer.train_loader.dataset
            dataset.torch_transforms = T.Compose([_pil_wrapped(chosen), dataset.torch_transforms])

    return install


def predict_probs(model: Any, crops: list[np.ndarray], imgsz: int) -> np.ndarray:
    """Class probabilities of BGR crops (n, nc) with a torch model: the reference the exports are checked against."""
    import torch

    x = np.stack([cv2.resize(c, (imgsz, imgsz), interpolation=cv2.INTER_AREA)[..., ::-1] for c in crops])
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float() / 255
    model = model.float().eval()
    with torch.inference_mode():
        out = model(t)
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.numpy()
