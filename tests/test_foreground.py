"""Skipping bare background: tiles with no stained pixels are never predicted, and counts do not change (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import BCCD_SOURCE, BlobDetector, UnscaledBlob, disc_canvas

from bccd_yolo.core.images import PhotoSource
from bccd_yolo.count.counting import UNSCALED_RBC_PX, TileReport, cell_px, detect_image
from bccd_yolo.count.foreground import foreground


class SmallInputBlob(BlobDetector):
    """The same model run with half its training input size: cells look half as large to the network."""

    imgsz = BlobDetector.train_imgsz // 2

    def factor(self, mpp):
        return super().factor(mpp) * self.imgsz / self.train_imgsz


def test_the_cell_size_that_sizes_glass_is_in_input_pixels_whatever_the_network_input():
    # the mask works on the input: a red cell there is the model's cell at the input's scale, not the cell
    # divided by the resampling factor, which also carries the imgsz knob
    assert cell_px(BlobDetector(), None) == pytest.approx(BlobDetector.RBC_PX)
    assert cell_px(SmallInputBlob(), None) == pytest.approx(BlobDetector.RBC_PX)
    assert cell_px(SmallInputBlob(), 0.5) == pytest.approx(2 * BlobDetector.RBC_PX)  # 0.5 um/px: cells twice as wide
    # a model with no recorded scale takes inputs to be BCCD-like photos, as Detector.factor does (640 px frames)
    assert cell_px(UnscaledBlob(), None) == UNSCALED_RBC_PX


def test_an_unscaled_models_red_cell_is_bccds(bccd_dataset):
    """The fallback is BCCD's median whole red cell in its 640 px photos, measured here from the train labels;
    2 %: BCCD's labels and the complete re-annotation differ by 0.5 px on ~104 (scale.py)."""
    from bccd_yolo.measure.calibrate import training_scale
    from bccd_yolo.measure.evaluate import load_ground_truth

    info = {"path": str(bccd_dataset), "train": str(bccd_dataset / "images" / "train")}
    measured = training_scale(load_ground_truth(info, "train"), ["RBC", "WBC", "Platelets"], imgsz=640)
    assert measured is not None and UNSCALED_RBC_PX == pytest.approx(measured["rbc_px"], rel=0.02)


def sparse_slide(seed=0):
    """Three islands of discs on plain light-grey glass, most of a 4000 x 3000 slide empty."""
    slide = np.full((3000, 4000, 3), 232, np.uint8)
    for k, (x, y) in enumerate([(200, 300), (2600, 400), (1500, 2000)]):
        island = disc_canvas(900, 700, 40, seed=seed + k, rmax=30)
        island[(island == 255).all(axis=2)] = 232  # the islands' own background is glass too
        slide[y : y + 700, x : x + 900] = island
    return slide


def test_counts_with_and_without_skipping_background_are_identical():
    slide = PhotoSource(Path("s.png"), sparse_slide())
    skipped, every = TileReport(), TileReport()
    a, n_a = detect_image(slide, BlobDetector(), tile=400, overlap=0.3, progress=False, report=skipped)
    b, n_b = detect_image(slide, BlobDetector(), tile=400, overlap=0.3, progress=False, skip_background=False, report=every)
    assert a.counts(3).tolist() == b.counts(3).tolist() and len(a) > 100
    assert sorted(map(tuple, a.xyxy.tolist())) == sorted(map(tuple, b.xyxy.tolist()))
    # most of the slide is glass: most tiles are never predicted
    assert every.skipped == 0 and skipped.skipped > every.predicted / 2 and n_a + skipped.skipped == n_b


def test_a_photo_without_plain_background_is_not_masked():
    covered = disc_canvas(1200, 900, 150, seed=5, rmax=40)
    covered[(covered == 255).all(axis=2)] = (225, 180, 190)  # pink plasma between the cells
    assert foreground(PhotoSource(Path("c.png"), covered), cell_px=41) is None
    glass = np.full((900, 1200, 3), 232, np.uint8)
    fg = foreground(PhotoSource(Path("g.png"), glass), cell_px=41)
    assert fg is not None and not fg.mask.any()  # bare glass: nothing to predict


def test_pale_red_cells_on_colourless_plasma_are_foreground():
    """BCCD's red cells are barely pink (saturation ~30) on near-grey plasma (~5): saturation's Otsu threshold
    on a photo with one purple white cell falls above them; glass must also be colourless and wide."""
    import cv2

    rng = np.random.default_rng(0)
    photo = np.full((960, 1280, 3), (242, 238, 237), np.uint8)  # plasma
    centres = [(int(x), int(y)) for x, y in rng.uniform([60, 60], [1220, 900], size=(14, 2))]
    for x, y in centres:
        cv2.circle(photo, (x, y), 50, (236, 206, 214), -1)  # pale red cells, 100 px
    cv2.circle(photo, (640, 480), 110, (120, 60, 160), -1)  # a purple white cell
    fg = foreground(PhotoSource(Path("p.png"), photo), cell_px=100)
    assert fg is not None  # wide plasma regions are skipped ...
    assert all(fg.touches(x - 50, y - 50, 100, 100) for x, y in centres)  # ... but no red cell
    assert not fg.mask.all()


def test_no_labelled_cell_of_a_bccd_photo_falls_outside_the_mask(bccd_dataset):
    from bccd_yolo.data.labels import read_yolo_detections

    images = sorted((bccd_dataset / "images" / "test").glob("*.jpg"))[:24]
    skipped_area = 0.0
    for image in images:
        photo = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(image).convert("RGB"))
        fg = foreground(PhotoSource(image, photo), cell_px=104)  # BCCD's median red cell
        boxes = read_yolo_detections(bccd_dataset / "labels" / "test" / f"{image.stem}.txt", 640, 480)
        for x1, y1, x2, y2 in boxes.xyxy:
            assert fg is None or fg.touches(int(x1), int(y1), int(x2 - x1), int(y2 - y1)), (image.name, (x1, y1))
        skipped_area += 0 if fg is None else 1 - fg.mask.mean()
    assert skipped_area < 0.2 * len(images)  # smears are mostly cells: little is ever skipped in a photo


def test_the_mask_marks_where_the_cells_are():
    slide = sparse_slide()
    fg = foreground(PhotoSource(Path("s.png"), slide), cell_px=41)
    assert fg is not None
    assert fg.touches(200, 300, 900, 700) and not fg.touches(1200, 1200, 300, 300)
    # every coloured pixel of the slide falls in the mask
    ys, xs = np.nonzero((slide.max(axis=2).astype(int) - slide.min(axis=2)) > 50)
    assert fg.mask[(ys * fg.scale).astype(int), (xs * fg.scale).astype(int)].all()


@pytest.mark.parametrize("width,height", [(10_001, 9_000), (8_193, 4_097)])
def test_a_thumbnail_of_any_size_is_assembled_from_chunks(width, height):
    """Chunk edges scaled one by one must add up to the thumbnail's own size (rounding)."""
    from bccd_yolo.count.foreground import thumbnail

    class Ramp:
        path = Path("ramp.png")

        def __init__(self):
            self.width, self.height = width, height

        def read(self, x, y, w, h):
            a = np.zeros((h, w, 3), np.uint8)
            a[..., 0] = ((np.arange(x, x + w) * 255) // width)[None, :]
            return a

    source = Ramp()
    reads: list[tuple[int, int]] = []
    read = source.read
    source.read = lambda x, y, w, h: reads.append((w, h)) or read(x, y, w, h)
    thumb, s = thumbnail(source, 1024)
    assert thumb.shape[:2] == (round(height * s), round(width * s)) and max(thumb.shape[:2]) == 1024
    assert np.all(np.diff(thumb[thumb.shape[0] // 2, :, 0].astype(int)) >= -1)  # the ramp, no gaps or seams
    assert thumb[:, -1, 0].min() > 240
    # bounded memory: reads of at most 1 MP (3 MB of RGB); 4096 px ones put a 10k PNG slide's peak RSS 130 MB above
    # what counting its tiles needs (benchmarks/serve_speed.py's slide)
    assert max(w * h for w, h in reads) <= 1024 * 1024


def test_the_detectors_buffers_are_released_after_a_tiled_image_and_never_per_photo(tmp_path):
    """A slide's last tiles leave the runtime's buffers behind while its white cells are classified and its overlay
    written (12 MB on a 10,000 px slide); releasing them per photo would re-allocate them for every photo of a folder."""
    from PIL import Image

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.options import CountOptions

    Image.fromarray(disc_canvas(1200, 900, 20, seed=1)).save(tmp_path / "slide.png")
    for k in range(3):
        Image.fromarray(disc_canvas(300, 200, 20, seed=k)).save(tmp_path / f"photo{k}.png")
    det = BlobDetector()
    # at the blob detector's own scale, so the slide is tiled (400 px tiles) whatever --mpp auto would make of it
    results, errors = count_images(sorted(tmp_path.glob("*.png")), det, CountOptions(mpp=1.0), progress=False)
    assert not errors and [r.tiles > 1 for r in results] == [False, False, False, True]
    assert det.released == 1


def test_a_greyscale_slide_gets_no_mask_and_its_cells_are_counted(tmp_path):
    """Saturation cannot tell grey cells from grey glass: every tile of a greyscale scan was taken for glass and
    skipped, and 0 cells were counted. The shipped model (trained with a greyscale share) then counts it as a
    colour copy, within half (a grey field loses some contrast; 0 is the bug)."""
    import cv2

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.count.detector import Detector, default_weights

    grey = sparse_slide().mean(axis=2).astype(np.uint8)
    assert foreground(PhotoSource(Path("g.png"), np.dstack([grey] * 3)), cell_px=41) is None
    assert foreground(PhotoSource(Path("c.png"), sparse_slide()), cell_px=41) is not None  # colour: a mask, as before
    photo = cv2.imread(str(BCCD_SOURCE / "BCCD" / "JPEGImages" / "BloodImage_00007.jpg"))
    colour = np.full((1440, 1920, 3), 232, np.uint8)
    colour[:480, :640] = photo
    colour[960:, 1280:] = photo  # two fields on plain glass: a slide with glass to skip
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    cv2.imwrite(str(tmp_path / "grey.png"), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    (c, g), errors = count_images([tmp_path / "colour.png", tmp_path / "grey.png"], Detector(default_weights(), quiet=True),
                                  progress=False)
    assert not errors and c.tiles_skipped > 0 and g.tiles_skipped == 0
    assert c.counts["RBC"] > 15 and g.counts["RBC"] >= 0.5 * c.counts["RBC"]
