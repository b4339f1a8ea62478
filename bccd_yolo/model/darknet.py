"""Darknet `.cfg` and `.weights` files as plain numpy: parse, check, read and write (no torch).

The weights file is a header (major, minor, revision as int32, then `seen` as int64 from
version 0.2 on, int32 before) followed by every convolution's tensors in cfg order: with batch
norm `beta, gamma, running mean, running variance, kernel`, without it `bias, kernel`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError

SUPPORTED = ("net", "convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")
HEADER_INT32 = 3


@dataclass(frozen=True)
class Section:
    """One `[kind]` block of a cfg; `index` is darknet's layer number (the [net] block is not a layer)."""

    kind: str
    options: dict[str, str]
    index: int
    line: int

    def get_int(self, key: str, default: int) -> int:
        return int(self.options.get(key, default))

    def ints(self, key: str) -> list[int]:
        return [int(v) for v in self.options.get(key, "").split(",") if v.strip()]

    @property
    def sources(self) -> list[int]:
        """Absolute indices of a [route] layer's inputs."""
        return [v if v >= 0 else self.index + v for v in self.ints("layers")]


@dataclass(frozen=True)
class ConvLayer:
    """A convolution as darknet stores it."""

    index: int
    filters: int
    in_channels: int
    size: int
    stride: int
    groups: int
    batch_normalize: bool
    activation: str
    output: bool  # feeds a [yolo] layer: a detection output, not a feature

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.filters, self.in_channels // self.groups, self.size, self.size)

    @property
    def n_floats(self) -> int:
        return (4 if self.batch_normalize else 1) * self.filters + int(np.prod(self.kernel_shape))


@dataclass(frozen=True)
class DarknetCfg:
    path: Path
    layers: tuple[Section, ...]
    convs: tuple[ConvLayer, ...]
    channels: tuple[int, ...]  # output channels of each layer
    classes: int

    @property
    def n_floats(self) -> int:
        return sum(c.n_floats for c in self.convs)


@dataclass(frozen=True)
class ConvTensors:
    """One convolution's arrays; `bias` is batch norm's beta when `scale` (gamma) is present."""

    bias: np.ndarray
    kernel: np.ndarray
    scale: np.ndarray | None = None
    mean: np.ndarray | None = None
    var: np.ndarray | None = None


@dataclass(frozen=True)
class DarknetWeights:
    path: Path
    version: tuple[int, int, int]
    seen: int
    convs: tuple[ConvTensors, ...]
    sha256: str


def parse_cfg(path: Path) -> DarknetCfg:
    """Read a cfg and work out every convolution's input channels; unsupported layers are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "darknet cfg not found")
    sections: list[tuple[str, dict[str, str], int]] = []
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.split("#")[0].split(";")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InputError(path, f"line {n}: malformed section header {line!r}")
            sections.append((line[1:-1].strip().lower(), {}, n))
        elif "=" in line and sections:
            key, _, value = line.partition("=")
            sections[-1][1][key.strip()] = value.strip()
        else:
            raise InputError(path, f"line {n}: expected [section] or key=value, found {line!r}")
    if not sections or sections[0][0] not in ("net", "network"):
        raise InputError(path, "not a darknet cfg (it does not start with [net])")
    for kind, _, n in sections[1:]:
        if kind not in SUPPORTED:
            raise InputError(path, f"line {n}: layer type [{kind}] is not supported (YOLOv3 cfgs use {', '.join(SUPPORTED[1:])})")
    net = sections[0][1]
    layers = tuple(Section(k, o, i, n) for i, (k, o, n) in enumerate(sections[1:]))
    channels: list[int] = []
    convs: list[ConvLayer] = []
    try:
        for layer in layers:
            c_in = channels[-1] if channels else int(net.get("channels", 3))
            if layer.kind == "convolutional":
                nxt = layers[layer.index + 1].kind if layer.index + 1 < len(layers) else None
                convs.append(ConvLayer(
                    layer.index, layer.get_int("filters", 1), c_in, layer.get_int("size", 1), layer.get_int("stride", 1),
                    layer.get_int("groups", 1), bool(layer.get_int("batch_normalize", 0)),
                    layer.options.get("activation", "logistic"), nxt == "yolo",
                ))
                channels.append(convs[-1].filters)
            elif layer.kind == "route":
                channels.append(sum(channels[i] for i in layer.sources))
            else:
                channels.append(c_in)
    except (IndexError, ValueError) as e:
        raise InputError(path, f"layer {len(channels)} ({layers[len(channels)].kind}): invalid options ({e})") from None
    yolo = [s for s in layers if s.kind == "yolo"]
    if not yolo:
        raise InputError(path, "no [yolo] layer: not a YOLOv3 cfg")
    return DarknetCfg(path, layers, tuple(convs), tuple(channels), yolo[0].get_int("classes", 80))


def _header_size(major: int, minor: int) -> int:
    """Bytes before the first tensor: `seen` became 64-bit in darknet 0.2."""
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    return 4 * HEADER_INT32 + (8 if wide else 4)


def read_weights(path: Path, cfg: DarknetCfg) -> DarknetWeights:
    """Every convolution's tensors; the file must hold exactly what the cfg needs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "darknet weights not found")
    data = path.read_bytes()
    if len(data) < 16:
        raise InputError(path, f"not a darknet weights file ({len(data)} bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(data, "<i4", 3))
    start = _header_size(major, minor)
    seen = int(np.frombuffer(data, "<i8" if start == 20 else "<i4", 1, 12)[0])
    body = len(data) - start
    need = cfg.n_floats * 4
    if body != need:
        what = "truncated" if body < need else "padded"
        raise InputError(path, f"{what}: {cfg.path.name} needs {cfg.n_floats:,} floats after the header, "
                               f"the file holds {body / 4:,.0f} ({body - need:+,} bytes): weights and cfg do not match")
    floats = np.frombuffer(data, "<f4", cfg.n_floats, start)
    convs, at = [], 0

    def take(n: int) -> np.ndarray:
        nonlocal at
        at += n
        return floats[at - n : at]

    for c in cfg.convs:
        if c.batch_normalize:
            bias, scale, mean, var = (take(c.filters) for _ in range(4))
            convs.append(ConvTensors(bias, take(int(np.prod(c.kernel_shape))).reshape(c.kernel_shape), scale, mean, var))
        else:
            bias = take(c.filters)
            convs.append(ConvTensors(bias, take(int(np.prod(c.kernel_shape))).reshape(c.kernel_shape)))
    return DarknetWeights(path, (major, minor, revision), seen, tuple(convs), hashlib.sha256(data).hexdigest())


def find_cfg(weights: Path, cfg: Path | None = None) -> Path:
    """The cfg given, else the one beside the weights with the same stem."""
    if cfg is not None:
        return Path(cfg)
    beside = Path(weights).with_suffix(".cfg")
    if not beside.is_file():
        raise InputError(weights, f"no {beside.name} beside it: pass the darknet cfg with {{cfg}}")
    return beside
