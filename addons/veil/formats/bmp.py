"""BMP: no metadata container, except a colour profile in a BITMAPV5HEADER, which may be a
*linked* profile (a file path on the author's machine) or an embedded one.

Stripping changes nothing but that profile (a linked path always goes; an embedded profile
goes when ICC is not kept) and data after the declared file size; the pixels stay in place.
"""

from __future__ import annotations

import struct

from veil.findings import Finding
from veil.formats import icc
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

DIB_SIZES = (12, 40, 52, 56, 64, 108, 124)
V5 = 124
LINKED, EMBEDDED, SRGB = b"KNIL", b"DEBM", b"BGRs"  # little-endian FourCCs 'LINK', 'MBED', 'sRGB'


class Bmp(ImageFormat):
    name = "bmp"
    mime = "image/bmp"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        if len(data) < 26 or data[:2] != b"BM":
            raise MalformedImage("not a BMP header")
        self.dib = struct.unpack_from("<I", data, 14)[0]
        if self.dib not in DIB_SIZES or 14 + self.dib > len(data):
            raise MalformedImage("BMP has an unknown or truncated header")
        declared = struct.unpack_from("<I", data, 2)[0]
        self.file_end = declared if 14 + self.dib <= declared <= len(data) else len(data)

    def dimensions(self) -> tuple[int, int]:
        if self.dib == 12:
            return struct.unpack_from("<HH", self.data, 18)
        width, height = struct.unpack_from("<ii", self.data, 18)
        return abs(width), abs(height)

    def _profile(self) -> tuple[bytes, int, int] | None:
        """(kind, start, size) of a V5 header's colour profile."""
        if self.dib != V5:
            return None
        cs_type = self.data[14 + 56 : 14 + 60]
        offset, size = struct.unpack_from("<II", self.data, 14 + 112)
        start = 14 + offset
        if cs_type not in (LINKED, EMBEDDED) or not size or start + size > len(self.data):
            return None
        return cs_type, start, size

    def findings(self) -> list[Finding]:
        inv = Inventory()
        if profile := self._profile():
            kind, start, size = profile
            raw = self.data[start : start + size]
            if kind == LINKED:
                inv.add("other_metadata", f"linked colour profile path {printable(raw)!r}")
            else:
                inv.extend([icc.finding(raw, "BMP V5 header")])
        if self.file_end < len(self.data):
            inv.add(
                "trailing_data", f"{size_text(len(self.data) - self.file_end)} after the bitmap"
            )
        return inv.findings()

    def strip(self, options: StripOptions) -> Stripped:
        out = bytearray(self.data[: self.file_end])
        removed: list[str] = []
        profile = self._profile()
        if profile and (profile[0] == LINKED or not options.keep_icc):
            kind, start, size = profile
            out[start : start + size] = bytes(size)
            out[14 + 56 : 14 + 60] = SRGB
            struct.pack_into("<II", out, 14 + 112, 0, 0)
            removed.append("linked colour profile" if kind == LINKED else "ICC profile")
        if self.file_end < len(self.data):
            removed.append("data after the bitmap")
            if options.size_preserving:
                out += bytes(len(self.data) - self.file_end)
        return Stripped(bytes(out), tuple(removed))
