"""Broken and hostile files: every failure is an ImageError with a message, never a crash,
and no parser follows a length, count or offset past what the bytes hold."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from veil.formats import ImageError, MalformedImage, StripOptions, detect, open_image
from veil.formats import png as png_module
from veil.formats.png import make_chunk

from tests.conftest import METADATA_CORPUS, require

pillow_heif.register_heif_opener()


def small(fmt: str) -> bytes:
    image = Image.new("RGB", (16, 12), (10, 200, 30))
    exif = Image.Exif()
    exif[0x013B] = "Jane"
    exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    buf = io.BytesIO()
    if fmt == "GIF":
        image.convert("P").save(buf, fmt, comment=b"hi", save_all=True, append_images=[image])
    elif fmt == "HEIF":
        image.save(buf, fmt, exif=exif.tobytes(), quality=50)
    else:
        image.save(buf, fmt, exif=exif.tobytes())
    return buf.getvalue()


SAMPLES = {fmt: small(fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "HEIF", "BMP")}


def exercise(data: bytes) -> None:
    """Everything the proxy does with an image; only ImageError may come out."""
    try:
        image = open_image(data)
        image.dimensions()
        image.orientation()
        image.findings()
        image.strip(StripOptions())
        image.strip(StripOptions(size_preserving=True, keep_icc=False))
    except ImageError as exc:
        assert str(exc)


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_every_truncation_is_refused_or_handled(fmt):
    data = SAMPLES[fmt]
    for cut in range(len(data)):
        exercise(data[:cut])


def test_truncated_corpus_files_never_crash():
    require(METADATA_CORPUS.is_dir(), "metadata corpus absent")
    for path in sorted(METADATA_CORPUS.iterdir()):
        if path.suffix == ".md":
            continue
        data = path.read_bytes()
        for cut in range(0, len(data), max(1, len(data) // 40)):
            exercise(data[:cut])
        if detect(data) == "jpeg":  # cut inside the primary image's scan data
            with pytest.raises(MalformedImage):
                open_image(data[: open_image(data).image_end - 100])


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_fuzzed_files_only_raise_image_errors(fmt, data):
    sample = bytearray(SAMPLES[fmt])
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(sample) - 1))
        action = data.draw(st.sampled_from(["flip", "ff", "zero", "insert", "delete"]))
        if action == "flip":
            sample[pos] ^= data.draw(st.integers(1, 255))
        elif action == "ff":
            sample[pos : pos + 4] = b"\xff\xff\xff\xff"
        elif action == "zero":
            sample[pos : pos + 4] = b"\x00\x00\x00\x00"
        elif action == "insert":
            sample[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            del sample[pos : pos + data.draw(st.integers(1, 16))]
    exercise(bytes(sample))


def test_jpeg_segment_length_past_the_end():
    data = SAMPLES["JPEG"]
    bad = data[:2] + b"\xff\xe1\xff\xf0Exif\x00\x00" + data[2:40]
    with pytest.raises(MalformedImage, match="past the end"):
        open_image(bad)


def test_jpeg_without_eoi_is_refused():
    with pytest.raises(MalformedImage, match=r"EOI|truncated"):
        open_image(SAMPLES["JPEG"][:-2])


def test_png_chunk_with_a_bad_crc_is_refused():
    data = bytearray(SAMPLES["PNG"])
    idat = data.find(b"IDAT")
    data[idat + 6] ^= 0xFF
    with pytest.raises(MalformedImage, match="bad CRC"):
        open_image(bytes(data))


def test_png_chunk_length_past_the_end_is_refused():
    data = SAMPLES["PNG"]
    iend = data.rfind(b"IEND") - 4
    bad = data[:iend] + struct.pack(">I", 2**30) + b"tEXt" + b"x" * 20
    with pytest.raises(MalformedImage, match="past the end"):
        open_image(bad)


def test_webp_riff_size_past_the_end_is_refused():
    data = SAMPLES["WEBP"]
    bad = data[:4] + struct.pack("<I", len(data) * 2) + data[8:]
    with pytest.raises(MalformedImage, match="past the end"):
        open_image(bad)


def test_gif_sub_block_past_the_end_is_refused():
    data = SAMPLES["GIF"]
    with pytest.raises(MalformedImage):
        open_image(data[:-1] + b"\x21\xfe\xff" + b"x" * 10)


def test_heif_box_past_the_end_is_refused():
    data = SAMPLES["HEIF"]
    with pytest.raises(MalformedImage, match="past the end"):
        open_image(data[:-100])


def test_tiff_strip_past_the_end_is_refused():
    data = bytearray(SAMPLES["TIFF"])
    image = open_image(bytes(data))
    entry = image.pages[0][273]
    struct.pack_into(image.tiff.order + "I", data, entry.offset, len(data) + 1000)
    with pytest.raises(MalformedImage):
        open_image(bytes(data)).strip(StripOptions())


def test_exif_directory_loop_and_huge_counts_are_bounded():
    # IFD0 whose next-IFD pointer points to itself, and an IFD claiming 65535 entries.
    loop = b"MM\x00*\x00\x00\x00\x08" + b"\x00\x00" + b"\x00\x00\x00\x08"
    huge = b"MM\x00*\x00\x00\x00\x08" + b"\xff\xff" + b"\x00" * 40
    for block in (loop, huge):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=b"Exif\x00\x00" + block)
        findings = open_image(buf.getvalue()).findings()
        assert "exif" in {f.kind for f in findings}
        exercise(buf.getvalue())


def test_xmp_entity_bomb_is_not_expanded():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            b'<!ENTITY %c "&%c;&%c;&%c;&%c;&%c;&%c;&%c;&%c;">' % ((98 + i,) + (97 + i,) * 8)
            for i in range(9)
        )
        + b']><x:xmpmeta xmlns:x="adobe:ns:meta/">&j;</x:xmpmeta>'
    )
    data = SAMPLES["PNG"]
    iend = data.rfind(b"IEND") - 4
    png = (
        data[:iend]
        + make_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + bomb)
        + data[iend:]
    )
    summaries = [f.summary for f in open_image(png).findings()]
    assert any("DOCTYPE" in s for s in summaries)


def test_compressed_text_bomb_is_read_only_up_to_a_bound():
    bomb = zlib.compress(b"\x00" * (32 * 2**20), 1)  # 32 MB of text in a few KB
    assert len(png_module._inflate(bomb, png_module.MAX_TEXT)) == png_module.MAX_TEXT
    data = SAMPLES["PNG"]
    iend = data.rfind(b"IEND") - 4
    png = data[:iend] + make_chunk(b"zTXt", b"Comment\x00\x00" + bomb) + data[iend:]
    assert "comment" in {f.kind for f in open_image(png).findings()}
    assert b"zTXt" not in open_image(png).strip(StripOptions()).data


def test_metadata_text_is_never_echoed_with_control_characters():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", comment=b"\x1b[31mred\x07<script>\r\nx")
    (finding,) = [f for f in open_image(buf.getvalue()).findings() if f.kind == "comment"]
    assert finding.summary.isprintable()
    assert "\x1b" not in finding.summary and "\n" not in finding.summary


def test_many_compressed_bombs_share_one_decompression_budget():
    bomb = zlib.compress(b"\x00" * (9 * 2**20), 1)
    data = SAMPLES["PNG"]
    iend = data.rfind(b"IEND") - 4
    chunks = b"".join(make_chunk(b"zTXt", b"Comment%d\x00\x00" % i + bomb) for i in range(50))
    png = data[:iend] + chunks + data[iend:]
    summaries = [f.summary for f in open_image(png).findings()]
    assert sum("could not be decompressed" in s for s in summaries) >= 45
