"""Stripping every real camera file of the metadata corpus: checked by ExifTool, by decoding,
and by searching the output bytes for the input's serials and names.

Each file is stripped twice (normal and size-preserving); ExifTool reads all outputs in one
batch, and decoded pixels are compared with the original's as displayed (orientation applied).
"""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageOps, ImageSequence
from veil.formats import StripOptions, detect, open_image

from tests.conftest import METADATA_CORPUS, require, require_tool

pillow_heif.register_heif_opener()

# What the inventory must find in each corpus file (at least these kinds).
EXPECTED: dict[str, set[str]] = {
    "c2_nikon_z9_c2pa_gps_serial_mpf.jpg": {
        "gps", "serial", "person_names", "thumbnail", "c2pa", "maker_notes", "trailing_data",
        "datetime", "device", "xmp",
    },
    "dn_canon_7d_serial_owner_iptc_adobergb.jpg": {
        "serial", "person_names", "thumbnail", "iptc", "icc_profile", "xmp", "comment", "gps",
    },
    "dn_cmyk_adobe_app14_multi_icc.jpg": {"thumbnail", "icc_profile", "iptc", "xmp"},
    "dn_gif_xmp_comment.gif": {"comment", "xmp"},
    "dn_heic_iphonexr_gps_rot90.heic": {"gps", "device", "maker_notes", "xmp", "icc_profile"},
    "dn_olympus_ep3_serials_preview.jpg": {"serial", "maker_notes", "thumbnail", "device"},
    "dn_png_exif_sample.png": {"person_names", "datetime", "exif", "device"},
    "dn_png_xmp_mwg_regions_names.png": {"person_names", "xmp", "datetime"},
    "dn_samsung_galaxys_gps_rot90.jpg": {"gps", "thumbnail", "device", "maker_notes"},
    "dn_webp_animated_lossy.webp": set(),
    "dn_webp_htc_gps_icc.webp": {"gps", "icc_profile", "device"},
    "es_canon_ixus_owner.jpg": {"person_names", "thumbnail", "maker_notes"},
    "es_iphone11promax_gps.heic": {"gps", "device", "xmp", "icc_profile", "maker_notes"},
    "es_nikon_d70s_gps_serial.jpg": {"gps", "serial", "xmp", "iptc", "maker_notes"},
    "es_nikon_p6000_gps_DSCN0010.jpg": {"gps", "thumbnail", "maker_notes", "xmp"},
    "es_orientation6_rot90.jpg": {"icc_profile", "exif"},
    "es_tiff_artist_icc_colorlcd.tif": {"person_names", "icc_profile", "device", "datetime"},
    "et_google_gps_extendedxmp.jpg": {"gps", "thumbnail", "xmp"},
    "pil_mpo_nintendo3ds_stereo.jpg": {"serial", "thumbnail", "trailing_data", "maker_notes"},
}  # fmt: skip
# Summaries a person reads: the values must be in them.
SUMMARIES = {
    "c2_nikon_z9_c2pa_gps_serial_mpf.jpg": [
        "GPS 40.74 N, 73.99 W",
        "0030079",
        "Andy Parsons",
        "with an EXIF assertion",
        "thumbnail in the C2PA manifest",
        "(2 embedded JPEG images)",
    ],
    "dn_olympus_ep3_serials_preview.jpg": ["serial number B9U505495 (Olympus maker note)"],
    "dn_png_xmp_mwg_regions_names.png": ["face region 'Denise Wood'", "face region 'Daniel Wood'"],
    "dn_canon_7d_serial_owner_iptc_adobergb.jpg": ["by-line 'Peter Bemmann' (IPTC)", "380319450"],
    "es_canon_ixus_owner.jpg": ["camera owner 'Tom Rowan and Sarah Clifton' (Canon maker note)"],
    "pil_mpo_nintendo3ds_stereo.jpg": [
        "0x575bbdf3 (Nintendo maker note)",
        "camera Nintendo 3DS (appended image 2 EXIF)",
    ],
    "dn_heic_iphonexr_gps_rot90.heic": ["GPS 38.70 N, 9.21 W"],
}
# After stripping, only these kinds may remain (the kept ICC profile; a minimal EXIF that
# holds nothing but Orientation).
ALLOWED_AFTER = {"icc_profile", "exif"}

# ExifTool groups and tag names that must not survive.
FORBIDDEN_GROUPS = re.compile(
    r"^(GPS|XMP|IPTC|Photoshop|ExifIFD|IFD1|InteropIFD|PreviewIFD|SubIFD|MakerNotes|Nikon|Canon|"
    r"Olympus|Apple|Nintendo|Samsung|MPF|MPImage|JUMBF|CBOR|JSON|C2PA|Trailer|Jpeg2000)"
)
FORBIDDEN_TAGS = re.compile(
    r"GPS|Serial|Owner|^Artist$|^Creator$|By-line|RegionName|PersonDisplayName|Copyright|^Rights$|"
    r"Author|Thumbnail|Preview|MPImage|C2pa|Jumbf|Comment|^Make$|^Model$|^Software$|HostComputer|"
    r"^ModifyDate$|^DateTimeOriginal$|^CreateDate$|Date(create|modify)|ImageDescription|Lens"
)
IGNORED_GROUPS = re.compile(r"^(ExifTool|System|File|Composite|ICC)")


def corpus_files() -> list[Path]:
    if not METADATA_CORPUS.is_dir():
        return []
    return sorted(p for p in METADATA_CORPUS.iterdir() if p.suffix != ".md")


FILES = corpus_files()
NAMES = [p.name for p in FILES]


@pytest.fixture(scope="module")
def stripped(tmp_path_factory) -> Path:
    """Every corpus file stripped normally and at the same length, written to a directory."""
    require(bool(FILES), f"{METADATA_CORPUS} is absent")
    out = tmp_path_factory.mktemp("stripped")
    for path in FILES:
        image = open_image(path.read_bytes())
        (out / path.name).write_bytes(image.strip(StripOptions()).data)
        same = image.strip(StripOptions(size_preserving=True)).data
        (out / f"same-length-{path.name}").write_bytes(same)
    return out


@pytest.fixture(scope="module")
def exiftool_report(stripped: Path) -> dict[str, dict]:
    """ExifTool's `-a -G1 -u` view of every output, read in one batch."""
    exiftool = require_tool("exiftool")
    result = subprocess.run(
        [exiftool, "-j", "-a", "-G1", "-u", "-q", str(stripped)],
        capture_output=True,
        timeout=120,
    )
    return {Path(e["SourceFile"]).name: e for e in json.loads(result.stdout)}


def forbidden_tags(entry: dict) -> list[str]:
    found = []
    for key, value in entry.items():
        group, _, tag = key.partition(":")
        if not tag or IGNORED_GROUPS.match(group):
            continue
        if FORBIDDEN_GROUPS.match(group) or FORBIDDEN_TAGS.search(tag):
            found.append(f"{key}={str(value)[:40]}")
    return found


@pytest.mark.parametrize("name", NAMES)
def test_inventory_finds_what_the_file_carries(name):
    image = open_image((METADATA_CORPUS / name).read_bytes())
    findings = image.findings()
    kinds = {f.kind for f in findings}
    assert EXPECTED[name] <= kinds, f"missing {EXPECTED[name] - kinds}"
    text = "\n".join(f.summary for f in findings)
    for expected in SUMMARIES.get(name, []):
        assert expected in text
    assert all(len(f.summary) < 200 and f.summary.isprintable() for f in findings)


@pytest.mark.parametrize("prefix", ["", "same-length-"])
@pytest.mark.parametrize("name", NAMES)
def test_exiftool_finds_nothing_sensitive_after_stripping(exiftool_report, name, prefix):
    entry = exiftool_report[prefix + name]
    assert not forbidden_tags(entry), forbidden_tags(entry)
    assert "Warning" not in entry.get("ExifTool:Warning", "")
    assert "ExifTool:Error" not in entry


@pytest.mark.parametrize("name", NAMES)
def test_sensitive_strings_are_gone_from_the_bytes(name, stripped):
    """The grep check of metadata.md section 7: serials and names, wherever they were."""
    exiftool = require_tool("exiftool")
    result = subprocess.run(
        [exiftool, "-j", "-a", "-G1", "-u", "-q", str(METADATA_CORPUS / name)],
        capture_output=True,
        timeout=60,
    )
    (entry,) = json.loads(result.stdout)
    secrets = {
        str(v)
        for k, v in entry.items()
        if re.search(r"Serial|Owner|Artist|:Creator$|By-line|RegionName|AuthorName|Dccreator", k)
        and len(str(v).strip()) >= 5
    }
    for prefix in ("", "same-length-"):
        data = (stripped / (prefix + name)).read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} left in {prefix}{name}"
            assert secret.encode("utf-16-be") not in data


@functools.cache
def displayed_frames(data: bytes) -> tuple[tuple[tuple[int, int], str, bytes, int], ...]:
    """Every frame as shown: orientation applied, with its duration (first image of an MPO)."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for frame in ImageSequence.Iterator(image):
        shown = ImageOps.exif_transpose(frame.copy())
        frames.append((shown.size, shown.mode, shown.tobytes(), frame.info.get("duration", 0)))
        if image.format == "MPO":
            break
    return tuple(frames)


@pytest.mark.parametrize("prefix", ["", "same-length-"])
@pytest.mark.parametrize("name", NAMES)
def test_pixels_and_orientation_are_unchanged(stripped, name, prefix):
    original = (METADATA_CORPUS / name).read_bytes()
    output = (stripped / (prefix + name)).read_bytes()
    before, after = displayed_frames(original), displayed_frames(output)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert a[0] == b[0], "displayed size (orientation) changed"
        assert a[1:] == b[1:], "decoded pixels or frame timing changed"
    assert open_image(output).orientation() == open_image(original).orientation()


@pytest.mark.parametrize("name", NAMES)
def test_size_preserving_output_has_the_exact_length(stripped, name):
    original = (METADATA_CORPUS / name).read_bytes()
    output = (stripped / f"same-length-{name}").read_bytes()
    assert len(output) == len(original)
    assert detect(output) == detect(original)


@pytest.mark.parametrize("prefix", ["", "same-length-"])
@pytest.mark.parametrize("name", NAMES)
def test_our_own_inventory_of_the_output_is_clean(stripped, name, prefix):
    output = (stripped / (prefix + name)).read_bytes()
    kinds = {f.kind for f in open_image(output).findings()}
    assert kinds <= ALLOWED_AFTER, kinds - ALLOWED_AFTER


@pytest.mark.parametrize("name", NAMES)
def test_stripping_is_idempotent_and_drops_icc_on_request(stripped, name):
    once = (stripped / name).read_bytes()
    assert open_image(once).strip(StripOptions()).data == once
    no_icc = open_image((METADATA_CORPUS / name).read_bytes()).strip(StripOptions(keep_icc=False))
    assert "icc_profile" not in {f.kind for f in open_image(no_icc.data).findings()}
    assert not no_icc.reencoded


def test_cmyk_keeps_its_adobe_segment_and_colours(stripped):
    name = "dn_cmyk_adobe_app14_multi_icc.jpg"
    output = (stripped / name).read_bytes()
    segments = open_image(output).segments
    assert [output[s.start + 4 : s.start + 9] for s in segments if s.marker == 0xEE] == [b"Adobe"]
    assert displayed_frames(output) == displayed_frames((METADATA_CORPUS / name).read_bytes())


def test_mpo_and_trailer_are_cut_at_the_primary_image(stripped):
    output = (stripped / "c2_nikon_z9_c2pa_gps_serial_mpf.jpg").read_bytes()
    assert output.count(b"\xff\xd8") == 1
    assert output.endswith(b"\xff\xd9")
    assert b"c2pa" not in output and b"jumb" not in output


def test_heif_keeps_rotation_and_icc(stripped):
    for name in ("dn_heic_iphonexr_gps_rot90.heic", "es_iphone11promax_gps.heic"):
        original = open_image((METADATA_CORPUS / name).read_bytes())
        output = open_image((stripped / name).read_bytes())
        assert output.orientation() == original.orientation()
        assert [f.kind for f in output.findings()] == ["icc_profile"]
        assert len(output.data) < len(original.data)  # item bytes were cut, not zeroed
    assert (
        open_image((METADATA_CORPUS / "dn_heic_iphonexr_gps_rot90.heic").read_bytes()).orientation()
        == 6
    )
