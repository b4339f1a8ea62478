"""Detections drawn as in the study's figure: RBC red, WBC green, platelets blue, score above each box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core.detections import Detections
from ..core.fsutil import atomic_save
from ..core.images import ImageSource

CLASS_COLOURS = {"RBC": (255, 0, 0), "WBC": (0, 200, 0), "Platelets": (0, 64, 255)}
OTHER_COLOURS = [(255, 160, 0), (200, 0, 200), (0, 200, 200), (120, 80, 40)]
SLIDE_TILE = 512  # TIFF tile edge of slide overlays
PREVIEW_SIDE = 2048
# Slide overlays are written lossless and fast: deflate at level 1 after horizontal differencing (TIFF 6.0's predictor
# 2, which libtiff reads), the preview PNG at zlib level 1 (benchmarks/overlay_write.py)
TIFF_COMPRESSION: dict = {"compression": "zlib", "predictor": True, "compressionargs": {"level": 1}}
PREVIEW_PNG_LEVEL = 1


def colour(name: str, index: int) -> tuple[int, int, int]:
    return CLASS_COLOURS.get(name, OTHER_COLOURS[index % len(OTHER_COLOURS)])


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_detections(im: Image.Image, d: Detections, names: list[str], offset=(0, 0), line: int = 2,
                    labels: list[str | None] | None = None) -> None:
    """Draw boxes and scores onto `im`, whose top-left pixel is `offset` in image coordinates; a detection's
    entry in `labels` (a white cell's type), where not None, is drawn instead of its score."""
    draw = ImageDraw.Draw(im)
    size = max(10, 6 * line)
    font = _font(size)
    ox, oy = offset
    for i, ((x1, y1, x2, y2), s, c) in enumerate(zip(d.xyxy, d.score, d.cls)):
        rgb = colour(names[c], int(c))
        box = [x1 - ox, y1 - oy, x2 - ox, y2 - oy]
        draw.rectangle(box, outline=rgb, width=line)
        text = (labels[i] if labels is not None else None) or f"{s:.2f}"
        if box[1] - size - 1 >= 0:  # score above the box; inside it where the box touches the top edge
            draw.text((box[0], box[1] - 1), text, fill=rgb, font=font, anchor="lb")
        else:
            draw.text((box[0] + line + 1, box[1] + line + 1), text, fill=rgb, font=font, anchor="lt")


def draw_legend(im: Image.Image, counts: dict[str, int], names: list[str], scale: int = 1) -> None:
    draw = ImageDraw.Draw(im)
    font = _font(14 * scale)
    rows = [f"{n}: {counts.get(n, 0)}" for n in names]
    width = max(draw.textlength(r, font=font) for r in rows) + 30 * scale
    height = (18 * len(rows) + 8) * scale
    draw.rectangle([4, 4, 4 + width, 4 + height], fill=(255, 255, 255), outline=(0, 0, 0))
    for i, (n, r) in enumerate(zip(names, rows)):
        y = 8 * scale + 18 * scale * i
        draw.rectangle([10, y + 3 * scale, 10 + 10 * scale, y + 13 * scale], fill=colour(n, i))
        draw.text((16 + 12 * scale, y), r, fill=(0, 0, 0), font=font)


def line_width(width: int, height: int) -> int:
    return max(1, round(min(width, height) / 320))


def write_photo_overlay(src: ImageSource, d: Detections, names: list[str], counts: dict[str, int], path: Path,
                        labels: list[str | None] | None = None) -> Path:
    """Same pixel size as the input, with a legend of the counts."""
    im = Image.fromarray(src.read(0, 0, src.width, src.height))
    draw_detections(im, d, names, line=line_width(src.width, src.height), labels=labels)
    draw_legend(im, counts, names)
    atomic_save(path, lambda p: im.save(p, quality=92) if path.suffix == ".jpg" else im.save(p))
    return path


def write_slide_overlay(src: ImageSource, d: Detections, names: list[str], counts: dict[str, int],
                        path: Path | None, preview: Path, labels: list[str | None] | None = None,
                        progress: bool = False) -> tuple[Path, ...]:
    """A full-size tiled TIFF written tile by tile (bounded memory), unless `path` is None, and a downscaled PNG
    preview drawn the same way; `progress` shows a bar of its tiles (a large slide's overlay takes minutes)."""
    import tifffile
    from tqdm import tqdm

    t = SLIDE_TILE
    rows, cols = -(-src.height // t), -(-src.width // t)
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, (x1, y1, x2, y2) in enumerate(d.xyxy):
        pad = 40  # the score label sits above the box
        for r in range(max(0, int(y1 - pad) // t), min(rows - 1, int(y2) // t) + 1):
            for c in range(max(0, int(x1) // t), min(cols - 1, int(x2 + pad) // t) + 1):
                buckets.setdefault((r, c), []).append(i)
    scale = min(1.0, PREVIEW_SIDE / max(src.width, src.height))
    thumb = Image.new("RGB", (max(1, round(src.width * scale)), max(1, round(src.height * scale))))
    lw = line_width(640, 480)

    def tiles():
        bar = tqdm(total=rows * cols, desc=f"{Path(src.path).name} overlay", unit="tile", disable=not progress)
        for r in range(rows):
            for c in range(cols):
                bar.update()
                x, y = c * t, r * t
                w, h = min(t, src.width - x), min(t, src.height - y)
                im = Image.new("RGB", (t, t))
                im.paste(Image.fromarray(src.read(x, y, w, h)))
                idx = np.array(buckets.get((r, c), []), np.int64)
                draw_detections(im, d.subset(idx), names, offset=(x, y), line=lw,
                                labels=[labels[j] for j in idx] if labels is not None else None)
                small = im.crop((0, 0, w, h)).resize((max(1, round(w * scale)), max(1, round(h * scale))))
                thumb.paste(small, (round(x * scale), round(y * scale)))
                yield np.asarray(im)
        bar.close()

    if path is None:
        for _ in tiles():
            pass
    else:
        atomic_save(path, lambda p: tifffile.imwrite(p, tiles(), shape=(src.height, src.width, 3), dtype=np.uint8,
                                                       tile=(t, t), photometric="rgb", bigtiff=True, **TIFF_COMPRESSION))
    draw_legend(thumb, counts, names)
    atomic_save(preview, lambda p: thumb.save(p, compress_level=PREVIEW_PNG_LEVEL))
    return (preview,) if path is None else (path, preview)
