"""Photoshop image resources (JPEG APP13, TIFF tag 34377) and the IPTC-IIM record inside them.

Resources hold IPTC captions and by-lines, a JPEG thumbnail (0x040C), copies of EXIF and XMP,
and URLs. Parsing is bounded and stops at the first inconsistent length.
"""

from __future__ import annotations

import struct

from veil.findings import Finding
from veil.formats import exif, xmp
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

IPTC, THUMB_OLD, THUMB, URL, EXIF1, XMP_RES, ICC = (
    0x0404,
    0x0409,
    0x040C,
    0x040B,
    0x0422,
    0x0424,
    0x040F,
)

# IPTC-IIM record 2 datasets -> (finding kind, label)
_IIM: dict[int, tuple[str, str]] = {
    80: ("person_names", "by-line"),
    85: ("person_names", "by-line title"),
    116: ("person_names", "copyright"),
    110: ("person_names", "credit"),
    122: ("person_names", "caption writer"),
    90: ("gps", "city"),
    92: ("gps", "sub-location"),
    95: ("gps", "province/state"),
    101: ("gps", "country"),
    55: ("datetime", "created"),
    120: ("comment", "caption"),
    5: ("other_metadata", "title"),
    25: ("other_metadata", "keyword"),
}


def resources(data: bytes) -> list[tuple[int, bytes]]:
    """(id, data) of every `8BIM` resource, in order."""
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 12 <= len(data) and data[pos : pos + 4] in (b"8BIM", b"MeSa", b"PHUT", b"AgHg"):
        rid = struct.unpack_from(">H", data, pos + 4)[0]
        name_len = data[pos + 6]
        pos += 6 + ((name_len + 2) & ~1)  # Pascal name, padded to an even length
        if pos + 4 > len(data):
            break
        size = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        if pos + size > len(data):
            break
        found.append((rid, data[pos : pos + size]))
        pos += size + (size & 1)
    return found


def findings(data: bytes, where: str = "Photoshop") -> list[Finding]:
    inv = Inventory()
    inv.add("iptc", f"{where} resources ({size_text(len(data))})")
    for rid, payload in resources(data):
        if rid == IPTC:
            inv.extend(iptc_findings(payload, "IPTC"))
        elif rid in (THUMB, THUMB_OLD) and len(payload) > 28:
            jpeg = payload[28:]
            dims = exif.embedded_jpeg_size(jpeg)
            inv.add("thumbnail", f"thumbnail {dims}{size_text(len(jpeg))} ({where})")
        elif rid == EXIF1:
            inv.extend(exif.findings(payload, f"EXIF in {where}"))
        elif rid == XMP_RES:
            inv.extend(xmp.findings(payload, f"XMP in {where}"))
        elif rid == URL and (url := printable(payload)):
            inv.add("other_metadata", f"URL {url!r} ({where})")
        elif rid == ICC:
            inv.add("icc_profile", f"ICC profile ({size_text(len(payload))}, {where})")
    return inv.findings()


def iptc_findings(data: bytes, where: str = "IPTC") -> list[Finding]:
    inv = Inventory()
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 0x1C:
        record, dataset = data[pos + 1], data[pos + 2]
        size = struct.unpack_from(">H", data, pos + 3)[0]
        pos += 5
        if size & 0x8000:  # extended dataset: the next (size & 0x7FFF) bytes hold the length
            n = size & 0x7FFF
            if n > 4 or pos + n > len(data):
                break
            size = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if pos + size > len(data):
            break
        value = data[pos : pos + size]
        pos += size
        rule = _IIM.get(dataset) if record == 2 else None
        if rule and (text := printable(value)):
            inv.add(rule[0], f"{rule[1]} {text!r} ({where})")
    return inv.findings()
