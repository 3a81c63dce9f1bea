"""JPEG: metadata lives in APPn and COM segments before the first scan, and after EOI.

Stripping is container surgery: the entropy-coded data is copied as it is, so pixels never
change. Kept: SOI, APP0 JFIF, APP14 Adobe (decoding CMYK/YCCK needs it), the ICC profile when
asked, the coding segments (DQT, DHT, SOFn, DRI, DAC, SOS and scan data, DNL) and EOI.
Everything else goes, including whatever follows the primary image's EOI (MPF images,
motion-photo videos, vendor trailers).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image

from veil.findings import Finding
from veil.formats.base import ImageFormat, MalformedImage, StripOptions

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
APP0, APP1, APP2, APP14 = 0xE0, 0xE1, 0xE2, 0xEE
COM = 0xFE
# Frame headers that carry the dimensions (SOF0..SOF15 without DHT, JPG and DAC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
CODING_MARKERS = frozenset({0xDB, 0xC4, 0xDD, 0xCC, 0xDC, *SOF_MARKERS})

EXIF_ID = b"Exif\x00\x00"
ICC_ID = b"ICC_PROFILE\x00"


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int  # offset of the 0xFF of the marker
    end: int  # offset just past the segment (for SOS: past its entropy-coded data)

    @property
    def payload_start(self) -> int:
        return self.start + 4

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_start : self._header_end(data)]

    def _header_end(self, data: bytes) -> int:
        if self.marker == SOS:
            return self.start + 2 + struct.unpack_from(">H", data, self.start + 2)[0]
        return self.end


def parse_segments(data: bytes) -> tuple[list[Segment], int]:
    """Every segment of the primary image, and the offset just past its EOI."""
    if not data.startswith(b"\xff\xd8"):
        raise MalformedImage("JPEG does not start with SOI")
    segments = [Segment(SOI, 0, 2)]
    pos = 2
    size = len(data)
    while True:
        pos = _next_marker(data, pos)
        if pos + 1 >= size:
            raise MalformedImage("JPEG ends before its EOI marker")
        marker = data[pos + 1]
        if marker == EOI:
            segments.append(Segment(EOI, pos, pos + 2))
            return segments, pos + 2
        if marker in STANDALONE:
            segments.append(Segment(marker, pos, pos + 2))
            pos += 2
            continue
        if pos + 4 > size:
            raise MalformedImage(f"JPEG segment 0x{marker:02X} is truncated")
        length = struct.unpack_from(">H", data, pos + 2)[0]
        if length < 2 or pos + 2 + length > size:
            raise MalformedImage(
                f"JPEG segment 0x{marker:02X} at {pos} claims {length} bytes past the end"
            )
        end = pos + 2 + length
        if marker == SOS:
            end = _scan_end(data, end)
        segments.append(Segment(marker, pos, end))
        pos = end


def _next_marker(data: bytes, pos: int) -> int:
    if pos >= len(data) or data[pos] != 0xFF:
        raise MalformedImage(f"JPEG has no marker where one is expected (offset {pos})")
    # Fill bytes (0xFF repeated) may precede a marker.
    while pos + 1 < len(data) and data[pos + 1] == 0xFF:
        pos += 1
    return pos


def _scan_end(data: bytes, pos: int) -> int:
    """Offset of the first marker after entropy-coded data (byte stuffing and RSTn skipped)."""
    size = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= size:
            raise MalformedImage("JPEG scan data is truncated (no EOI)")
        following = data[pos + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos += 1 if following == 0xFF else 2
            continue
        return pos


class Jpeg(ImageFormat):
    name = "jpeg"
    mime = "image/jpeg"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.segments, self.image_end = parse_segments(data)
        self._frame = next((s for s in self.segments if s.marker in SOF_MARKERS), None)
        if self._frame is None:
            raise MalformedImage("JPEG has no frame header (SOF)")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(b"\xff\xd8\xff")

    def dimensions(self) -> tuple[int, int]:
        payload = self._frame.payload(self.data)
        if len(payload) < 5:
            raise MalformedImage("JPEG frame header is too short")
        height, width = struct.unpack_from(">HH", payload, 1)
        return width, height

    def _exif(self) -> Image.Exif | None:
        for seg in self.segments:
            if seg.marker == APP1 and seg.payload(self.data).startswith(EXIF_ID):
                exif = Image.Exif()
                exif.load(seg.payload(self.data)[len(EXIF_ID) :])
                return exif
        return None

    def orientation(self) -> int:
        exif = self._exif()
        value = exif.get(0x0112, 1) if exif else 1
        return value if isinstance(value, int) and 1 <= value <= 8 else 1

    def findings(self) -> list[Finding]:
        found: list[Finding] = []
        exif = self._exif()
        if exif is not None:
            found.append(Finding("exif", "EXIF block"))
            if exif.get_ifd(0x8825):
                found.append(Finding("gps", "GPS position"))
        if any(s.marker == COM for s in self.segments):
            found.append(Finding("comment", "JPEG comment"))
        if self.image_end < len(self.data):
            extra = len(self.data) - self.image_end
            found.append(Finding("trailing_data", f"{extra} bytes after the image"))
        return found

    def strip(self, options: StripOptions) -> bytes:
        if options.size_preserving:
            return self._strip_in_place(options)
        out = io.BytesIO()
        out.write(b"\xff\xd8")
        orientation = self.orientation() if options.keep_orientation else 1
        wrote_orientation = False
        for seg in self.segments[1:]:
            if self._keep(seg, options):
                if seg.marker not in (APP0, APP2, APP14) and not wrote_orientation:
                    out.write(minimal_exif_segment(orientation))
                    wrote_orientation = True
                out.write(self.data[seg.start : seg.end])
        return out.getvalue()

    def _keep(self, seg: Segment, options: StripOptions) -> bool:
        if seg.marker in CODING_MARKERS or seg.marker in (SOS, EOI) or seg.marker in STANDALONE:
            return True
        payload = seg.payload(self.data)
        if seg.marker == APP0:
            return payload.startswith(b"JFIF\x00")
        if seg.marker == APP14:
            return payload.startswith(b"Adobe")
        if seg.marker == APP2:
            return options.keep_icc and payload.startswith(ICC_ID)
        return False

    def _strip_in_place(self, options: StripOptions) -> bytes:
        """Same length: every dropped segment becomes a COM of zeros; trailers become zeros."""
        out = bytearray(self.data)
        for seg in self.segments[1:]:
            if self._keep(seg, options):
                continue
            length = seg.end - seg.start - 2
            out[seg.start : seg.end] = b"\xff\xfe" + struct.pack(">H", length) + bytes(length - 2)
        out[self.image_end :] = bytes(len(self.data) - self.image_end)
        return bytes(out)


def minimal_exif_segment(orientation: int) -> bytes:
    """An APP1 holding only the Orientation tag (or nothing when orientation is 1)."""
    if orientation == 1:
        return b""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8)
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    ifd += struct.pack(">I", 0)
    payload = EXIF_ID + tiff + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
