"""Stage plans derived from the model YAMLs (no training)."""

from __future__ import annotations

import pytest

from bccd_yolo.core.errors import InputError
from bccd_yolo.model.stages import STAGES, freeze_names, frozen_indices
from bccd_yolo.yolo.models import model_parts


@pytest.mark.parametrize(
    "model, backbone, neck, head",
    [("yolov3", range(0, 11), range(11, 28), [28]), ("yolov3-spp", range(0, 11), range(11, 28), [28]),
     ("yolov3-tiny", range(0, 13), range(13, 20), [20])],
)
def test_parts_come_from_the_yaml(model, backbone, neck, head):
    parts = model_parts(model)
    assert (parts.backbone, parts.neck, parts.head) == (tuple(backbone), tuple(neck), tuple(head))


def test_each_stage_freezes_what_it_does_not_train():
    parts = model_parts("yolov3-tiny")
    assert frozen_indices(parts, STAGES["1"]) == tuple(range(13, 21))
    assert frozen_indices(parts, STAGES["2"]) == (*range(0, 13), 20)
    assert frozen_indices(parts, STAGES["3"]) == tuple(range(0, 13))
    assert frozen_indices(parts, STAGES["scratch"]) == ()


def test_unknown_model_is_refused():
    with pytest.raises(InputError, match="unknown model"):
        model_parts("yolov9000")


def test_fresh_tensors_are_carved_out_of_a_frozen_layer():
    modules = {"5": ["5", "5.a", "5.a.0", "5.a.1", "5.b", "5.b.0", "5.b.0.conv", "5.b.1"], "4": ["4", "4.conv"]}
    fresh = {"model.5.b.1.weight", "model.5.b.1.bias"}
    assert freeze_names(modules, (4, 5), fresh) == [4, "5.a", "5.b.0"]
    assert freeze_names(modules, (4, 5), set()) == [4, 5]


def test_cpu_demo_profile_fills_only_what_was_not_given():
    from bccd_yolo.train.finetune import FinetuneRequest

    r = FinetuneRequest(stage="3", profile="cpu-demo", epochs=3).filled()
    assert (r.model, r.imgsz, r.epochs, r.name) == ("yolov3-tiny", 320, 3, "stage3")
    plain = FinetuneRequest(stage="scratch").filled()
    assert (plain.model, plain.imgsz, plain.name) == ("yolov3", 416, "scratch")
