"""Darknet import: the imported model computes what darknet computes, and every bad file is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_TRAIN
from darknet_reference import forward
from PIL import Image

from bccd_yolo.cli import main
from bccd_yolo.core.errors import InputError
from bccd_yolo.model.darknet import ConvTensors, DarknetCfg, _header_size, parse_cfg, read_weights

DARKNET = REPO.parent / "shared" / "pretrained" / "darknet"
TINY = DARKNET / "yolov3-tiny.weights"



def write_weights(path: Path, cfg: DarknetCfg, convs: list[ConvTensors], version: tuple[int, int, int] = (0, 2, 0),
                  seen: int = 0) -> None:
    """Write tensors in darknet's layout (the inverse of `read_weights`; only these tests write darknet files)."""
    major, minor, revision = version
    parts = [np.array(version, "<i4").tobytes(),
             np.array([seen], "<i8" if _header_size(major, minor) == 20 else "<i4").tobytes()]
    for c, t in zip(cfg.convs, convs, strict=True):
        arrays = [t.bias, t.scale, t.mean, t.var, t.kernel] if c.batch_normalize else [t.bias, t.kernel]
        parts += [np.ascontiguousarray(a, "<f4").tobytes() for a in arrays]
    Path(path).write_bytes(b"".join(parts))


def bus(size: int) -> torch.Tensor:
    import ultralytics

    img = Image.open(Path(ultralytics.__file__).parent / "assets" / "bus.jpg").convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255


def head_inputs(model, x: torch.Tensor) -> list[torch.Tensor]:
    """What the Ultralytics model feeds its Detect head."""
    seen: list[torch.Tensor] = []
    hook = model.model[-1].register_forward_pre_hook(lambda _m, inp: seen.extend(inp[0]))
    with torch.no_grad():
        model.eval()(x)
    hook.remove()
    return seen


def by_shape(features: list[torch.Tensor], shape) -> torch.Tensor:
    (match,) = [f for f in features if f.shape == shape]
    return match


def random_weights(cfg_path: Path, out: Path, seed: int = 0) -> list[ConvTensors]:
    """Darknet tensors of a sensible scale (He-like kernels, unit-ish batch norm), written as a .weights file."""
    cfg = parse_cfg(cfg_path)
    rng = np.random.default_rng(seed)
    tensors = []
    for c in cfg.convs:
        kernel = (rng.normal(size=c.kernel_shape) * np.sqrt(2 / np.prod(c.kernel_shape[1:]))).astype("f4")
        bias = rng.normal(0, 0.1, c.filters).astype("f4")
        if c.batch_normalize:
            tensors.append(ConvTensors(bias, kernel, rng.uniform(0.5, 1.5, c.filters).astype("f4"),
                                       rng.normal(0, 0.1, c.filters).astype("f4"), rng.uniform(0.5, 2, c.filters).astype("f4")))
        else:
            tensors.append(ConvTensors(bias, kernel))
    write_weights(out, cfg, tensors)
    return tensors


@pytest.fixture(scope="module")
def tiny_import():
    from bccd_yolo.yolo.darknet import import_darknet

    return import_darknet(TINY)


def test_tiny_import_computes_darknets_features_and_darknet_finds_the_person(tiny_import):
    """The COCO yolov3-tiny, imported, against an independent darknet forward pass on bus.jpg."""
    assert tiny_import.variant == "yolov3-tiny-darknet"
    assert (tiny_import.layers, tiny_import.tensors, tiny_import.skipped) == (11, 55, 2)
    x = bus(416)
    ours = head_inputs(tiny_import.model, x)

    # 1. Same arithmetic as the Ultralytics model (BatchNorm eps 1e-3, zero-padded 2x2/1 max-pool): equal up to
    # float32 rounding. Sums of <= 4,608 products over 13 layers: 1e-5 of the map's range bounds that rounding,
    # while one misplaced or transposed tensor changes whole channels by O(1).
    ref, _ = forward(DARKNET / "yolov3-tiny.cfg", TINY, x, darknet_arithmetic=False)
    assert len(ref) == len(ours) == 2
    for r in ref:
        assert (r - by_shape(ours, r.shape)).abs().max() <= 1e-5 * r.abs().max()

    # 2. Darknet's own arithmetic: (x - mean) / (sqrt(var) + 1e-6), and a max-pool that ignores its border.
    # The pool border reaches the last 3 rows/columns of the 13x13 map and 5 of the 26x26 one (3x3 convs and the
    # 2x upsample widen it); inside, only the epsilon differs, and it rescales a channel by at most the ratio below.
    cfg, weights = parse_cfg(DARKNET / "yolov3-tiny.cfg"), read_weights(TINY, parse_cfg(DARKNET / "yolov3-tiny.cfg"))
    rescale = max(float(np.max(1 - (np.sqrt(t.var) + 1e-6) / np.sqrt(t.var + 1e-3)))
                  for t in weights.convs if t.var is not None)
    assert 0 < rescale < 0.05  # 3.6 % in layer 0 of this file
    ref, yolo = forward(cfg.path, TINY, x, darknet_arithmetic=True)
    for r, border in zip(ref, (3, 5)):
        diff = (r - by_shape(ours, r.shape))[:, :, :-border, :-border].abs()
        assert diff.max() <= rescale * r.abs().max()
    person = max(float((obj * cls[:, 0]).max()) for _, obj, cls in yolo)
    assert person > 0.5  # coco.names[0] is person; bus.jpg shows four
    assert tiny_import.model.names[0] == "person"


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp"])
def test_full_variants_round_trip_against_the_real_cfgs(name, tmp_path):
    """No real weights here: random tensors written in darknet's layout, imported, and run against darknet's forward.
    A forward comparison, not only tensor equality, so SPP's reversed concatenation order is caught."""
    from bccd_yolo.yolo.darknet import import_darknet

    weights = tmp_path / f"{name}.weights"
    tensors = random_weights(DARKNET / f"{name}.cfg", weights)
    result = import_darknet(weights, DARKNET / f"{name}.cfg")
    assert result.variant == f"{name}-darknet"
    first = result.model.model[0]
    assert torch.equal(first.conv.weight, torch.from_numpy(tensors[0].kernel))
    assert torch.equal(first.bn.running_var, torch.from_numpy(tensors[0].var))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref, _ = forward(DARKNET / f"{name}.cfg", weights, x, darknet_arithmetic=False)
    ours = head_inputs(result.model, x)
    assert len(ref) == len(ours) == 3
    for r in ref:
        # 75 layers of float32 with residual sums: 1e-4 of the range (10x the tiny bound for ~6x the depth).
        assert (r - by_shape(ours, r.shape)).abs().max() <= 1e-4 * r.abs().max()


def test_header_with_32_bit_seen_reads_like_64_bit(tmp_path):
    cfg = parse_cfg(DARKNET / "yolov3-tiny.cfg")
    tensors = list(read_weights(TINY, cfg).convs)
    old, new = tmp_path / "old.weights", tmp_path / "new.weights"
    write_weights(old, cfg, tensors, version=(0, 1, 0), seen=1234)
    write_weights(new, cfg, tensors, version=(0, 2, 0), seen=2**40)
    assert old.stat().st_size == TINY.stat().st_size - 4
    a, b = read_weights(old, cfg), read_weights(new, cfg)
    assert (a.seen, b.seen) == (1234, 2**40)
    assert all(np.array_equal(x.kernel, y.kernel) and np.array_equal(x.bias, y.bias) for x, y in zip(a.convs, b.convs))
    assert new.read_bytes()[20:] == TINY.read_bytes()[20:] and old.read_bytes()[16:] == TINY.read_bytes()[20:]


def bad_files(tmp: Path) -> dict[str, tuple[list[str], str]]:
    data = TINY.read_bytes()
    (tmp / "truncated.weights").write_bytes(data[:-400])
    (tmp / "padded.weights").write_bytes(data + b"\0" * 8)
    unsupported = (DARKNET / "yolov3-tiny.cfg").read_text().replace("[upsample]", "[reorg]")
    (tmp / "unsupported.cfg").write_text(unsupported)
    # Another network that darknet reads fine: a 4th convolution widened. Same float count is impossible, so write
    # weights for it, and the importer must say it is not a YOLOv3 variant it knows.
    other = (DARKNET / "yolov3-tiny.cfg").read_text().replace("filters=128\nsize=3", "filters=96\nsize=3", 1)
    (tmp / "other.cfg").write_text(other)
    random_weights(tmp / "other.cfg", tmp / "other.weights")
    (tmp / "swish.cfg").write_text((DARKNET / "yolov3-tiny.cfg").read_text().replace("activation=leaky", "activation=swish", 1))
    return {
        "truncated": (["truncated.weights", "--cfg", str(DARKNET / "yolov3-tiny.cfg")], "truncated"),
        "padded": (["padded.weights", "--cfg", str(DARKNET / "yolov3-tiny.cfg")], "padded"),
        "wrong cfg": ([str(TINY), "--cfg", str(DARKNET / "yolov3.cfg")], "do not match"),
        "unsupported layer": ([str(TINY), "--cfg", "unsupported.cfg"], "[reorg] is not supported"),
        "not a variant": (["other.weights", "--cfg", "other.cfg"], "not a YOLOv3 variant"),
        "activation": ([str(TINY), "--cfg", "swish.cfg"], "activation=swish"),
        "no cfg beside": (["padded.weights"], "pass the darknet cfg with --cfg"),
    }


@pytest.mark.parametrize("case", ["truncated", "padded", "wrong cfg", "unsupported layer", "not a variant", "activation",
                                  "no cfg beside"])
def test_bad_darknet_input_is_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, needle = bad_files(tmp_path)[case]
    code = main(["import-darknet", *args, "--out", "out/model.pt"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_finetune_refuses_a_bad_darknet_file_without_a_run_folder(tmp_path, capsys, mini_bccd):
    (tmp_path / "cut.weights").write_bytes(TINY.read_bytes()[:-4])
    code = main(["finetune", "--stage", "3", "--weights", str(tmp_path / "cut.weights"), "--cfg",
                 str(DARKNET / "yolov3-tiny.cfg"), "--data", str(mini_bccd), "--project", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "truncated" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_imported_checkpoint_loads_in_ultralytics(tmp_path, capsys):
    from bccd_yolo.yolo.darknet import feature_convs

    assert main(["import-darknet", str(TINY), "--out", str(tmp_path / "coco.pt")]) == 0
    from ultralytics import YOLO

    model = YOLO(str(tmp_path / "coco.pt")).model
    assert isinstance(model.model[0].act, torch.nn.LeakyReLU) and model.model[0].act.negative_slope == 0.1
    cfg = parse_cfg(DARKNET / "yolov3-tiny.cfg")
    dk = [t for c, t in zip(cfg.convs, read_weights(TINY, cfg).convs) if not c.output]
    for (_, m), t in zip(feature_convs(model), dk):
        assert torch.equal(m.conv.weight, torch.from_numpy(t.kernel.copy()))
        assert torch.equal(m.bn.running_mean, torch.from_numpy(t.mean.copy()))


def test_stage3_from_darknet_keeps_the_coco_backbone_in_last_pt(mini_bccd, tmp_path):
    """One epoch at 64 px from the shared COCO weights: the frozen backbone is still darknet's, tensor for tensor."""
    import json

    from bccd_yolo.train.finetune import FinetuneRequest, finetune
    from bccd_yolo.yolo.darknet import feature_convs

    record = finetune(FinetuneRequest(stage="3", weights=str(TINY), data=str(mini_bccd), epochs=1, imgsz=64, batch=4,
                                      workers=0, project=str(tmp_path), overrides=TINY_TRAIN))
    assert record["model"] == "yolov3-tiny-darknet"
    assert record["darknet"]["sha256"].startswith("dccea06f") and record["darknet"]["tensors_loaded"] == 55
    assert json.loads((tmp_path / "stage3" / "timing.json").read_text())["darknet"] == record["darknet"]
    ckpt = torch.load(tmp_path / "stage3" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).float()
    cfg = parse_cfg(DARKNET / "yolov3-tiny.cfg")
    dk = [t for c, t in zip(cfg.convs, read_weights(TINY, cfg).convs) if not c.output]
    backbone = [(n, m, t) for (n, m), t in zip(feature_convs(model), dk) if int(n.split(".")[1]) <= 12]
    assert len(backbone) == 6  # layers 0, 2, 4, 6, 8, 10
    for _, m, t in backbone:  # checkpoints are stored in half precision
        assert torch.equal(m.conv.weight, torch.from_numpy(t.kernel.copy()).half().float())
        assert torch.equal(m.bn.running_var, torch.from_numpy(t.var.copy()).half().float())
    neck = dict(feature_convs(model))["model.13"]
    assert not torch.equal(neck.conv.weight, torch.from_numpy(dk[6].kernel.copy()).half().float())  # the neck trained


def test_download_checks_sha256_and_layout(tmp_path, monkeypatch, local_server):
    from bccd_yolo.model.darknet_files import fetch_darknet_weights, resolve_darknet_weights

    www, url = local_server
    (www / "yolov3-tiny.weights").write_bytes(TINY.read_bytes())
    random_weights(DARKNET / "yolov3.cfg", www / "yolov3.weights")
    (www / "yolov3-spp.weights").write_bytes(b"\0" * 1000)
    monkeypatch.setenv("BCCD_YOLO_DARKNET_URL", url)
    monkeypatch.setenv("BCCD_YOLO_CACHE", str(tmp_path / "cache"))
    got = resolve_darknet_weights("yolov3-tiny.weights")
    assert got == tmp_path / "cache" / "darknet" / "yolov3-tiny.weights"
    assert got.read_bytes() == TINY.read_bytes() and got.with_suffix(".cfg").is_file()
    assert fetch_darknet_weights("yolov3", tmp_path / "cache" / "darknet").stat().st_size == 248_007_048
    with pytest.raises(InputError, match="truncated"):
        fetch_darknet_weights("yolov3-spp", tmp_path / "cache" / "darknet")
    (www / "yolov3-tiny.weights").write_bytes(TINY.read_bytes()[:-4] + b"\1\2\3\4")
    with pytest.raises(InputError, match="sha256"):
        fetch_darknet_weights("yolov3-tiny", tmp_path / "other")
    left = sorted(p.name for p in (tmp_path / "cache" / "darknet").iterdir())
    assert left == ["yolov3-spp.cfg", "yolov3-tiny.cfg", "yolov3-tiny.weights", "yolov3.cfg", "yolov3.weights"]
    assert not [p for p in (tmp_path / "other").iterdir() if p.suffix != ".cfg"]


def test_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    from bccd_yolo.model.darknet_files import fetch_darknet_weights

    monkeypatch.setenv("BCCD_YOLO_DARKNET_URL", "http://127.0.0.1:9")  # refused at once, as offline
    with pytest.raises(InputError, match="download failed.*local .weights"):
        fetch_darknet_weights("yolov3", tmp_path)
