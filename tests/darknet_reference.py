"""An independent minimal darknet forward pass (cfg + weights), for checking the importer.

Written from darknet's C sources (parser.c, convolutional_layer.c, maxpool_layer.c, blas.c),
sharing no code with bccd_yolo: its own cfg parser and weights reader. `bn_eps` and `pool_pad`
switch between darknet's arithmetic (x - mean) / (sqrt(var) + 1e-6) with maxpool borders
ignored, and the arithmetic an Ultralytics model uses (BatchNorm eps 1e-3, zero padding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def read_cfg(path: Path) -> list[dict]:
    blocks: list[dict] = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("["):
            blocks.append({"type": line[1:-1]})
        elif "=" in line:
            k, v = line.split("=", 1)
            blocks[-1][k.strip()] = v.strip()
    return blocks


def forward(cfg: Path, weights: Path, x: torch.Tensor, darknet_arithmetic: bool = True):
    """Returns (inputs of each YOLO output conv, decoded YOLO outputs [(boxes xywh in input px, obj, cls)])."""
    blocks = read_cfg(cfg)
    raw = Path(weights).read_bytes()
    major, minor, _ = np.frombuffer(raw, "<i4", 3)
    offset = 20 if (major * 10 + minor) >= 2 else 16
    floats = np.frombuffer(raw, "<f4", offset=offset)
    pos = 0

    def take(n: int) -> torch.Tensor:
        nonlocal pos
        pos += n
        return torch.from_numpy(floats[pos - n : pos].copy())

    net_h = x.shape[2]
    outs: list[torch.Tensor] = []
    head_inputs: list[torch.Tensor] = []
    yolo: list = []
    for i, b in enumerate(blocks[1:]):
        t = b["type"]
        if t == "convolutional":
            n, size, stride = int(b["filters"]), int(b["size"]), int(b["stride"])
            pad = size // 2 if int(b.get("pad", 0)) else 0
            c = x.shape[1]
            if int(b.get("batch_normalize", 0)):
                beta, gamma, mean, var = take(n), take(n), take(n), take(n)
            else:
                beta = take(n)
            w = take(n * c * size * size).reshape(n, c, size, size)
            if blocks[i + 2]["type"] == "yolo" if i + 2 < len(blocks) else False:
                head_inputs.append(x)
            y = F.conv2d(x, w, None, stride, pad)
            if int(b.get("batch_normalize", 0)):
                if darknet_arithmetic:
                    y = (y - mean[:, None, None]) / (var.sqrt()[:, None, None] + 1e-6)
                else:
                    y = (y - mean[:, None, None]) / (var[:, None, None] + 1e-3).sqrt()
                y = y * gamma[:, None, None]
            y = y + beta[:, None, None]
            x = F.leaky_relu(y, 0.1) if b["activation"] == "leaky" else y
        elif t == "maxpool":
            size, stride = int(b["size"]), int(b["stride"])
            padding = int(b.get("padding", size - 1))
            left = padding // 2
            h_out = (x.shape[2] + padding - size) // stride + 1
            fill = float("-inf") if darknet_arithmetic or size != 2 else 0.0
            xp = F.pad(x, (left, padding - left, left, padding - left), value=fill)
            x = F.max_pool2d(xp, size, stride)[:, :, :h_out, :h_out]
        elif t == "upsample":
            x = F.interpolate(x, scale_factor=int(b["stride"]), mode="nearest")
        elif t == "shortcut":
            x = x + outs[i + int(b["from"])]
        elif t == "route":
            idx = [int(v) for v in b["layers"].split(",")]
            x = torch.cat([outs[j if j >= 0 else i + j] for j in idx], 1)
        elif t == "yolo":
            anchors = np.array([float(v) for v in b["anchors"].split(",")]).reshape(-1, 2)
            mask = [int(v) for v in b["mask"].split(",")]
            classes = int(b["classes"])
            _, _, h, w = x.shape
            p = x.reshape(len(mask), 5 + classes, h, w)
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            bx = (p[:, 0].sigmoid() + gx) / w * net_h
            by = (p[:, 1].sigmoid() + gy) / h * net_h
            aw = torch.tensor(anchors[mask, 0], dtype=torch.float32)[:, None, None]
            ah = torch.tensor(anchors[mask, 1], dtype=torch.float32)[:, None, None]
            bw, bh = p[:, 2].exp() * aw, p[:, 3].exp() * ah
            yolo.append((torch.stack([bx, by, bw, bh], -1).reshape(-1, 4), p[:, 4].sigmoid().reshape(-1),
                         p[:, 5:].sigmoid().permute(0, 2, 3, 1).reshape(-1, classes)))
        else:
            raise ValueError(f"layer type {t} not in this reference")
        outs.append(x)
    assert pos == len(floats), f"{len(floats) - pos} floats left unread"
    return head_inputs, yolo
