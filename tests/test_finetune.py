"""`bccd-yolo finetune`: a real 1 -> 2 -> 3 stage chain on BCCD images at a tiny size, and every error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN, tree_digest

from bccd_yolo.cli import main
from bccd_yolo.core.errors import InputError
from bccd_yolo.data.convert import convert
from bccd_yolo.train.finetune import FinetuneRequest, finetune
from bccd_yolo.yolo.models import model_parts

COMMON = dict(model="yolov3-tiny", epochs=1, imgsz=64, batch=4, workers=0, overrides=TINY_TRAIN)


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {k: v.clone() for k, v in ckpt["model"].float().state_dict().items()}


def layer(key: str) -> int:
    return int(key.split(".")[1])


def is_class_conv(key: str) -> bool:
    return ".cv3." in key and key.split(".cv3.")[1].split(".")[1] == "2"


def assert_frozen_and_trained(before, after, frozen: set[int], trained: set[int], skip=lambda k: False):
    """Frozen layers: every tensor, BatchNorm buffers included, bit for bit equal.
    Trained layers: every layer changed, and nearly all weight tensors (a BN scale near 1.0 can move
    less than one fp16 step, the precision checkpoints are saved in)."""
    unchanged, weights, changed_layers = [], [], set()
    for k, v in after.items():
        if skip(k) or k not in before or before[k].shape != v.shape:
            continue
        same = torch.equal(before[k], v)
        if layer(k) in frozen:
            assert same, f"frozen tensor {k} changed"
            unchanged.append(k)
        elif layer(k) in trained and k.endswith(".weight"):
            weights.append(same)
            if not same:
                changed_layers.add(layer(k))
    assert any(k.endswith("running_mean") for k in unchanged) and any(k.endswith("running_var") for k in unchanged)
    trained_with_weights = {layer(k) for k in after if layer(k) in trained and k.endswith(".weight")}
    assert changed_layers == trained_with_weights
    assert weights.count(True) <= 0.1 * len(weights), f"{weights.count(True)}/{len(weights)} trained weights unchanged"


@pytest.fixture(scope="module")
def chain(mini_bccd, tmp_path_factory):
    """Stage 1 on a 2-class dataset (another class count, as COCO -> VOC), then stages 2 and 3 on BCCD."""
    root = tmp_path_factory.mktemp("chain")
    two = convert(Path(mini_bccd).parents[1] / "voc", root / "two", classes="RBC,WBC=Platelets")
    project = root / "runs"
    r1 = finetune(FinetuneRequest(stage="1", data=str(Path(two.out) / "data.yaml"), project=str(project), **COMMON))
    r2 = finetune(FinetuneRequest(stage="2", data=str(mini_bccd), project=str(project), **COMMON))
    r3 = finetune(FinetuneRequest(stage="3", data=str(mini_bccd), project=str(project), **{**COMMON, "epochs": 2}))
    return project, (r1, r2, r3)


def test_stage2_trains_only_the_neck_and_the_new_class_layers(chain):
    project, _ = chain
    parts = model_parts("yolov3-tiny")
    s1 = checkpoint_state(project / "stage1" / "weights" / "best.pt")
    s2 = checkpoint_state(project / "stage2" / "weights" / "best.pt")
    assert_frozen_and_trained(s1, s2, set(parts.backbone) | set(parts.head), set(parts.neck), skip=is_class_conv)
    class_convs = [k for k in s2 if is_class_conv(k)]
    assert class_convs and all(s1[k].shape != s2[k].shape for k in class_convs)  # 2 -> 3 classes: freshly made


def test_stage3_keeps_the_backbone_bit_for_bit_over_two_epochs(chain):
    project, _ = chain
    parts = model_parts("yolov3-tiny")
    s2 = checkpoint_state(project / "stage2" / "weights" / "best.pt")
    s3 = checkpoint_state(project / "stage3" / "weights" / "best.pt")
    assert_frozen_and_trained(s2, s3, set(parts.backbone), set(parts.neck) | set(parts.head),
                              skip=lambda k: ".dfl" in k)


def test_timing_json_describes_the_run(chain):
    project, (r1, r2, r3) = chain
    t3 = json.loads((project / "stage3" / "timing.json").read_text())
    # the plan printed before training (freeze list by layer and submodule) is what Ultralytics froze
    assert t3["trainable_params"] == t3["planned_trainable_params"] and t3["frozen_params"] > 0
    assert (t3["stage"], t3["model"], t3["imgsz"], t3["epochs"], t3["train_images"]) == ("3", "yolov3-tiny", 64, 2, 8)
    assert t3["weights"] == str(project / "stage2" / "weights" / "best.pt")
    assert t3["wall_seconds"] >= t3["train_seconds"] > 0 and t3["images_per_second"] > 0
    assert t3["seconds_per_epoch"] == pytest.approx(t3["train_seconds"] / 2, abs=1e-3)  # both rounded to ms
    total = sum(p.numel() for p in torch.load(project / "stage3" / "weights" / "best.pt", weights_only=False)["model"].parameters())
    assert t3["trainable_params"] + t3["frozen_params"] == total
    assert r2["transferred_tensors"] < r3["transferred_tensors"]  # 2 -> 3 classes lost the class convs once
    rows = (project / "timing.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("stage,model,data")


def test_resume_continues_a_killed_run(mini_bccd, tmp_path):
    class Killed(Exception):
        pass

    def kill_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise Killed

    req = FinetuneRequest(stage="scratch", data=str(mini_bccd), project=str(tmp_path), **{**COMMON, "epochs": 2})
    with pytest.raises(Killed):
        finetune(req, callbacks={"on_model_save": kill_after_first_epoch})
    results = tmp_path / "scratch" / "results.csv"
    assert len(results.read_text().splitlines()) == 2  # header + epoch 1
    record = finetune(FinetuneRequest(stage="scratch", project=str(tmp_path), resume=True))
    assert len(results.read_text().splitlines()) == 3 and record["resumed"] and record["epochs"] == 2
    # results.csv's time restarts in the resumed segment: the record counts both segments
    times = [float(line.split(",")[1]) for line in results.read_text().splitlines()[1:]]
    assert record["train_seconds"] == pytest.approx(times[0] + times[1], abs=1e-3)
    # the run is finished now: a second resume says so, writes nothing, and reaches for no dataset
    before = tree_digest(tmp_path)
    with pytest.raises(InputError, match="this run is finished"):
        finetune(FinetuneRequest(stage="scratch", project=str(tmp_path), resume=True))
    assert tree_digest(tmp_path) == before


def test_augments_stay_in_the_training_transforms_through_rebuilds_and_a_resume(mini_bccd, tmp_path):
    from bccd_yolo.yolo.augment import (
        BlurTransform,
        FrameTransform,
        GreyTransform,
        RefillTransform,
        ResampleTransform,
        StainTransform,
    )

    class Killed(Exception):
        pass

    seen: list[int] = []

    def count_resample(trainer):  # after the epoch: Ultralytics rebuilt the transforms when it closed mosaic
        ts = trainer.train_loader.dataset.transforms.transforms
        # frame, then refill, right after the mosaic/affine step (pixel boxes; padding still exactly grey 114);
        # resample last, before Format
        kinds = [type(t) for t in ts]
        seen.append((kinds.count(FrameTransform), kinds.count(RefillTransform), kinds.count(ResampleTransform),
                     kinds[1:3] == [FrameTransform, RefillTransform]
                     and kinds[-5:-1] == [StainTransform, GreyTransform, BlurTransform, ResampleTransform]))

    def kill_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise Killed

    req = FinetuneRequest(stage="scratch", data=str(mini_bccd), project=str(tmp_path), resample=1.0, refill=0.5,
                          frame=1.0, stain=1.0, grey=0.5, blur=0.5, **{**COMMON, "epochs": 2})  # every image framed
    with pytest.raises(Killed):
        finetune(req, callbacks={"on_train_epoch_end": count_resample, "on_model_save": kill_after_first_epoch})
    record = finetune(FinetuneRequest(stage="scratch", project=str(tmp_path), resume=True),
                      callbacks={"on_train_epoch_end": count_resample})
    assert seen == [(1, 1, 1, True)] * 2
    assert (record["resample"], record["refill"], record["frame"]) == (1.0, 0.5, 1.0)
    assert (record["stain"], record["grey"], record["blur"]) == (1.0, 0.5, 0.5)  # kept through the resume


def test_resample_out_of_range_names_the_option_and_leaves_no_run(mini_bccd, tmp_path):
    req = FinetuneRequest(stage="scratch", data=str(mini_bccd), project=str(tmp_path / "runs"), resample=1.5, **COMMON)
    with pytest.raises(InputError, match="resample 1.5: a share"):
        finetune(req)
    assert not (tmp_path / "runs").exists()


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(["finetune", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--stage", "3", "--model", "yolov3-huge"], "unknown model"),
        (["--stage", "3", "--data", "nowhere/data.yaml"], "nowhere/data.yaml"),
        (["--stage", "3", "--data", "{bad_yaml}"], "invalid or missing dataset"),
        (["--stage", "3", "--weights", "{not_ckpt}"], "not an Ultralytics checkpoint"),
        (["--stage", "2"], "stage1/weights/best.pt"),
        (["--stage", "3", "bogus_arg=1"], "bogus_arg"),
        (["--stage", "3", "--profile", "gpu-party"], "unknown; choose"),
        (["--stage", "3", "--scratch"], "exactly one of"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(args, needle, mini_bccd, tmp_path, capsys):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: images/train\nval: nowhere\n")
    not_ckpt = tmp_path / "weights.pt"
    not_ckpt.write_text("this is not a checkpoint")
    args = [a.format(bad_yaml=bad_yaml, not_ckpt=not_ckpt) for a in args]
    if "--data" not in args:
        args += ["--data", str(mini_bccd)]
    code, err = run_cli([*args, "--project", str(tmp_path / "runs"), "--epochs", "1", "--imgsz", "64"], capsys)
    assert code != 0 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "runs").exists()


def test_stage3_offline_without_weights_names_both_ways_out(mini_bccd, tmp_path, capsys, monkeypatch):
    import bccd_yolo.core.fetching as download

    monkeypatch.setattr(download, "ULTRALYTICS_ASSETS_URL", "http://127.0.0.1:9")  # as offline: refused at once
    monkeypatch.setenv("BCCD_YOLO_CACHE", str(tmp_path / "cache"))
    code, err = run_cli(["--stage", "3", "--model", "yolov3-tiny", "--data", str(mini_bccd), "--project", str(tmp_path / "runs")], capsys)
    assert code != 0 and "--weights" in err and "--scratch" in err and "yolov3-tinyu.pt" in err, err
    assert not (tmp_path / "runs").exists()
    assert list((tmp_path / "cache" / "weights").iterdir()) == []  # no partial download


def test_plan_refuses_weights_of_another_architecture(mini_bccd, chain, tmp_path):
    project, _ = chain
    from bccd_yolo.train.finetune import plan_run

    with pytest.raises(InputError, match="holds a yolov3-tiny model, not yolov3"):
        plan_run(FinetuneRequest(stage="3", model="yolov3", data=str(mini_bccd),
                                 weights=str(project / "stage3" / "weights" / "best.pt")).filled())


def test_stage3_without_a_previous_stage_downloads_pretrained_weights(mini_bccd, tiny_weights, tmp_path, monkeypatch,
                                                                     local_server):
    import shutil

    import bccd_yolo.core.fetching as download

    www, url = local_server
    shutil.copy(tiny_weights, www / "yolov3-tinyu.pt")  # stands in for Ultralytics' COCO release asset
    monkeypatch.setattr(download, "ULTRALYTICS_ASSETS_URL", url)
    monkeypatch.setenv("BCCD_YOLO_CACHE", str(tmp_path / "cache"))
    record = finetune(FinetuneRequest(stage="3", data=str(mini_bccd), project=str(tmp_path / "runs"), **COMMON))
    cached = tmp_path / "cache" / "weights" / "yolov3-tinyu.pt"
    assert cached.read_bytes() == tiny_weights.read_bytes()
    assert record["weights"] == str(cached) and record["transferred_tensors"] > 100
