"""Sliced inference: tile geometry, the overlap merge, and tiled vs whole-image agreement (no torch)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import BlobDetector, disc_canvas

from bccd_yolo.core.detections import Detections
from bccd_yolo.core.images import PhotoSource, TiledTiffSource, open_image
from bccd_yolo.core.matching import ios_of, overlap_areas
from bccd_yolo.count.counting import detect_image
from bccd_yolo.count.tiling import merge_tiles, tile_grid


def ios_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box, for every pair of rows of a (n, 4) and b (m, 4)."""
    return ios_of(*overlap_areas(a, b))


def test_tiles_cover_the_image_with_the_requested_overlap():
    tiles = tile_grid(1000, 700, 400, 0.25)
    assert [t.x for t in tiles if t.row == 0] == [0, 300, 600] and [t.y for t in tiles if t.col == 0] == [0, 300]
    covered = np.zeros((700, 1000), bool)
    for t in tiles:
        assert t.w == t.h == 400
        covered[t.y : t.y + t.h, t.x : t.x + t.w] = True
    assert covered.all()
    assert tile_grid(300, 200, 400, 0.25)[0].w == 300  # smaller than a tile: one tile, the image itself


def test_intersection_over_smaller_box():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 5, 10], [20, 20, 30, 30]], np.float32)
    assert ios_matrix(a, b).tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiled_counts_equal_whole_image_counts(seed):
    canvas = disc_canvas(1900, 1300, 160, seed)
    src = PhotoSource(Path("canvas.png"), canvas)
    detector = BlobDetector()
    whole = detector([canvas])[0]
    tiled, n_tiles = detect_image(src, detector, tile=400, overlap=0.25, progress=False)
    assert n_tiles == 6 * 4
    assert whole.counts(3).tolist() == tiled.counts(3).tolist()
    # every merged box is the whole-image box of the same disc, not a partial one
    m = ios_matrix(tiled.xyxy, whole.xyxy)
    assert (m.max(axis=1) > 0.99).all() and np.abs(np.sort(tiled.area) - np.sort(whole.area)).max() < 1


def test_merge_keeps_two_touching_cells_that_cross_a_tile_edge():
    """Two different cells overlapping a little, both seen by two tiles: two cells remain, not one."""
    from bccd_yolo.count.tiling import Tile

    a, b = Tile(0, 0, 0, 0, 100, 100), Tile(0, 1, 60, 0, 100, 100)
    cells = np.array([[62, 10, 82, 30], [78, 12, 98, 32]], np.float32)
    det = Detections(cells, np.array([0.9, 0.8], np.float32), np.array([0, 0]))
    merged = merge_tiles([(a, det), (b, det)], 160, 100)
    assert len(merged) == 2


def test_merge_memory_stays_local_on_a_dense_slide():
    """60,000 cells over 1,500 tiles merge without an N x N matrix (which would need ~29 GB)."""
    rng = np.random.default_rng(0)
    tiles = tile_grid(24000, 24000, 640, 0.25)
    parts = []
    for t in tiles:
        xy = rng.uniform([t.x, t.y], [t.x + t.w - 30, t.y + t.h - 30], size=(40, 2)).astype(np.float32)
        parts.append((t, Detections(np.hstack([xy, xy + 25]), rng.uniform(0.3, 1, 40).astype(np.float32),
                                    rng.integers(0, 3, 40))))
    import bccd_yolo.count.tiling as tiling

    compared = []
    real = tiling.overlap_areas

    def counting_overlaps(a, b):
        compared.append(len(a) * len(b))
        return real(a, b)

    tiling.overlap_areas = counting_overlaps
    try:
        tracemalloc.start()
        merged = merge_tiles(parts, 24000, 24000)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        tiling.overlap_areas = real
    # boxes are compared with nearby boxes only, never slide-wide: each with its tile's 40 (the nested-box check)
    # and the ~16 of each of 5 hash buckets (the merge), so ~120 per box, where slide-wide would be 100,000
    n_boxes = 40 * len(tiles)
    assert compared and max(compared) <= 150 * 150
    assert sum(compared) <= 200 * n_boxes
    assert 0 < len(merged) < 40 * len(tiles) and peak < 200e6


def test_tiled_tiff_reads_regions_without_decoding_the_whole_image(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3000, 4000, 3), np.uint8)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib")
    src = open_image(path)
    assert isinstance(src, TiledTiffSource) and (src.width, src.height) == (4000, 3000)
    tracemalloc.start()
    region = src.read(1234, 777, 640, 640)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(region, image[777:1417, 1234:1874])
    # what it holds: the region and the 4 x 4 tiles it touches (kept, decoded, for overlapping reads), plus
    # decoding buffers (half as much again allowed); the whole image would be 36 MB, 8x more
    touched = 16 * 256 * 256 * 3
    assert peak < 1.5 * (touched + region.nbytes) < image.nbytes / 5
    assert np.array_equal(src.read(3900, 2900, 100, 100), image[2900:, 3900:])
    src.close()


def test_grey_and_16_bit_tiffs_read_as_rgb(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (512, 1))  # 0 .. 65535 left to right
    tifffile.imwrite(tmp_path / "g.tif", ramp, tile=(256, 256))
    region = open_image(tmp_path / "g.tif").read(0, 100, 512, 10)
    assert region.shape == (10, 512, 3) and region.dtype == np.uint8
    assert (region[..., 0] == region[..., 2]).all()
    assert np.abs(region[0, :, 0].astype(int) - ramp[0].astype(int) * 255 // 65535).max() <= 1  # scaled, not clipped
    assert region[0, 0, 0] == 0 and region[0, -1, 0] == 255


def _svs(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (1500, 2000, 3), np.uint8)
    path = tmp_path / "slide.svs"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib")  # OpenSlide: generic-tiff
    return path, image


def test_openslide_formats_read_regions_through_openslide(tmp_path):
    """`.svs` and friends go through OpenSlide; the test extra installs it, so a broken install fails here."""
    path, image = _svs(tmp_path)
    src = open_image(path)
    assert type(src).__name__ == "OpenSlideSource"
    assert (src.width, src.height) == (2000, 1500)
    assert np.array_equal(src.read(100, 200, 300, 200), image[200:400, 100:400])
    src.close()


def test_openslide_formats_without_openslide_are_one_clear_error(tmp_path, monkeypatch):
    import sys

    from bccd_yolo.core.errors import InputError

    path, _ = _svs(tmp_path)
    monkeypatch.setitem(sys.modules, "openslide", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(InputError, match="needs OpenSlide"):
        open_image(path)


def test_the_whole_view_of_a_cell_decides_over_a_partial_one():
    """Cut by tile a's edge, a cell scores 0.8 there; tile b sees it whole at 0.2: b's view is kept."""
    from bccd_yolo.count.tiling import Tile

    a, b = Tile(0, 0, 0, 0, 100, 100), Tile(0, 1, 60, 0, 100, 100)
    da = Detections(np.array([[80, 10, 100, 40]], np.float32), np.array([0.8], np.float32), np.array([0]))
    db = Detections(np.array([[80, 10, 120, 40]], np.float32), np.array([0.2], np.float32), np.array([0]))
    merged = merge_tiles([(a, da), (b, db)], 160, 100)
    assert merged.xyxy.tolist() == [[80, 10, 120, 40]] and merged.score.tolist() == pytest.approx([0.2])


def test_a_low_score_box_inside_a_cell_does_not_shield_its_duplicate():
    from bccd_yolo.count.tiling import Tile

    a, b = Tile(0, 0, 0, 0, 100, 100), Tile(0, 1, 60, 0, 100, 100)
    cell = [70, 10, 95, 35]
    da = Detections(np.array([cell], np.float32), np.array([0.9], np.float32), np.array([0]))
    db = Detections(np.array([cell, [80, 20, 85, 25]], np.float32), np.array([0.85, 0.02], np.float32), np.array([0, 0]))
    merged = merge_tiles([(a, da), (b, db)], 160, 100)
    assert merged.xyxy.tolist() == [cell] and merged.score.tolist() == pytest.approx([0.85])  # b's: 10 px from its edge, a's 5


def test_the_most_central_whole_view_decides_not_the_highest_score():
    """Seen whole by both tiles, a faint cell scores 0.3 at the middle of tile b and 0.6 near tile a's edge.
    The threshold was calibrated on one look at a photo: the best of two looks would count faint cells that a
    photo misses (tiled platelets came out 4-14 % above photo counts)."""
    from bccd_yolo.count.tiling import Tile

    a, b = Tile(0, 0, 0, 0, 200, 100), Tile(0, 1, 100, 0, 200, 100)  # image 300 x 100
    da = Detections(np.array([[170, 40, 190, 60]], np.float32), np.array([0.6], np.float32), np.array([2]))
    db = Detections(np.array([[171, 41, 191, 61]], np.float32), np.array([0.3], np.float32), np.array([2]))
    merged = merge_tiles([(a, da), (b, db)], 300, 100)
    assert merged.xyxy.tolist() == [[171, 41, 191, 61]] and merged.score.tolist() == pytest.approx([0.3])
    # mirrored: the central view is a's now, so the order of the tiles does not decide
    db2 = Detections(np.array([[110, 40, 130, 60]], np.float32), np.array([0.6], np.float32), np.array([2]))
    da2 = Detections(np.array([[111, 41, 131, 61]], np.float32), np.array([0.3], np.float32), np.array([2]))
    merged = merge_tiles([(a, da2), (b, db2)], 300, 100)
    assert merged.xyxy.tolist() == [[111, 41, 131, 61]] and merged.score.tolist() == pytest.approx([0.3])


def test_nested_boxes_of_one_class_are_one_cell_touching_cells_stay_two():
    from bccd_yolo.count.tiling import suppress_nested

    d = Detections(np.array([[10, 10, 30, 30], [12, 12, 26, 26],       # platelet twice: IoS 1.0, IoU 0.49 (NMS keeps both)
                             [100, 100, 200, 200], [120, 120, 190, 190],  # RBC and a box nested in it: IoS 1.0, IoU 0.49
                             [200, 100, 300, 200],                        # a touching RBC: IoS 0
                             [140, 140, 160, 160],                        # a platelet on the RBC: other class, kept
                             [205, 105, 295, 195]], np.float32),          # the touching RBC also called WBC: IoU 0.81
                   np.array([0.5, 0.9, 0.8, 0.3, 0.7, 0.6, 0.4], np.float32), np.array([2, 2, 0, 0, 0, 2, 1]))
    kept = suppress_nested(d)
    assert sorted(map(tuple, kept.xyxy.tolist())) == sorted([(12, 12, 26, 26), (100, 100, 200, 200),
                                                              (200, 100, 300, 200), (140, 140, 160, 160)])
    # a chain: A contains B, B overlaps C by IoS 0.8 but A does not reach C: B goes, C stays (only kept boxes suppress)
    chain = Detections(np.array([[0, 0, 100, 100], [50, 0, 110, 100], [90, 0, 130, 100]], np.float32),
                       np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64))
    assert len(suppress_nested(chain)) == 2


def _photo(tmp_path, name, im):
    from bccd_yolo.core.images import open_image

    path = tmp_path / name
    im.save(path)
    return open_image(path).read(0, 0, im.width, im.height)


def test_every_photo_format_reads_as_rgb_by_its_real_range(tmp_path, caplog):
    """A gradient in each format must come back as the same 8-bit gradient, not clipped or blank."""
    from PIL import Image

    ramp8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8 x 64, 0..252
    ramp16 = ramp8.astype(np.uint16) * 257  # the same ramp at 16 bits: 0..64764
    rgb = np.stack([ramp8, 255 - ramp8, np.full_like(ramp8, 90)], 2)
    cases = {
        "grey16.png": Image.fromarray(ramp16),
        "grey8.png": Image.fromarray(ramp8),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=256),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full_like(ramp8, 255)])),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
    }
    for name, im in cases.items():
        got = _photo(tmp_path, name, im)
        assert got.shape == (8, 64, 3) and got.dtype == np.uint8, name
        want = rgb if name in ("palette.png", "rgba.png", "cmyk.jpg") else np.repeat(ramp8[..., None], 3, 2)
        tol = 12 if name.endswith(".jpg") else (4 if name == "palette.png" else 1)  # JPEG and palette quantise
        assert np.abs(got.astype(int) - want).max() <= tol, (name, got[0, :8, 0], want[0, :8, 0])
    assert sum("greyscale" in r.message for r in caplog.records) == 2  # grey16 and grey8, once each


def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    from PIL import Image

    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :10] = 255  # white band on the left of a 40 x 20 picture
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    im.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    from bccd_yolo.core.images import open_image

    got = open_image(tmp_path / "rot.jpg").read(0, 0, 20, 40)
    assert got.shape == (40, 20, 3) and got[:10].mean() > 200 and got[30:].mean() < 50


def test_large_photos_read_region_by_region_through_libvips(tmp_path, monkeypatch):
    """Above the whole-decode limit a PNG is read through libvips, pixel for pixel what Pillow decodes."""
    from PIL import Image

    import bccd_yolo.core.images as images

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "slide.png")
    Image.fromarray(np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray((a[..., 0].astype(np.uint16) * 257)).save(tmp_path / "grey16.png")
    monkeypatch.setattr(images, "PHOTO_PIXEL_LIMIT", 10_000)
    src = images.open_image(tmp_path / "slide.png")
    assert isinstance(src, images.VipsSource) and (src.width, src.height) == (500, 300)
    assert np.array_equal(src.read(37, 11, 200, 150), a[11:161, 37:237])
    assert np.array_equal(images.open_image(tmp_path / "rgba.png").read(0, 0, 500, 300), a)
    grey = images.open_image(tmp_path / "grey16.png").read(0, 0, 500, 300)
    assert np.array_equal(grey, np.repeat(a[..., :1], 3, 2))  # 16 bits scaled by their range, as for photos


def test_a_huge_png_without_libvips_is_refused_by_its_size(tmp_path, monkeypatch):
    """A 1 KB PNG declaring 30,000 x 30,000 px: refused from its header, before a pixel is decoded."""
    import builtins
    import struct
    import zlib

    import bccd_yolo.core.images as images
    from bccd_yolo.core.errors import InputError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "pyvips" else real_import(name, *a, **k))
    with pytest.raises(InputError, match="30000 x 30000 px is over the 40 MP"):
        images.open_image(tmp_path / "bomb.png")


def test_overlapping_tiff_reads_decode_each_tile_once(tmp_path):
    """Counting tiles overlap by 40 %: a TIFF tile they share is decoded once, not once per read."""
    image = np.random.default_rng(3).integers(0, 255, (1024, 2048, 3), np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", image, tile=(256, 256), photometric="rgb", compression="zlib")
    src = open_image(tmp_path / "s.tif")
    page = src._page
    decode = page.decode
    calls = []

    def counting(data, index, **kwargs):
        calls.append(index)
        return decode(data, index, **kwargs)

    page.__dict__["decode"] = counting
    for t in tile_grid(2048, 1024, 640, 0.4):
        assert np.array_equal(src.read(t.x, t.y, t.w, t.h), image[t.y : t.y + t.h, t.x : t.x + t.w])
    assert sorted(calls) == list(range(4 * 8))  # 32 tiles, each decoded once
    src.close()
