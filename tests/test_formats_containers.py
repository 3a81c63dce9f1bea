"""Per-format container surgery on synthetic images: every orientation, progressive scans,
APNG and animated GIF/WebP frames, transparency, multi-page TIFF, HEIF thumbnails and the
re-encoding fallback, BMP profiles, and the size-preserving filler of every length."""

from __future__ import annotations

import io
import struct
import zlib

import pillow_heif
import pytest
from PIL import Image, ImageOps, ImageSequence, TiffImagePlugin
from veil.formats import StripOptions, open_image
from veil.formats import jpeg as jpeg_format
from veil.formats.png import make_chunk
from veil.formats.webp import chunk_bytes

pillow_heif.register_heif_opener()

SAME = StripOptions(size_preserving=True)
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>'
    b"<rdf:Seq><rdf:li>Jane Secret</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF>"
    b"</x:xmpmeta>"
)


def picture(size=(48, 32), mode="RGB") -> Image.Image:
    """An asymmetric test picture, so that any rotation or flip changes its pixels."""
    image = Image.new(mode, size)
    w, h = size
    image.putdata(
        [((x * 5) % 256, (y * 7) % 256, (x * y) % 256) for y in range(h) for x in range(w)]
    )
    return image


def exif_with(orientation: int = 1, gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretMake"
    exif[0x013B] = "Jane Secret"
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 36.0), 3: "E", 4: (2.0, 17.0, 24.0)})
    return exif.tobytes()


def shown(data: bytes) -> list[tuple]:
    image = Image.open(io.BytesIO(data))
    frames = []
    for frame in ImageSequence.Iterator(image):
        f = ImageOps.exif_transpose(frame.copy())
        frames.append((f.size, f.mode, f.tobytes(), frame.info.get("duration")))
    return frames


def kinds(data: bytes) -> set[str]:
    return {f.kind for f in open_image(data).findings()}


def assert_clean_and_same(data: bytes, allowed=frozenset({"exif", "icc_profile"})) -> bytes:
    for options in (StripOptions(), SAME):
        out = open_image(data).strip(options).data
        assert shown(out) == shown(data)
        assert kinds(out) <= allowed
        assert b"Jane Secret" not in out and b"SecretMake" not in out
        if options.size_preserving:
            assert len(out) == len(data)
    return open_image(data).strip(StripOptions()).data


# -- JPEG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_every_orientation_is_displayed_the_same(orientation):
    buf = io.BytesIO()
    picture().save(buf, "JPEG", exif=exif_with(orientation), comment=b"Jane Secret")
    data = buf.getvalue()
    assert {"gps", "person_names", "comment"} <= kinds(data)
    out = assert_clean_and_same(data)
    assert open_image(out).orientation() == orientation


def test_jpeg_progressive_scans_are_copied_and_segments_between_them_dropped():
    buf = io.BytesIO()
    picture((64, 64)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    sos = data.find(b"\xff\xda")
    second_scan = data.find(b"\xff\xc4", sos)  # a table between scans
    hidden = b"\xff\xed" + struct.pack(">H", 2 + 11) + b"Jane Secret"
    data = data[:second_scan] + hidden + data[second_scan:]
    assert sum(s.marker == 0xDA for s in open_image(data).segments) > 1
    out = assert_clean_and_same(data)
    assert sum(s.marker == 0xDA for s in open_image(out).segments) > 1


@pytest.mark.parametrize("restart", [0, 1, 7])
def test_jpeg_scan_end_skips_restart_markers_and_fill_bytes(restart):
    image = Image.radial_gradient("L").convert("RGB").resize((512, 384))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, restart_marker_blocks=restart, comment=b"hidden")
    data = buf.getvalue()
    eoi = data.rindex(b"\xff\xd9")
    padded = data[:eoi] + b"\xff\xff\xff" + data[eoi:]  # fill bytes before EOI are legal
    for source in (data, padded):
        out = open_image(source).strip(StripOptions()).data
        assert b"hidden" not in out
        assert Image.open(io.BytesIO(out)).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_jpeg_segment_after_the_scan_is_found_and_dropped():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    eoi = data.rindex(b"\xff\xd9")
    comment = b"secret after the scan"
    hidden = data[:eoi] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[eoi:]
    out = open_image(hidden).strip(StripOptions()).data
    assert comment not in out
    assert Image.open(io.BytesIO(out)).tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_jpeg_jfif_thumbnail_and_trailer_go():
    buf = io.BytesIO()
    picture().save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    assert data[6:11] == b"JFIF\x00"
    thumb = bytes([2, 1]) + bytes(2 * 1 * 3)
    length = struct.unpack_from(">H", data, 4)[0]
    data[4:6] = struct.pack(">H", length + len(thumb) - 2)
    data[18:20] = b""  # the 0x0 thumbnail size...
    data[18:18] = thumb  # ...becomes a 2x1 thumbnail
    data += b"Jane Secret appended"
    assert {"thumbnail", "trailing_data"} <= kinds(bytes(data))
    out = assert_clean_and_same(bytes(data), allowed=frozenset())
    assert out.endswith(b"\xff\xd9")


@pytest.mark.parametrize("n", [*range(0, 12), 65535, 65536, 65537, 65538, 65539, 131075])
def test_jpeg_filler_is_exactly_n_bytes_a_decoder_skips(n):
    buf = io.BytesIO()
    picture().save(buf, "JPEG")
    data = buf.getvalue()
    filler = jpeg_format._filler(n)
    assert len(filler) == n
    padded = data[:20] + filler + data[20:]  # after JFIF APP0
    assert shown(padded) == shown(data)
    assert open_image(padded).findings() == []


def test_jpeg_cmyk_keeps_app14():
    buf = io.BytesIO()
    picture().convert("CMYK").save(buf, "JPEG", exif=exif_with())
    out = assert_clean_and_same(buf.getvalue())
    assert b"Adobe" in out


# -- PNG --------------------------------------------------------------------------------------


def test_png_keeps_transparency_and_apng_frames_and_drops_text():
    frames = [picture().convert("RGBA") for _ in range(3)]
    for i, f in enumerate(frames):
        f.putpixel((i, i), (0, 0, 0, 0))
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=[40, 50, 60])
    data = buf.getvalue()
    iend = data.rfind(b"IEND") - 4
    extra = (
        make_chunk(b"tEXt", b"Author\x00Jane Secret")
        + make_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"Jane Secret"))
        + make_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP)
        + make_chunk(b"caBX", b"c2pa manifest")
        + make_chunk(b"prVt", b"Jane Secret")
        + make_chunk(b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5))
    )
    data = data[:iend] + extra + data[iend:] + b"Jane Secret after IEND"
    found = kinds(data)
    assert {"person_names", "comment", "c2pa", "datetime", "other_metadata", "xmp"} <= found
    assert "trailing_data" in found
    out = assert_clean_and_same(data, allowed=frozenset())
    assert b"acTL" in out and b"fdAT" in out


def test_png_palette_transparency_survives():
    image = picture().convert("P")
    buf = io.BytesIO()
    image.save(buf, "PNG", transparency=3)
    out = assert_clean_and_same(buf.getvalue(), allowed=frozenset())
    assert b"tRNS" in out


def test_png_orientation_from_exif_is_kept_as_minimal_exif():
    buf = io.BytesIO()
    picture().save(buf, "PNG", exif=exif_with(6))
    out = assert_clean_and_same(buf.getvalue())
    assert open_image(out).orientation() == 6


# -- WebP -------------------------------------------------------------------------------------


def test_webp_animated_with_metadata_keeps_frames_and_fixes_flags():
    frames = [picture() for _ in range(3)]
    for i, f in enumerate(frames):
        f.putpixel((i, 0), (255, 255, 255))
    buf = io.BytesIO()
    frames[0].save(
        buf, "WEBP", save_all=True, append_images=frames[1:], duration=[30, 40, 50],
        lossless=True, exif=exif_with(1), xmp=XMP, loop=2,
    )  # fmt: skip
    data = buf.getvalue()
    data = data[: 12 + 18] + chunk_bytes(b"ZZZZ", b"Jane Secret") + data[12 + 18 :]
    data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    assert {"gps", "xmp", "person_names", "other_metadata"} <= kinds(data)
    out = assert_clean_and_same(data, allowed=frozenset())
    flags = out[20]
    assert flags & 0x02 and not flags & 0x0C  # animation on; EXIF and XMP off


def test_webp_rotated_photo_keeps_orientation():
    buf = io.BytesIO()
    picture().save(buf, "WEBP", quality=90, exif=exif_with(8), icc_profile=b"")
    out = assert_clean_and_same(buf.getvalue())
    assert open_image(out).orientation() == 8


# -- GIF --------------------------------------------------------------------------------------


def test_gif_keeps_frames_timing_and_loop_and_drops_the_rest():
    frames = [picture().convert("P") for _ in range(3)]
    for i, f in enumerate(frames):
        f.putpixel((i, i), i + 1)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=[70, 80, 90],
                   loop=3, comment=b"Jane Secret")  # fmt: skip
    data = buf.getvalue()
    app = b"\x21\xff\x0bVENDORAPP10" + b"\x0bJane Secret" + b"\x00"
    data = data[:-1] + app + b";" + b"Jane Secret after the trailer"
    assert {"comment", "other_metadata", "trailing_data"} <= kinds(data)
    out = assert_clean_and_same(data, allowed=frozenset())
    assert Image.open(io.BytesIO(out)).info.get("loop") == 3
    assert out.endswith(b";")


# -- TIFF -------------------------------------------------------------------------------------


def test_tiff_keeps_pages_drops_identity_tags_and_thumbnail_pages():
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[315] = "Jane Secret"  # Artist
    info[271] = "SecretMake"
    info[0xC62F] = "SN-123456"  # DNG CameraSerialNumber
    info[274] = 6
    pages = [picture(), picture((20, 10))]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", tiffinfo=info, save_all=True, append_images=pages[1:],
                  exif=exif_with(6))  # fmt: skip
    data = buf.getvalue()
    assert {"person_names", "serial", "device"} <= kinds(data)
    out = assert_clean_and_same(data, allowed=frozenset())
    assert b"SN-123456" not in out
    assert open_image(out).orientation() == 6
    assert len(open_image(out).pages) == 2


# -- HEIF -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heic_with_everything() -> bytes:
    buf = io.BytesIO()
    image = picture((64, 48))
    image.save(buf, "HEIF", quality=90, exif=exif_with(1), xmp=XMP, thumbnails=[32])
    return buf.getvalue()


def test_heif_exif_xmp_and_thumbnail_items_are_removed(heic_with_everything):
    data = heic_with_everything
    assert {"gps", "xmp", "thumbnail", "person_names"} <= kinds(data)
    out = open_image(data).strip(StripOptions())
    assert not out.reencoded
    assert {"Exif item", "XMP item", "thumbnail image"} <= set(out.removed)
    assert shown(out.data) == shown(data)
    assert kinds(out.data) <= {"icc_profile"}
    assert len(out.data) < len(data)
    same = open_image(data).strip(SAME).data
    assert len(same) == len(data) and shown(same) == shown(data)
    assert b"Jane Secret" not in out.data + same and b"SecretMake" not in out.data + same


def test_heif_whose_container_cannot_be_rebuilt_is_reencoded_and_says_so(heic_with_everything):
    # A 64-bit meta box header and a moov box: offsets cannot be moved (moov has chunk offsets
    # of its own) and the meta box cannot be rebuilt in place, so surgery is impossible.
    data = heic_with_everything
    image = open_image(data)
    meta = image.meta.box
    assert meta.header == 8
    # The same meta box, its item offsets moved by the 8 bytes the wider header adds.
    same_meta = image._meta_bytes(set(), StripOptions(), lambda off: off + 8)
    assert len(same_meta) == meta.end - meta.start
    wide_meta = struct.pack(">I4sQ", 1, b"meta", len(same_meta) + 8) + same_meta[8:]
    rebuilt = data[: meta.start] + wide_meta + data[meta.end :] + struct.pack(">I4s", 8, b"moov")
    assert shown(rebuilt) == shown(data)
    out = open_image(rebuilt).strip(StripOptions())
    assert out.reencoded
    assert Image.open(io.BytesIO(out.data)).size == (64, 48)
    assert kinds(out.data) <= {"icc_profile"}
    assert b"Jane Secret" not in out.data and b"SecretMake" not in out.data


# -- BMP --------------------------------------------------------------------------------------


def test_bmp_linked_profile_path_goes_and_pixels_stay():
    buf = io.BytesIO()
    picture().save(buf, "BMP")
    data = bytearray(buf.getvalue())
    # Turn the 40-byte header into a V5 header that links a profile by path.
    old_offset = struct.unpack_from("<I", data, 10)[0]
    pixels = data[old_offset:]
    path = b"C:\\Users\\Jane Secret\\calibrated.icc\x00"
    header = bytearray(data[14 : 14 + 40]) + bytes(84)
    header[0:4] = struct.pack("<I", 124)
    header[56:60] = b"KNIL"
    header[112:120] = struct.pack("<II", 124, len(path))
    body = bytes(header) + path
    out_offset = 14 + len(body)
    v5 = b"BM" + struct.pack("<IHHI", out_offset + len(pixels), 0, 0, out_offset) + body + pixels
    assert "other_metadata" in kinds(v5)
    out = open_image(v5).strip(StripOptions()).data
    assert b"Jane Secret" not in out and len(out) == len(v5)
    assert Image.open(io.BytesIO(out)).tobytes() == Image.open(io.BytesIO(v5)).tobytes()


def test_avif_exif_and_xmp_items_are_removed_losslessly():
    buf = io.BytesIO()
    picture((64, 48)).save(buf, "AVIF", quality=80, exif=exif_with(1), xmp=XMP)
    data = buf.getvalue()
    assert open_image(data).name == "avif"
    assert {"gps", "xmp", "person_names"} <= kinds(data)
    out = assert_clean_and_same(data)
    assert not open_image(data).strip(StripOptions()).reencoded
    assert len(out) < len(data)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_avif_irot_and_imir_are_kept_and_read_as_the_exif_orientation(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    picture().save(buf, "AVIF", quality=90, exif=exif.tobytes())  # written as irot/imir
    data = buf.getvalue()
    assert open_image(data).orientation() == orientation
    out = assert_clean_and_same(data)
    assert open_image(out).orientation() == orientation


def test_jpeg_bytes_between_segments_are_skipped_reported_and_dropped():
    buf = io.BytesIO()
    picture().save(buf, "JPEG")
    data = buf.getvalue()
    dqt = data.find(b"\xff\xdb")
    hidden = data[:dqt] + b"Jane Secret" + data[dqt:]
    assert "other_metadata" in kinds(hidden)
    out = assert_clean_and_same(hidden, allowed=frozenset())
    assert out == open_image(data).strip(StripOptions()).data


def test_nothing_rides_along_inside_the_structures_that_are_kept():
    secret = b"Jane Secret"
    # JPEG: an Adobe APP14 segment longer than its 12 standard bytes.
    buf = io.BytesIO()
    picture().convert("CMYK").save(buf, "JPEG")
    jpeg = buf.getvalue()
    at = jpeg.find(b"\xff\xee\x00\x0eAdobe")
    assert at > 0
    jpeg = (
        jpeg[:at]
        + b"\xff\xee\x00"
        + bytes([14 + len(secret)])
        + jpeg[at + 4 : at + 16]
        + secret
        + jpeg[at + 16 :]
    )
    # PNG: a pHYs chunk (9 bytes by specification) carrying more.
    buf = io.BytesIO()
    picture().save(buf, "PNG", dpi=(72, 72))
    png = buf.getvalue()
    phys = png.find(b"pHYs") - 4
    png = png[:phys] + make_chunk(b"pHYs", png[phys + 8 : phys + 17] + secret) + png[phys + 21 :]
    # GIF: a graphic control extension with a second sub-block.
    buf = io.BytesIO()
    picture().convert("P").save(buf, "GIF", duration=50, transparency=0)
    gif = buf.getvalue()
    gce = gif.find(b"\x21\xf9\x04")
    gif = gif[: gce + 7] + bytes([len(secret)]) + secret + gif[gce + 7 :]
    for data in (jpeg, png, gif):
        out = assert_clean_and_same(data, allowed=frozenset())
        assert secret not in out
