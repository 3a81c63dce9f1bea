"""Maker notes: the vendor's private EXIF directory, where body and lens serials hide.

Layouts differ per vendor (a header, then an IFD whose offsets count from the TIFF header, from
the maker note itself, or from an embedded TIFF header). Only the few vendors whose serial and
preview tags are known are read, best effort: any maker note is reported, and removed whole.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

from veil.formats.base import MalformedImage
from veil.formats.inventory import size_text
from veil.formats.tiffdata import Entry, TiffData

Found = tuple[str, str]


def findings(tiff: TiffData, note: Entry, make: str) -> list[Found]:
    vendor = _vendor(tiff.raw(note)[:16], make)
    label = f"{vendor} maker note" if vendor else "maker note"
    found: list[Found] = [("maker_notes", f"{label} ({size_text(note.size)})")]
    # A maker note we cannot read is still reported above, and removed whole.
    with contextlib.suppress(MalformedImage, struct.error, ValueError, IndexError):
        found += list(_vendor_findings(tiff, note, vendor))
    return found


def _vendor(head: bytes, make: str) -> str:
    make = make.lower()
    for prefix, name in (
        (b"Nikon\x00", "Nikon"),
        (b"OLYMP", "Olympus"),
        (b"OM SYSTEM", "Olympus"),
        (b"FUJIFILM", "Fujifilm"),
        (b"Panasonic", "Panasonic"),
        (b"Apple iOS", "Apple"),
        (b"AOC\x00", "Pentax"),
        (b"SONY", "Sony"),
    ):
        if head.startswith(prefix):
            return name
    for word, name in (("canon", "Canon"), ("nintendo", "Nintendo"), ("nikon", "Nikon")):
        if word in make:
            return name
    return make.split(" ")[0].capitalize() if make else ""


def _vendor_findings(tiff: TiffData, note: Entry, vendor: str) -> Iterator[Found]:
    start = note.offset
    if vendor == "Nikon" and tiff.data[start : start + 6] == b"Nikon\x00":
        # Type 3: "Nikon\0" + version, then a TIFF header; offsets count from that header.
        inner = TiffData(tiff.data, base=start + 10)
        ifd, _ = inner.ifd(inner.first_ifd())
        yield from _serial_tags(inner, ifd, {0x001D: "serial number"}, vendor)
    elif vendor == "Canon":
        ifd, _ = tiff.ifd(start - tiff.base)
        yield from _serial_tags(
            tiff, ifd, {0x000C: "serial number", 0x0096: "serial number"}, vendor
        )
        if owner := tiff.text(ifd.get(0x0009)):
            yield "person_names", f"camera owner {owner!r} (Canon maker note)"
    elif vendor == "Olympus":
        yield from _olympus(tiff, note)
    elif vendor == "Nintendo":
        ifd, _ = tiff.ifd(start - tiff.base)
        info = ifd.get(0x1101)
        if info is not None and info.size >= 0x1C:
            serial = tiff.raw(info)[0x18:0x1C].hex()
            yield "serial", f"internal serial number 0x{serial} (Nintendo maker note)"
    elif vendor == "Panasonic":
        ifd, _ = tiff.ifd(start + 12 - tiff.base)
        yield from _serial_tags(tiff, ifd, {0x0025: "internal serial number"}, vendor)
    elif vendor == "Fujifilm":
        inner = TiffData(tiff.data, base=start, order="<")
        ifd, _ = inner.ifd(inner.u32(start + 8))
        yield from _serial_tags(inner, ifd, {0x0010: "internal serial number"}, vendor)


def _olympus(tiff: TiffData, note: Entry) -> Iterator[Found]:
    start = note.offset
    if tiff.data[start : start + 8] in (b"OLYMPUS\x00", b"OM SYSTE"):
        header = 16 if tiff.data[start : start + 9] == b"OM SYSTEM" else 12
        inner = TiffData(
            tiff.data, base=start, order="<" if tiff.data[start + header - 4] == 0x49 else ">"
        )
        ifd, _ = inner.ifd(header)
    else:  # old style: "OLYMP\0", IFD at +8, offsets from the TIFF header
        inner = tiff
        ifd, _ = tiff.ifd(start + 8 - tiff.base)
    yield from _serial_tags(inner, ifd, {0x0404: "serial number"}, "Olympus")
    equipment = _sub(inner, ifd, 0x2010)
    labels = {
        0x0101: "serial number",
        0x0102: "internal serial number",
        0x0202: "lens serial number",
    }
    yield from _serial_tags(inner, equipment, labels, "Olympus")
    settings = _sub(inner, ifd, 0x2020)
    if inner.int(settings.get(0x0101)) and inner.int(settings.get(0x0103)):
        size = size_text(inner.int(settings.get(0x0103)))
        yield "thumbnail", f"preview image {size} (Olympus maker note)"


def _sub(tiff: TiffData, ifd: dict[int, Entry], tag: int) -> dict[int, Entry]:
    entry = ifd.get(tag)
    if entry is None:
        return {}
    offset = entry.offset - tiff.base if entry.type == 7 else tiff.int(entry)
    try:
        return tiff.ifd(offset)[0]
    except (MalformedImage, struct.error):
        return {}


def _serial_tags(tiff: TiffData, ifd: dict[int, Entry], labels: dict[int, str], vendor: str):
    for tag, label in labels.items():
        value = tiff.text(ifd.get(tag)) if tag in ifd else ""
        if value and value.strip("0 "):
            yield "serial", f"{label} {value} ({vendor} maker note)"
