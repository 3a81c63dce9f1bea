"""The inventory of an EXIF block: where, on which device, by whom, when, with which thumbnail.

Used for every container that carries EXIF (JPEG APP1, PNG eXIf, WebP EXIF, HEIF Exif items).
Parsing is lenient about the parts that cameras get wrong (maker notes, IFD1 pointers) and
reports an unreadable block as such rather than failing the whole image: the block is removed
by stripping anyway.
"""

from __future__ import annotations

import struct

from veil.findings import Finding
from veil.formats import makernote
from veil.formats.base import MalformedImage
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import Entry, TiffData, printable

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ORIENTATION = 0x0112
MAKE, MODEL, SOFTWARE, HOST = 0x010F, 0x0110, 0x0131, 0x013C
DESCRIPTION, ARTIST, COPYRIGHT, DATETIME = 0x010E, 0x013B, 0x8298, 0x0132
XP_COMMENT, XP_AUTHOR = 0x9C9C, 0x9C9D
CAMERA_SERIAL = 0xC62F  # DNG CameraSerialNumber, in IFD0
DATETIME_ORIGINAL, DATETIME_DIGITIZED = 0x9003, 0x9004
MAKER_NOTE, USER_COMMENT = 0x927C, 0x9286
OWNER, BODY_SERIAL, LENS_MAKE, LENS_MODEL, LENS_SERIAL = 0xA430, 0xA431, 0xA433, 0xA434, 0xA435
UNIQUE_ID = 0xA420
THUMB_OFFSET, THUMB_LENGTH = 0x0201, 0x0202


def exif_block(payload: bytes) -> bytes:
    """The TIFF structure inside an EXIF payload, with or without the `Exif\\0\\0` prefix."""
    if payload.startswith(b"Exif\x00\x00"):
        return payload[6:]
    if payload.startswith(b"Exif\x00"):
        return payload[5:]
    return payload


def orientation(block: bytes) -> int:
    """The Orientation tag of IFD0 (1..8), 1 when absent or unreadable."""
    try:
        tiff = TiffData(exif_block(block))
        ifd0, _ = tiff.ifd(tiff.first_ifd())
        value = tiff.int(ifd0.get(ORIENTATION), 1)
    except (MalformedImage, struct.error):
        return 1
    return value if 1 <= value <= 8 else 1


def findings(payload: bytes, where: str = "EXIF") -> list[Finding]:
    inv = Inventory()
    block = exif_block(payload)
    turn = orientation(block)
    if block == minimal(turn):
        inv.add("exif", f"{where} block holding only the orientation ({turn})")
        return inv.findings()
    inv.add("exif", f"{where} block ({size_text(len(block))})")
    try:
        _inventory(TiffData(block), inv, where)
    except (MalformedImage, struct.error) as exc:
        inv.add("other_metadata", f"{where} block partly unreadable ({exc})")
    return inv.findings()


def _inventory(tiff: TiffData, inv: Inventory, where: str) -> None:
    ifd0, next_ifd = tiff.ifd(tiff.first_ifd())
    ifd_findings(tiff, ifd0, inv, where)
    if next_ifd:
        _thumbnail(tiff, next_ifd, inv, where)


def ifd_findings(tiff: TiffData, ifd0: dict[int, Entry], inv: Inventory, where: str) -> None:
    """Findings of an IFD0 and the Exif, GPS and maker-note directories it points to."""
    exif = tiff.sub_ifd(ifd0, EXIF_IFD)
    gps = tiff.sub_ifd(ifd0, GPS_IFD)
    _device(tiff, ifd0, exif, inv, where)
    _people(tiff, ifd0, exif, inv, where)
    _dates(tiff, ifd0, exif, inv, where)
    _serials(tiff, ifd0, exif, inv, where)
    _comments(tiff, ifd0, exif, inv, where)
    if gps:
        inv.add("gps", gps_summary(tiff, gps, where))
    note = exif.get(MAKER_NOTE)
    if note is not None:
        make = tiff.text(ifd0.get(MAKE))
        for kind, summary in makernote.findings(tiff, note, make):
            inv.add(kind, summary)


def _device(tiff: TiffData, ifd0: dict, exif: dict, inv: Inventory, where: str) -> None:
    make, model = tiff.text(ifd0.get(MAKE)), tiff.text(ifd0.get(MODEL))
    camera = model if make and model.lower().startswith(make.lower()) else f"{make} {model}"
    if camera.strip():
        inv.add("device", f"camera {camera.strip()} ({where})")
    for tag, label in ((SOFTWARE, "software"), (HOST, "computer")):
        if value := tiff.text(ifd0.get(tag)):
            inv.add("device", f"{label} {value} ({where})")
    lens = " ".join(
        v for v in (tiff.text(exif.get(LENS_MAKE)), tiff.text(exif.get(LENS_MODEL))) if v
    )
    if lens:
        inv.add("device", f"lens {lens} ({where})")


def _people(tiff: TiffData, ifd0: dict, exif: dict, inv: Inventory, where: str) -> None:
    for ifd, tag, label in (
        (ifd0, ARTIST, "artist"),
        (ifd0, COPYRIGHT, "copyright"),
        (exif, OWNER, "camera owner"),
    ):
        if value := tiff.text(ifd.get(tag)):
            inv.add("person_names", f"{label} {value!r} ({where})")
    if author := _ucs2(tiff, ifd0.get(XP_AUTHOR)):
        inv.add("person_names", f"author {author!r} ({where})")


def _dates(tiff: TiffData, ifd0: dict, exif: dict, inv: Inventory, where: str) -> None:
    for ifd, tag, label in (
        (exif, DATETIME_ORIGINAL, "taken"),
        (exif, DATETIME_DIGITIZED, "digitized"),
        (ifd0, DATETIME, "modified"),
    ):
        if value := tiff.text(ifd.get(tag)):
            inv.add("datetime", f"{label} {value} ({where})")
            return


def _serials(tiff: TiffData, ifd0: dict, exif: dict, inv: Inventory, where: str) -> None:
    for ifd, tag, label in (
        (exif, BODY_SERIAL, "serial number"),
        (exif, LENS_SERIAL, "lens serial number"),
        (ifd0, CAMERA_SERIAL, "camera serial number"),
    ):
        if value := tiff.text(ifd.get(tag)):
            inv.add("serial", f"{label} {value} ({where})")
    if value := tiff.text(exif.get(UNIQUE_ID)):
        inv.add("other_metadata", f"image unique ID {value} ({where})")


def _comments(tiff: TiffData, ifd0: dict, exif: dict, inv: Inventory, where: str) -> None:
    if value := tiff.text(ifd0.get(DESCRIPTION)):
        inv.add("comment", f"description {value!r} ({where})")
    user = exif.get(USER_COMMENT)
    if user is not None:
        raw = tiff.raw(user)
        charset, text = raw[:8], raw[8:]
        if charset.startswith(b"UNICODE"):
            value = printable(
                text.decode("utf-16-be" if tiff.order == ">" else "utf-16-le", "replace").encode()
            )
        else:
            value = printable(text)
        if value:
            inv.add("comment", f"user comment {value!r} ({where})")
    if value := _ucs2(tiff, ifd0.get(XP_COMMENT)):
        inv.add("comment", f"comment {value!r} ({where})")


def _ucs2(tiff: TiffData, entry: Entry | None) -> str:
    if entry is None:
        return ""
    return printable(tiff.raw(entry).decode("utf-16-le", "replace").encode())


def _thumbnail(tiff: TiffData, offset: int, inv: Inventory, where: str) -> None:
    try:
        ifd1, _ = tiff.ifd(offset)
    except (MalformedImage, struct.error):
        inv.add("thumbnail", f"thumbnail directory (IFD1, unreadable) ({where})")
        return
    start, length = tiff.int(ifd1.get(THUMB_OFFSET)), tiff.int(ifd1.get(THUMB_LENGTH))
    if length > 0:
        jpeg = tiff.data[tiff.base + start : tiff.base + start + length]
        inv.add(
            "thumbnail", f"thumbnail {embedded_jpeg_size(jpeg)}{size_text(length)} (IFD1, {where})"
        )
    elif 0x0111 in ifd1:
        inv.add("thumbnail", f"uncompressed thumbnail (IFD1, {where})")


def embedded_jpeg_size(jpeg: bytes) -> str:
    """'160x120 JPEG, ' for an embedded JPEG whose frame header can be found, else ''."""
    pos = 2
    while pos + 9 < len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3) and pos + 9 <= len(jpeg):
            h, w = struct.unpack_from(">HH", jpeg, pos + 5)
            return f"{w}x{h} JPEG, "
        if marker == 0xDA or length < 2:
            break
        pos += 2 + length
    return ""


def gps_summary(tiff: TiffData, gps: dict[int, Entry], where: str) -> str:
    lat, lon = _coordinate(tiff, gps, 1, 2), _coordinate(tiff, gps, 3, 4)
    if lat is None or lon is None:
        return f"GPS tags without a position ({where})"
    lat_ref, lon_ref = ("N" if lat[1] != "S" else "S"), ("E" if lon[1] != "W" else "W")
    return f"GPS {lat[0]:.2f} {lat_ref}, {lon[0]:.2f} {lon_ref} ({where})"


def _coordinate(tiff: TiffData, gps: dict, ref_tag: int, tag: int) -> tuple[float, str] | None:
    entry = gps.get(tag)
    if entry is None:
        return None
    parts = [*tiff.rationals(entry), 0.0, 0.0, 0.0]
    value = parts[0] + parts[1] / 60 + parts[2] / 3600
    return value, tiff.text(gps.get(ref_tag)).upper()[:1]


def minimal(orientation_value: int) -> bytes:
    """A TIFF block holding only IFD0 Orientation: keeps a photo upright and says nothing else."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", ORIENTATION, 3, 1, orientation_value, 0)
    return b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
