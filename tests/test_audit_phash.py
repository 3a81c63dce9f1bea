"""The perceptual hash: copies of a photo (resized, re-encoded, another format, rotated by an
EXIF tag instead of pixels) stay within SIMILAR bits; different photos do not."""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image, ImageOps
from veil.audit.phash import SIMILAR, distance, in_background, perceptual_hash
from veil.findings import THUMBNAIL_SIDE
from veil.formats import detect
from veil.inspect import inspect
from veil.policy import Settings

from tests.conftest import corpus_file

PHOTOS = (
    "es_nikon_p6000_gps_DSCN0010.jpg",
    "es_canon_ixus_owner.jpg",
    "dn_samsung_galaxys_gps_rot90.jpg",
    "es_nikon_d70s_gps_serial.jpg",
    "dn_webp_htc_gps_icc.webp",
    "dn_png_exif_sample.png",
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def upright(data: bytes) -> Image.Image:
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


@pytest.mark.parametrize("name", PHOTOS)
def test_copies_of_a_photo_are_close(name):
    data = corpus_file(name).read_bytes()
    original = perceptual_hash(data)
    assert original is not None and len(original) == 16
    image = upright(data)
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    quarter = image.resize((image.width // 4, image.height // 4), Image.Resampling.BILINEAR)
    copies = {
        "half, JPEG q60": encode(half, "JPEG", quality=60),
        "quarter, JPEG q40": encode(quarter, "JPEG", quality=40),
        "PNG": encode(half, "PNG", compress_level=1),
        "WebP": encode(half, "WEBP", quality=50),
    }
    for what, copy in copies.items():
        d = distance(original, perceptual_hash(copy))
        assert d <= SIMILAR, f"{what}: {d} bits"


def test_different_photos_are_far_apart():
    hashes = {name: perceptual_hash(corpus_file(name).read_bytes()) for name in PHOTOS}
    for (a, ha), (b, hb) in itertools.combinations(hashes.items(), 2):
        assert distance(ha, hb) > 2 * SIMILAR, (a, b)


def test_orientation_is_applied_before_hashing():
    # A camera stores pixels sideways with an Orientation tag; a copy saved by a viewer
    # stores them upright without one. Both are the same picture.
    data = corpus_file("dn_samsung_galaxys_gps_rot90.jpg").read_bytes()
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) not in (None, 1)
    rotated_pixels = encode(upright(data), "JPEG", quality=85)
    assert distance(perceptual_hash(data), perceptual_hash(rotated_pixels)) <= SIMILAR


def test_an_undecodable_image_has_no_hash():
    data = corpus_file("es_nikon_p6000_gps_DSCN0010.jpg").read_bytes()
    assert perceptual_hash(b"\xff\xd8\xff\xe0 not really a jpeg") is None
    assert perceptual_hash(data[:200]) is None


@pytest.mark.parametrize(
    "name",
    [
        "es_orientation6_rot90.jpg",  # turned by its tag
        "dn_cmyk_adobe_app14_multi_icc.jpg",
        "es_iphone11promax_gps.heic",
        "dn_png_exif_sample.png",
        "dn_olympus_ep3_serials_preview.jpg",
    ],
)
def test_a_photo_searched_for_faces_is_hashed_from_inspections_thumbnail(name):
    """Detection already decoded the displayed pixels: the hash of its thumbnail stays within a
    few bits of the hash of a fresh decode, so `veil audit find` finds either."""
    data = corpus_file(name).read_bytes()
    fmt = detect(data)
    report = inspect(data, fmt, Settings(), want_faces=True)
    assert report.thumbnail is not None
    assert report.thumbnail.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    from_thumbnail = perceptual_hash(b"not decoded again", report.thumbnail)
    assert distance(from_thumbnail, perceptual_hash(data)) <= SIMILAR // 2


def test_without_face_detection_there_is_no_thumbnail():
    data = corpus_file("es_canon_ixus_owner.jpg").read_bytes()
    assert inspect(data, "jpeg", Settings(), want_faces=False).thumbnail is None


def test_hashing_in_the_background_gives_the_same_hash():
    data = corpus_file("es_canon_ixus_owner.jpg").read_bytes()
    pending = [in_background(data), in_background(b"not an image")]
    assert [p.result(timeout=30) for p in pending] == [perceptual_hash(data), None]
