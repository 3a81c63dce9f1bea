"""The inventory of an XMP packet: names (creator, owner, face regions), places, dates, serials.

XMP is RDF/XML whose properties may be written as attributes or elements, under any prefix:
properties are matched by namespace URI and local name. The packet is hostile input: a DOCTYPE
(the vehicle of entity-expansion bombs) is never parsed, and the size is capped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from veil.findings import Finding
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

MAX_XMP = 16 * 2**20
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"

_NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "aux": "http://ns.adobe.com/exif/1.0/aux/",
    "exifEX": "http://cipa.jp/exif/1.0/",
    "exif": "http://ns.adobe.com/exif/1.0/",
    "tiff": "http://ns.adobe.com/tiff/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "xmpGImg": "http://ns.adobe.com/xap/1.0/g/img/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "iptc": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "iptcExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",
    "GImage": "http://ns.google.com/photos/1.0/image/",
    "GDepth": "http://ns.google.com/photos/1.0/depthmap/",
    "GCamera": "http://ns.google.com/photos/1.0/camera/",
    "drone-dji": "http://www.dji.com/drone-dji/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
}

# (namespace prefix, local name) -> (finding kind, label)
_RULES: dict[tuple[str, str], tuple[str, str]] = {
    ("dc", "creator"): ("person_names", "creator"),
    ("dc", "rights"): ("person_names", "rights"),
    ("tiff", "Artist"): ("person_names", "artist"),
    ("tiff", "Copyright"): ("person_names", "copyright"),
    ("aux", "OwnerName"): ("person_names", "camera owner"),
    ("exifEX", "CameraOwnerName"): ("person_names", "camera owner"),
    ("xmpRights", "Owner"): ("person_names", "rights owner"),
    ("photoshop", "AuthorsPosition"): ("person_names", "author's position"),
    ("photoshop", "CaptionWriter"): ("person_names", "caption writer"),
    ("photoshop", "Credit"): ("person_names", "credit"),
    ("iptc", "CreatorContactInfo"): ("person_names", "creator contact details"),
    ("iptcExt", "PersonInImage"): ("person_names", "person in image"),
    ("mwg-rs", "Name"): ("person_names", "face region"),
    ("MPReg", "PersonDisplayName"): ("person_names", "face region"),
    ("aux", "SerialNumber"): ("serial", "serial number"),
    ("aux", "LensSerialNumber"): ("serial", "lens serial number"),
    ("exifEX", "BodySerialNumber"): ("serial", "serial number"),
    ("exifEX", "LensSerialNumber"): ("serial", "lens serial number"),
    ("exif", "GPSLatitude"): ("gps", "GPS latitude"),
    ("exif", "GPSLongitude"): ("gps", "GPS longitude"),
    ("drone-dji", "GpsLatitude"): ("gps", "GPS latitude"),
    ("drone-dji", "GpsLongitude"): ("gps", "GPS longitude"),
    ("photoshop", "City"): ("gps", "city"),
    ("photoshop", "State"): ("gps", "state"),
    ("photoshop", "Country"): ("gps", "country"),
    ("iptc", "Location"): ("gps", "location"),
    ("iptcExt", "LocationCreated"): ("gps", "location created"),
    ("iptcExt", "LocationShown"): ("gps", "location shown"),
    ("exif", "DateTimeOriginal"): ("datetime", "taken"),
    ("xmp", "CreateDate"): ("datetime", "created"),
    ("photoshop", "DateCreated"): ("datetime", "created"),
    ("xmp", "ModifyDate"): ("datetime", "modified"),
    ("tiff", "Make"): ("device", "make"),
    ("tiff", "Model"): ("device", "model"),
    ("xmp", "CreatorTool"): ("device", "software"),
    ("aux", "Lens"): ("device", "lens"),
    ("exifEX", "LensModel"): ("device", "lens"),
    ("xmpGImg", "image"): ("thumbnail", "thumbnail"),
    ("GImage", "Data"): ("thumbnail", "embedded image"),
    ("GDepth", "Data"): ("thumbnail", "depth map"),
    ("GCamera", "MotionPhoto"): ("other_metadata", "motion photo flag"),
    ("dc", "description"): ("comment", "description"),
    ("exif", "UserComment"): ("comment", "user comment"),
    ("dc", "subject"): ("other_metadata", "keywords"),
    ("xmpMM", "PreservedFileName"): ("other_metadata", "original file name"),
    ("crs", "RawFileName"): ("other_metadata", "original file name"),
}
_MATCH = {(_NS[p], local): rule for (p, local), rule in _RULES.items()}
_LONG_VALUE = {"thumbnail"}  # base64 images: give the size, not the text


def findings(packet: bytes, where: str = "XMP") -> list[Finding]:
    inv = Inventory()
    inv.add("xmp", f"{where} ({size_text(len(packet))})")
    if len(packet) > MAX_XMP:
        inv.add("other_metadata", f"{where} too large to read")
        return inv.findings()
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        inv.add("other_metadata", f"{where} with a DOCTYPE (not parsed)")
        return inv.findings()
    root = _parse(packet)
    if root is None:
        inv.add("other_metadata", f"{where} that is not well-formed XML (read leniently)")
        _lenient(packet, inv, where)
        return inv.findings()
    for element in root.iter():
        _match(element.tag, lambda e=element: _element_text(e), inv, where)
        for name, value in element.attrib.items():
            _match(name, lambda v=value: v, inv, where)
    return inv.findings()


def _parse(packet: bytes) -> ET.Element | None:
    start = packet.find(b"<")
    if start < 0:
        return None
    body = packet[start:].rstrip(b"\x00 \t\r\n")
    if body.startswith(b"<?xpacket"):
        # The packet wrapper is a processing instruction around the real root element.
        body = re.sub(rb"<\?xpacket[^>]*\?>", b"", body)
    for candidate in (body, _cut_after(body, b"</x:xmpmeta>"), _cut_after(body, b"</rdf:RDF>")):
        try:
            return ET.fromstring(candidate)
        except ET.ParseError:
            continue
    return None


def _cut_after(body: bytes, end_tag: bytes) -> bytes:
    at = body.find(end_tag)
    return body[: at + len(end_tag)] if at >= 0 else body


_XMLNS = re.compile(rb'xmlns:([\w.-]+)\s*=\s*["\']([^"\']*)["\']')
_ATTR = re.compile(rb'([\w.-]+):([\w.-]+)\s*=\s*"([^"]*)"')
_TOKEN = re.compile(rb"<(/?)([\w.-]+):([\w.-]+)[^<>]*?(/?)>")
_TAGS = re.compile(rb"<[^>]*>")
MAX_DEPTH = 64


def _lenient(packet: bytes, inv: Inventory, where: str) -> None:
    """Properties of XMP that is not well-formed, found by pattern (prefixes as declared)."""
    prefixes = {m.group(1): m.group(2).decode("utf-8", "replace") for m in _XMLNS.finditer(packet)}

    def report(prefix: bytes, local: bytes, raw: bytes) -> None:
        uri = prefixes.get(prefix)
        if uri is not None:
            value = _TAGS.sub(b" ", raw).decode("utf-8", "replace")
            tag = f"{{{uri}}}{local.decode('utf-8', 'replace')}"
            _match(tag, lambda: " ".join(value.split()), inv, where)

    for m in _ATTR.finditer(packet):
        report(m.group(1), m.group(2), m.group(3))
    # Elements: a linear walk over tags with a bounded stack of open elements.
    stack: list[tuple[bytes, bytes, int]] = []
    for m in _TOKEN.finditer(packet):
        closing, prefix, local, empty = m.groups()
        if empty:
            continue
        if not closing:
            stack = [*stack[-MAX_DEPTH:], (prefix, local, m.end())]
            continue
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][:2] == (prefix, local):
                if (prefixes.get(prefix), local.decode("utf-8", "replace")) in _MATCH:
                    report(prefix, local, packet[stack[i][2] : m.start()])
                del stack[i:]
                break


def _match(tag: str, value, inv: Inventory, where: str) -> None:
    if not tag.startswith("{"):
        return
    ns, _, local = tag[1:].partition("}")
    rule = _MATCH.get((ns, local))
    if rule is None:
        return
    kind, label = rule
    text: str = value()
    if kind in _LONG_VALUE:
        if len(text) > 16:
            inv.add(kind, f"{label} ({size_text(len(text) * 3 // 4)}, {where})")
        return
    text = printable(text.encode("utf-8", "replace"))
    if not text:
        return
    if kind == "gps" and label.startswith("GPS"):
        text = _coordinate(text)
    inv.add(kind, f"{label} {text!r} ({where})")


def _element_text(element: ET.Element) -> str:
    items = [li.text.strip() for li in element.iter(f"{{{RDF}}}li") if li.text and li.text.strip()]
    if items:
        return ", ".join(items)
    return (element.text or "").strip()


def _coordinate(text: str) -> str:
    """XMP 'DDD,MM.mmN' or 'DDD,MM,SSN' as '48.86 N'."""
    m = re.fullmatch(r"\s*(\d+),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?\s*([NSEW])\s*", text)
    if not m:
        return text
    value = int(m.group(1)) + float(m.group(2)) / 60 + float(m.group(3) or 0) / 3600
    return f"{value:.2f} {m.group(4)}"
