"""The model shipped in weights/: it loads, knows the three BCCD classes, and counts WBC right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bccd_yolo.core.images import PhotoSource, open_image
from bccd_yolo.count.counting import detect_image
from bccd_yolo.count.detector import SHIPPED_WEIGHTS, Detector, default_weights
from bccd_yolo.count.thresholds import thresholds_path
from bccd_yolo.measure.synthetic import paste_canvas


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(default_weights())


@pytest.fixture(scope="module")
def fp32_detector() -> Detector:
    """For tests of the tiling alone: bf16 (count's default on CPUs with AMX) rounds a cell's score differently in a
    tile than in the whole photo, flipping near-threshold cells either way (87 val photos, 320 px tiles: RBC +1.4 %
    at fp32 and at bf16 alike; on the 24 test photos below +4.1 % at bf16, +2.5 % at fp32)."""
    return Detector(default_weights(), precision="fp32")


def test_shipped_model_is_small_half_precision_and_calibrated(detector):
    import torch

    assert SHIPPED_WEIGHTS.stat().st_size <= 30e6
    ckpt = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=False)
    assert next(ckpt["model"].parameters()).dtype == torch.float16
    assert detector.names == ["RBC", "WBC", "Platelets"]
    saved = json.loads(thresholds_path(SHIPPED_WEIGHTS).read_text())
    assert saved["split"] == "val" and detector.thresholds.by_class == saved["thresholds"]


def test_wbc_count_matches_the_annotations_on_test_images(detector, bccd_dataset):
    """Every BCCD image is centred on a white cell; the model must count them as annotated on most test images."""
    images = sorted((bccd_dataset / "images" / "test").glob("*.jpg"))[:24]
    right = 0
    for image in images:
        label = bccd_dataset / "labels" / "test" / f"{image.stem}.txt"
        true_wbc = sum(line.split()[0] == "1" for line in label.read_text().splitlines())
        d, _ = detect_image(open_image(image), detector, progress=False)
        right += int(d.counts(3)[1] == true_wbc)
    assert right >= 0.85 * len(images), f"WBC count right on {right}/{len(images)} images"


@pytest.fixture(scope="module")
def canvas(bccd_dataset):
    files = sorted((bccd_dataset / "images" / "test").glob("*.jpg"))
    return paste_canvas(files[0::2] + files, 3400, 2400, seed=0)


@pytest.fixture(scope="module")
def tiled(detector, canvas):
    image, _ = canvas
    return detect_image(PhotoSource(Path("canvas.png"), image), detector, progress=False)


# Set when scale-aware tiling was built, from `benchmarks/tiled_agreement.py` on the model shipped then (4 canvases
# of 16-17 test photos, every tile setting and the 2/3-scale canvas): the largest per-canvas difference from
# one-by-one counts was 19 of 320 RBC (5.9 %), 1 WBC and 4 platelets. So per canvas: max(4 cells, 6 %). A merge
# that kept duplicates adds ~40 % in the overlaps; tiles shown at the wrong scale lost half the RBC before
# scale-aware tiling.
#
# The three-source model loses more red cells at the frames of pasted photos than the models before it: on this
# canvas 281 RBC tiled against 301 counted photo by photo (-6.6 %; the model before: 289 of 304). That is the model's
# response to cells cut by a photo's frame against the canvas background (benchmarks/results/ship-augment/
# frame_loss.py), not the tiling's, and it is stated in weights/MODEL_CARD.md; so the tiling is checked here against
# itself: tile settings and the canvas at 2/3 of its resolution must agree under the same rule.
def close(counts, reference) -> bool:
    return all(abs(int(t) - int(o)) <= max(4, 0.06 * o) for t, o in zip(counts, reference))


def test_tiled_canvas_counts_agree_across_tile_settings(detector, canvas, tiled):
    """Test photos pasted at uneven offsets, counted in 640 px tiles at overlap 0.4 and in 960 px tiles at 0.25."""
    image, placed = canvas
    other, n_tiles = detect_image(PhotoSource(Path("canvas.png"), image), detector, tile=960, overlap=0.25, progress=False)
    assert n_tiles > 1 and len(placed) >= 15 and tiled[1] > 1
    assert close(other.counts(3), tiled[0].counts(3)), (other.counts(3), tiled[0].counts(3))


def test_a_canvas_shrunk_to_two_thirds_counts_the_same_at_its_scale(detector, canvas, tiled):
    import cv2

    image, _ = canvas
    small = cv2.resize(image, (round(image.shape[1] * 2 / 3), round(image.shape[0] * 2 / 3)), interpolation=cv2.INTER_AREA)
    mpp = detector.scale.photo_mpp * 1.5
    counted, _ = detect_image(PhotoSource(Path("small.png"), small), detector, progress=False, mpp=mpp)
    assert close(counted.counts(3), tiled[0].counts(3)), (counted.counts(3), tiled[0].counts(3))


def test_photos_cut_into_320_px_tiles_count_as_whole(fp32_detector, bccd_dataset):
    """No seams between photos: the tiling and merge alone. Benchmark on all 72 test photos: RBC +0.8 %,
    WBC +1, platelets +1; on these 24, allow 3 % of RBC (sampling on a third of the photos) and 2 cells each else."""
    files = sorted((bccd_dataset / "images" / "test").glob("*.jpg"))[:24]
    whole = sum(detect_image(open_image(f), fp32_detector, progress=False)[0].counts(3) for f in files)
    cut = sum(detect_image(open_image(f), fp32_detector, tile=320, overlap=0.4, progress=False)[0].counts(3) for f in files)
    assert abs(int(cut[0]) - int(whole[0])) <= 0.03 * whole[0], (cut, whole)
    assert abs(int(cut[1]) - int(whole[1])) <= 2 and abs(int(cut[2]) - int(whole[2])) <= 2, (cut, whole)


def test_counts_of_bccd_test_photos_follow_their_complete_labels(detector, bccd_source):
    """`count_images` at its defaults on 12 BCCD test photos with complete labels (../shared/txl-pbc-bccd). The
    targets are per-photo MAE <= 1.5 RBC, 0.05 WBC and 0.15 platelets over all 40 test photos (benchmarks/
    per_source.py measures them); on 12 photos the RBC mean absolute error is allowed 2.5, because per-photo RBC
    errors spread with a standard deviation of about 1.5 cells, so a 12-photo mean can sit ~0.5 above the 40-photo
    figure by chance and 2.5 is still half of what the model shipped before the complete labels got wrong (10.7)."""
    import numpy as np

    from bccd_yolo.count.counting import count_images
    from bccd_yolo.data.convert import ClassSpec, read_source
    from bccd_yolo.data.sources import SourceSpec
    from bccd_yolo.measure.per_source import fields_of

    shared = bccd_source.parent
    spec = SourceSpec("bccd", bccd_source, annotations=shared / "txl-pbc-bccd" / "Annotations")
    data, _ = read_source(spec, ClassSpec.parse("RBC,WBC,Platelets"), None, "official", 0, 0.2, 0.2, "drop")
    fields = fields_of(data.splits["test"], detector.names)[:12]
    counted, errors = count_images([f.path for f in fields], detector, progress=False)
    assert not errors
    true = np.array([f.truth.counts(3) for f in fields])
    pred = np.array([[c.counts[n] for n in detector.names] for c in counted])
    mae = np.abs(pred - true).mean(0)
    assert mae[0] <= 2.5 and mae[1] <= 0.25 and mae[2] <= 0.5, mae  # WBC, platelets: at most 3 and 6 photos off by one
    assert not any(c.qc for c in counted), [c.qc for c in counted]  # BCCD's own photos raise no qc flag
