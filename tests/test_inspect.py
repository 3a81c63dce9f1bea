"""Inspection refuses decompression bombs from the header, before anything decodes."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image
from veil.formats import ImageError, UnsupportedImage
from veil.formats.png import SIGNATURE, make_chunk
from veil.inspect import DecompressionBomb, inspect
from veil.policy import Settings


def tiny_png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        SIGNATURE + make_chunk(b"IHDR", ihdr) + make_chunk(b"IDAT", idat) + make_chunk(b"IEND", b"")
    )


def tiny_jpeg(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\x12\x34" + b"\xff\xd9"


@pytest.fixture
def no_decoding(monkeypatch):
    """A tripwire: any attempt to decode pixels fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(Image, "open", refuse)


@pytest.mark.parametrize("make,fmt", [(tiny_png, "png"), (tiny_jpeg, "jpeg")])
def test_50000_by_50000_header_on_a_tiny_file_is_refused_before_decoding(make, fmt, no_decoding):
    data = make(50000, 50000)
    assert len(data) < 200
    with pytest.raises(DecompressionBomb, match="50000x50000"):
        inspect(data, fmt, Settings(), want_faces=True)


def test_a_normal_header_passes_and_reports_size(no_decoding):
    report = inspect(tiny_png(640, 480), "png", Settings(), want_faces=False)
    assert (report.width, report.height) == (640, 480)
    assert report.findings == []


def test_the_pixel_limit_is_a_setting():
    with pytest.raises(DecompressionBomb):
        inspect(tiny_png(2000, 2000), "png", Settings(max_pixels=1_000_000), want_faces=False)


def test_an_empty_image_and_unknown_bytes_are_image_errors():
    with pytest.raises(ImageError, match="empty"):
        inspect(tiny_png(0, 10), "png", Settings(), want_faces=False)
    with pytest.raises(UnsupportedImage):
        inspect(b"%PDF-1.7 not an image", "pdf", Settings(), want_faces=False)
