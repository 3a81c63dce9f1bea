"""JPEG: metadata lives in APPn and COM segments before and between scans, and after EOI.

Stripping is container surgery: the entropy-coded data is copied as it is, so pixels never
change. Kept: SOI, APP0 JFIF (without its thumbnail), APP14 Adobe (decoding CMYK/YCCK needs
it), the ICC profile when asked, the coding segments (DQT, DHT, SOFn, DRI, DAC, SOS and scan
data of every scan, DNL) and EOI, plus a minimal EXIF holding only Orientation when the photo
is rotated. Everything else goes, including whatever follows the primary image's EOI (MPF
images, motion-photo videos, vendor trailers).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from veil.findings import Finding
from veil.formats import exif, icc, photoshop, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
APP0, APP1, APP2, APP11, APP13, APP14 = 0xE0, 0xE1, 0xE2, 0xEB, 0xED, 0xEE
COM = 0xFE
# Frame headers that carry the dimensions (SOF0..SOF15 without DHT, JPG and DAC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field (TEM, RST0..7).
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
CODING_MARKERS = frozenset({0xDB, 0xC4, 0xDD, 0xCC, 0xDC, *SOF_MARKERS})
MAX_SEGMENTS = 100_000

EXIF_ID = b"Exif\x00"
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_ID = b"http://ns.adobe.com/xmp/extension/\x00"
ICC_ID = b"ICC_PROFILE\x00"
MPF_ID = b"MPF\x00"
PHOTOSHOP_ID = b"Photoshop 3.0\x00"
JFIF_ID = b"JFIF\x00"

# The end of entropy-coded data: a 0xFF followed by a byte that is not stuffing (0x00), a
# restart marker (RST0..7) or a fill byte (0xFF). A pattern that starts with one literal
# byte lets the regex engine skip ahead at memchr speed (a 4 MB scan in about a millisecond).


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int  # offset of the 0xFF of the marker
    end: int  # offset just past the segment (for SOS: past its entropy-coded data)
    header_end: int  # offset just past the length-counted part

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 4 : self.header_end]


def parse_segments(
    data: bytes, junk: list[tuple[int, int]] | None = None
) -> tuple[list[Segment], int]:
    """Every segment of the primary image, and the offset just past its EOI.

    Bytes between segments that are not a marker (some writers leave padding; a hider could
    leave anything) are skipped as decoders do, and listed in `junk`; stripping drops them."""
    if not data.startswith(b"\xff\xd8"):
        raise MalformedImage("JPEG does not start with SOI")
    segments = [Segment(SOI, 0, 2, 2)]
    pos, size = 2, len(data)
    while len(segments) < MAX_SEGMENTS:
        pos = _next_marker(data, pos, junk)
        if pos + 1 >= size:
            raise MalformedImage("JPEG ends before its EOI marker")
        marker = data[pos + 1]
        if marker == EOI:
            segments.append(Segment(EOI, pos, pos + 2, pos + 2))
            return segments, pos + 2
        if marker in STANDALONE:
            segments.append(Segment(marker, pos, pos + 2, pos + 2))
            pos += 2
            continue
        if pos + 4 > size:
            raise MalformedImage(f"JPEG segment 0x{marker:02X} is truncated")
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if length < 2 or pos + 2 + length > size:
            raise MalformedImage(
                f"JPEG segment 0x{marker:02X} at offset {pos} claims {length} bytes past the end"
            )
        header_end = end = pos + 2 + length
        if marker == SOS:
            end = scan_end(data, end)
        segments.append(Segment(marker, pos, end, header_end))
        pos = end
    raise MalformedImage("JPEG has too many segments")


def scan_end(data: bytes, pos: int) -> int:
    """Where a scan's entropy-coded data ends: the first 0xFF that is not a stuffed 0xFF00, a
    restart marker or a fill byte.

    Vectorised, because a 12 MP photo holds tens of thousands of stuffed 0xFF00 pairs that a
    byte-at-a-time search visits one by one: the pairs "0xFF, then not 0x00" are flagged in one
    pass and numpy's argmax finds the first at memchr speed. Only when restart markers (or
    fill bytes) come first are all flagged pairs examined, again in one pass."""
    view = np.frombuffer(data, dtype=np.uint8)
    flags = view[pos:-1] == 0xFF
    np.logical_and(flags, view[pos + 1 :], out=flags)  # ... followed by a non-zero byte
    first = int(np.argmax(flags)) if flags.size else 0
    if not flags.size or not flags[first]:
        raise MalformedImage("JPEG scan data is truncated (no EOI)")
    if _ends_scan(data[pos + first + 1]):
        return pos + first
    hits = np.flatnonzero(flags[first:]) + (pos + first)
    following = view[hits + 1]
    ends = (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    last = int(np.argmax(ends))
    if not ends[last]:
        raise MalformedImage("JPEG scan data is truncated (no EOI)")
    return int(hits[last])


def _ends_scan(following: int) -> bool:
    """After 0xFF inside scan data: 0xFF is a fill byte and RST0-7 restart markers go on."""
    return following != 0xFF and not 0xD0 <= following <= 0xD7


def _next_marker(data: bytes, pos: int, junk: list[tuple[int, int]] | None) -> int:
    if pos < len(data) and data[pos] != 0xFF:
        found = data.find(b"\xff", pos)
        if found < 0:
            raise MalformedImage("JPEG ends before its EOI marker")
        if junk is not None:
            junk.append((pos, found))
        pos = found
    while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes before a marker
        pos += 1
    return pos


class Jpeg(ImageFormat):
    name = "jpeg"
    mime = "image/jpeg"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._view = memoryview(data)
        self.junk: list[tuple[int, int]] = []
        self.segments, self.image_end = parse_segments(data, self.junk)
        self._frame = next((s for s in self.segments if s.marker in SOF_MARKERS), None)
        if self._frame is None:
            raise MalformedImage("JPEG has no frame header (SOF)")
        if not any(s.marker == SOS for s in self.segments):
            raise MalformedImage("JPEG has no scan (SOS)")

    def dimensions(self) -> tuple[int, int]:
        payload = self._frame.payload(self.data)
        if len(payload) < 6:
            raise MalformedImage("JPEG frame header is too short")
        height, width = struct.unpack_from(">HH", payload, 1)
        return width, height

    def _app(self, marker: int, ident: bytes) -> list[Segment]:
        return [
            s
            for s in self.segments
            if s.marker == marker and self.data.startswith(ident, s.start + 4, s.header_end)
        ]

    def _exif_payload(self) -> bytes | None:
        found = self._app(APP1, EXIF_ID)
        return found[0].payload(self.data) if found else None

    def orientation(self) -> int:
        payload = self._exif_payload()
        return exif.orientation(payload) if payload else 1

    # -- inventory --------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        inv = Inventory()
        data = self.data
        for seg in self.segments:
            if 0xE0 <= seg.marker <= 0xEF or seg.marker == COM:
                self._segment_findings(seg, inv)
        if icc_segments := self._app(APP2, ICC_ID):
            inv.extend([icc.finding(self._icc_profile(icc_segments), "JPEG APP2")])
        if photoshop_segments := self._app(APP13, PHOTOSHOP_ID):
            irb = b"".join(s.payload(data)[len(PHOTOSHOP_ID) :] for s in photoshop_segments)
            inv.extend(photoshop.findings(irb, "Photoshop APP13"))
        inv.extend(self._extended_xmp_findings())
        if jumbf := [s for s in self.segments if s.marker == APP11]:
            self._jumbf_findings(jumbf, inv)
        if self.junk:
            extra = size_text(sum(end - start for start, end in self.junk))
            inv.add("other_metadata", f"{extra} between segments, outside any segment")
        if self.image_end < len(data):
            inv.add("trailing_data", self._trailer_summary())
            inv.extend(self._embedded_findings())
        return inv.findings()

    def _jumbf_findings(self, jumbf: list[Segment], inv: Inventory) -> None:
        total = size_text(sum(s.end - s.start for s in jumbf))
        count = f"{len(jumbf)} segments, " if len(jumbf) > 1 else ""
        manifest = b"".join(s.payload(self.data) for s in jumbf)
        if b"c2pa" not in manifest:
            inv.add("other_metadata", f"JUMBF data (APP11, {count}{total})")
            return
        copies = " with an EXIF assertion (GPS, serials, names may repeat there)"
        detail = copies if b"stds.exif" in manifest else ""
        inv.add("c2pa", f"C2PA manifest (JUMBF APP11, {count}{total}){detail}")
        if b"c2pa.thumbnail" in manifest:
            inv.add("thumbnail", "thumbnail in the C2PA manifest (claim or ingredient)")

    def _appended_images(self, limit: int = 8) -> list[bytes]:
        """Whole JPEG images appended after this one (MPO stereo pairs, MPF previews)."""
        images: list[bytes] = []
        start = self.image_end
        while len(images) < limit:
            start = self.data.find(b"\xff\xd8\xff", start)
            if start < 0:
                break
            try:
                _, end = parse_segments(self.data[start:])
            except MalformedImage:
                break
            images.append(self.data[start : start + end])
            start += end
        return images

    def _embedded_findings(self) -> list[Finding]:
        found: list[Finding] = []
        for number, image in enumerate(self._appended_images(), start=2):
            for seg in parse_segments(image)[0]:
                payload = seg.payload(image) if seg.marker == APP1 else b""
                if payload.startswith(EXIF_ID):
                    found += exif.findings(payload, f"appended image {number} EXIF")
        return found

    def _segment_findings(self, seg: Segment, inv: Inventory) -> None:
        payload = seg.payload(self.data)
        size = size_text(len(payload))
        if seg.marker == APP0:
            if payload.startswith(JFIF_ID) and len(payload) >= 14 and payload[12] and payload[13]:
                inv.add("thumbnail", f"thumbnail {payload[12]}x{payload[13]} (JFIF APP0)")
            elif payload.startswith(b"JFXX\x00"):
                inv.add("thumbnail", f"thumbnail ({size}, JFXX APP0)")
            elif not payload.startswith(JFIF_ID):
                inv.add("other_metadata", f"APP0 {_ident(payload)} ({size})")
        elif seg.marker == APP1 and payload.startswith(EXIF_ID):
            inv.extend(exif.findings(payload, "EXIF"))
        elif seg.marker == APP1 and payload.startswith(XMP_ID):
            inv.extend(xmp.findings(payload[len(XMP_ID) :], "XMP"))
        elif seg.marker == APP2 and payload.startswith(MPF_ID):
            inv.add("thumbnail", self._mpf_summary(payload))
        elif seg.marker == COM:
            if text := printable(payload):
                inv.add("comment", f"comment {text!r}")
        elif not self._summarised_elsewhere(seg.marker, payload):
            inv.add("other_metadata", f"APP{seg.marker - 0xE0} {_ident(payload)} ({size})")

    @staticmethod
    def _summarised_elsewhere(marker: int, payload: bytes) -> bool:
        """Segments reported once for all their parts (ICC, Photoshop, JUMBF, extended XMP)."""
        if marker in (APP11, APP14):
            return True
        if marker == APP1:
            return payload.startswith(XMP_EXT_ID)
        return marker in (APP2, APP13) and payload.startswith((ICC_ID, PHOTOSHOP_ID))

    def _icc_profile(self, segments: list[Segment]) -> bytes:
        # Chunks carry (sequence number, count); order by sequence, as decoders do.
        chunks = sorted((s.payload(self.data) for s in segments), key=lambda p: p[12:13])
        return b"".join(c[14:] for c in chunks)

    def _extended_xmp_findings(self) -> list[Finding]:
        parts: dict[bytes, dict[int, bytes]] = defaultdict(dict)
        for seg in self._app(APP1, XMP_EXT_ID):
            payload = seg.payload(self.data)[len(XMP_EXT_ID) :]
            if len(payload) < 40:
                continue
            guid, offset = payload[:32], struct.unpack_from(">I", payload, 36)[0]
            parts[guid][offset] = payload[40:]
        found: list[Finding] = []
        for chunks in parts.values():
            packet = b"".join(chunks[k] for k in sorted(chunks))
            found += xmp.findings(packet, "extended XMP")
        return found

    def _mpf_summary(self, payload: bytes) -> str:
        count = 0
        try:
            from veil.formats.tiffdata import TiffData

            tiff = TiffData(payload[4:])
            ifd, _ = tiff.ifd(tiff.first_ifd())
            count = tiff.int(ifd.get(0xB001))
        except (MalformedImage, struct.error):
            pass
        extra = {0: "more images", 1: "more images", 2: "1 more image"}.get(
            count, f"{count - 1} more images"
        )
        return f"{extra} after the primary image (MPF APP2)"

    def _trailer_summary(self) -> str:
        trailer = self.data[self.image_end :]
        jpegs = len(self._appended_images())
        what = []
        if jpegs:
            what.append(f"{jpegs} embedded JPEG image{'s' if jpegs > 1 else ''}")
        if b"ftyp" in trailer[:4096] or b"ftypmp4" in trailer:
            what.append("a video")
        detail = f" ({', '.join(what)})" if what else ""
        return f"{size_text(len(trailer))} after the end of the image{detail}"

    # -- removal ----------------------------------------------------------------------------

    def padded(self, length: int) -> bytes:
        # Comment segments of zeros (and fill bytes) right after SOI.
        return self.data[:2] + _filler(self._missing(length)) + self.data[2:]

    def strip(self, options: StripOptions) -> Stripped:
        data = self.data
        head: list[bytes | memoryview] = [b"\xff\xd8"]
        body: list[bytes | memoryview] = []
        removed: list[str] = []
        orientation = self.orientation() if options.keep_orientation else 1
        for seg in self.segments[1:]:
            kept = self._kept(seg, options)
            if kept is None:
                removed.append(self._describe(seg))
            elif 0xE0 <= seg.marker <= 0xEF and not body:  # APPn before the first table
                head.append(kept)
            else:
                body.append(kept)
        if orientation != 1:
            head.insert(
                2 if len(head) > 1 and _is_jfif(head[1]) else 1, _app1(exif.minimal(orientation))
            )
        if self.junk:
            removed.append("bytes between segments")
        if self.image_end < len(data):
            removed.append(self._trailer_summary())
        if options.size_preserving:  # the filler goes where the metadata segments were
            head.append(_filler(len(data) - sum(map(len, head)) - sum(map(len, body))))
        return Stripped(b"".join(head + body), tuple(dict.fromkeys(removed)))

    def _kept(self, seg: Segment, options: StripOptions) -> bytes | memoryview | None:
        """The bytes to keep for a segment (a view: scan data is copied once), or None."""
        marker = seg.marker
        if marker in CODING_MARKERS or marker in (SOS, EOI) or marker in STANDALONE:
            return self._view[seg.start : seg.end]
        payload = seg.payload(self.data)
        if marker == APP0 and payload.startswith(JFIF_ID) and len(payload) >= 14:
            # JFIF without its (optional) thumbnail: 14 payload bytes, thumbnail size 0x0.
            jfif = payload[:12] + b"\x00\x00"
            return b"\xff\xe0" + struct.pack(">H", 16) + jfif
        if marker == APP14 and payload.startswith(b"Adobe") and len(payload) >= 12:
            # Exactly the standard 12 bytes: nothing can ride along after the transform flag.
            return b"\xff\xee" + struct.pack(">H", 14) + payload[:12]
        if marker == APP2 and options.keep_icc and payload.startswith(ICC_ID):
            return self._view[seg.start : seg.end]
        return None

    def _describe(self, seg: Segment) -> str:
        payload = seg.payload(self.data)
        if seg.marker == COM:
            return "COM comment"
        names = {
            EXIF_ID: "EXIF",
            XMP_ID: "XMP",
            XMP_EXT_ID: "extended XMP",
            ICC_ID: "ICC profile",
            MPF_ID: "MPF index",
            PHOTOSHOP_ID: "Photoshop/IPTC",
        }
        for ident, name in names.items():
            if payload.startswith(ident):
                return f"APP{seg.marker - 0xE0} {name}"
        if seg.marker == APP11:
            return "APP11 JUMBF/C2PA" if b"c2pa" in payload else "APP11 JUMBF"
        return f"APP{seg.marker - 0xE0} {_ident(payload)}"


def _ident(payload: bytes) -> str:
    ident = payload.split(b"\x00", 1)[0][:24]
    text = printable(ident)
    return repr(text) if text else "(binary)"


def _is_jfif(segment: bytes) -> bool:
    return segment[1] == APP0 and segment[4:9] == JFIF_ID


def _app1(tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _filler(n: int) -> bytes:
    """`n` bytes a decoder skips: COM segments of zeros, plus 0xFF fill bytes for n % 4 < 4."""
    if n < 0:
        raise MalformedImage("JPEG cannot be cleaned at the same length")
    parts: list[bytes] = []
    while n >= 4:
        length = min(n - 2, 0xFFFF)
        if 0 < n - 2 - length < 4 and length > 2:  # keep the remainder usable
            length -= 4
        parts.append(b"\xff\xfe" + struct.pack(">H", length) + bytes(length - 2))
        n -= length + 2
    # Fill bytes (0xFF) may precede any marker (ITU T.81 B.1.1.2).
    parts.append(b"\xff" * n)
    return b"".join(parts)


def minimal_exif_segment(orientation: int) -> bytes:
    """An APP1 holding only the Orientation tag (or nothing when orientation is 1)."""
    return b"" if orientation == 1 else _app1(exif.minimal(orientation))
