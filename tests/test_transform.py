"""transform: strip and blur, and keeping the announced length when faces force a re-encode."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps
from veil.findings import Face, ImageReport
from veil.formats import UnsupportedImage, open_image
from veil.inspect import inspect
from veil.policy import Settings
from veil.transform import transform

from tests.conftest import FACES_CORPUS, corpus_file, require

FACE_PHOTO = "dlib/2008_001322.jpg"


def face_photo() -> bytes:
    path = FACES_CORPUS / FACE_PHOTO
    require(path.is_file(), f"{path} is absent")
    return path.read_bytes()


def encoded(fmt: str, image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB").tobytes()


def synthetic(fmt: str) -> bytes:
    image = Image.radial_gradient("L").convert("RGB").resize((96, 64))
    options = {
        "JPEG": {"quality": 90, "comment": b"hello"},
        "PNG": {},
        "WEBP": {"lossless": True, "exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"},
        "GIF": {},
        "TIFF": {},
        "BMP": {},
    }[fmt]
    return encoded(fmt, image, **options)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
@pytest.mark.parametrize("extra", [1, 3, 7, 11, 12, 13, 300, 70_000])
def test_padded_reaches_the_exact_length_and_decodes_the_same(fmt, extra):
    data = synthetic(fmt)
    image = open_image(data)
    padded = image.padded(len(data) + extra)
    assert len(padded) == len(data) + extra
    assert pixels(padded) == pixels(data)
    again = open_image(padded)
    assert again.dimensions() == image.dimensions()


def test_padded_heif_adds_a_free_box():
    pytest.importorskip("pillow_heif").register_heif_opener()
    data = encoded("HEIF", Image.radial_gradient("L").convert("RGB"), quality=80)
    padded = open_image(data).padded(len(data) + 100)
    assert len(padded) == len(data) + 100
    assert padded[-100:-92] == (100).to_bytes(4, "big") + b"free"
    assert Image.open(io.BytesIO(padded)).size == (256, 256)


def test_padded_refuses_to_shrink():
    data = synthetic("JPEG")
    with pytest.raises(UnsupportedImage, match="longer than the size the upload announced"):
        open_image(data).padded(len(data) - 1)


def test_blur_on_a_size_declared_upload_keeps_the_announced_length():
    data = face_photo()
    settings = Settings()
    report = inspect(data, "jpeg", settings, want_faces=True)
    assert report.faces
    out = transform(data, report, ("blur", "strip"), settings, size_preserving=True)
    assert len(out) == len(data)
    assert pixels(out) != pixels(data)
    kinds = {f.kind for f in open_image(out).findings()}
    assert kinds <= {"icc_profile"}, kinds


def test_blur_that_cannot_fit_the_announced_length_is_refused():
    # A flat grey photo compresses to almost nothing; the obliterated box (noisy cells drawn
    # back smooth) cannot, so the blurred image outgrows the announced length.
    flat = encoded("JPEG", Image.new("RGB", (800, 600), (128, 128, 128)), quality=50)
    report = ImageReport("jpeg", 800, 600)
    report.faces = [Face(100, 100, 500, 400, 0.9)]
    grown = transform(flat, report, ("blur", "strip"), Settings(), size_preserving=False)
    assert len(grown) > len(flat)
    with pytest.raises(UnsupportedImage, match="longer than the size the upload announced"):
        transform(flat, report, ("blur", "strip"), Settings(), size_preserving=True)


def test_blur_on_an_iphone_heic_keeps_it_upright_and_strips_it():

    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    data = corpus_file("dn_heic_iphonexr_gps_rot90.heic").read_bytes()
    settings = Settings()
    report = inspect(data, "heif", settings, want_faces=True)
    assert report.faces  # people in the nave
    out = transform(data, report, ("blur", "strip"), settings, size_preserving=False)
    shown_before = Image.open(io.BytesIO(data))
    shown_after = Image.open(io.BytesIO(out))
    assert shown_after.size == shown_before.size == (3024, 4032)  # portrait, as displayed
    kinds = {f.kind for f in open_image(out).findings()}
    assert not kinds & {"gps", "device", "datetime", "maker_notes", "exif", "xmp"}, kinds
