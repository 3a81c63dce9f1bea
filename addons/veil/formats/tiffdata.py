"""A bounded reader for TIFF-structured data: the TIFF file format and every EXIF block.

EXIF (in JPEG APP1, PNG eXIf, WebP EXIF, HEIF Exif items) is a small TIFF file: a byte-order
header and a chain of IFDs (image file directories) of 12-byte entries whose values sit inline
or at an offset. Everything here is attacker-controlled: entry counts are capped, every offset
is checked against the end of the data, and IFD loops are refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from veil.formats.base import MalformedImage

# TIFF field types: (size of one value, struct code).
TYPES: dict[int, tuple[int, str]] = {
    1: (1, "B"),  # BYTE
    2: (1, "s"),  # ASCII
    3: (2, "H"),  # SHORT
    4: (4, "I"),  # LONG
    5: (8, "II"),  # RATIONAL
    6: (1, "b"),  # SBYTE
    7: (1, "s"),  # UNDEFINED
    8: (2, "h"),  # SSHORT
    9: (4, "i"),  # SLONG
    10: (8, "ii"),  # SRATIONAL
    11: (4, "f"),  # FLOAT
    12: (8, "d"),  # DOUBLE
    13: (4, "I"),  # IFD
}
MAX_ENTRIES = 1000  # per IFD; real files have a few dozen
MAX_IFDS = 64  # IFDs followed through chains and sub-IFD pointers


@dataclass(frozen=True)
class Entry:
    tag: int
    type: int
    count: int
    offset: int  # where the value bytes start (in the reader's data)
    size: int  # bytes of value
    entry_offset: int  # where the 12-byte entry itself starts


class TiffData:
    """IFDs of TIFF-structured bytes. `base` is where offsets count from (usually 0)."""

    def __init__(self, data: bytes, base: int = 0, order: str | None = None) -> None:
        self.data = data
        self.base = base
        if order is None:
            head = data[base : base + 4]
            if head in (b"II*\x00", b"II+\x00"):
                order = "<"
            elif head in (b"MM\x00*", b"MM\x00+"):
                order = ">"
            else:
                raise MalformedImage("TIFF data has no valid byte-order header")
            if head[2:4] in (b"+\x00", b"\x00+"):
                raise MalformedImage("BigTIFF data is not supported")
        self.order = order
        self._visited: set[int] = set()

    def u16(self, pos: int) -> int:
        return struct.unpack_from(self.order + "H", self.data, pos)[0]

    def u32(self, pos: int) -> int:
        return struct.unpack_from(self.order + "I", self.data, pos)[0]

    def first_ifd(self) -> int:
        self._need(self.base + 8)
        return self.u32(self.base + 4)

    def _need(self, end: int) -> None:
        if end > len(self.data):
            raise MalformedImage("TIFF data ends inside a directory")

    def ifd(self, offset: int) -> tuple[dict[int, Entry], int]:
        """Entries of the IFD at `offset` (relative to base) and the next IFD's offset."""
        pos = self.base + offset
        if offset == 0 or pos + 2 > len(self.data):
            raise MalformedImage(f"TIFF directory offset {offset} is outside the data")
        if pos in self._visited or len(self._visited) >= MAX_IFDS:
            raise MalformedImage("TIFF directories form a loop or are too many")
        self._visited.add(pos)
        count = self.u16(pos)
        if count > MAX_ENTRIES:
            raise MalformedImage(f"TIFF directory claims {count} entries")
        end = pos + 2 + 12 * count
        self._need(end)
        entries: dict[int, Entry] = {}
        for i in range(count):
            at = pos + 2 + 12 * i
            tag, typ, n = struct.unpack_from(self.order + "HHI", self.data, at)
            if typ not in TYPES:
                continue  # unknown type: its size is unknown, so it cannot be read
            size = TYPES[typ][0] * n
            value_at = at + 8 if size <= 4 else self.base + self.u32(at + 8)
            if value_at + size > len(self.data) or value_at < self.base:
                raise MalformedImage(f"TIFF tag 0x{tag:04X} points past the end of the data")
            entries[tag] = Entry(tag, typ, n, value_at, size, at)
        following = self.u32(end) if end + 4 <= len(self.data) else 0
        return entries, following

    def raw(self, entry: Entry) -> bytes:
        return self.data[entry.offset : entry.offset + entry.size]

    def ints(self, entry: Entry) -> list[int]:
        _size, code = TYPES[entry.type]
        if code not in ("B", "H", "I", "b", "h", "i"):
            return []
        return list(struct.unpack_from(f"{self.order}{entry.count}{code}", self.data, entry.offset))

    def int(self, entry: Entry | None, default: int = 0) -> int:
        values = self.ints(entry) if entry else []
        return values[0] if values else default

    def rationals(self, entry: Entry) -> list[float]:
        if entry.type not in (5, 10):
            return [float(v) for v in self.ints(entry)]
        code = "I" if entry.type == 5 else "i"
        values = struct.unpack_from(f"{self.order}{2 * entry.count}{code}", self.data, entry.offset)
        pairs = zip(values[::2], values[1::2], strict=True)
        return [num / den if den else 0.0 for num, den in pairs]

    def text(self, entry: Entry | None) -> str:
        """An ASCII/UNDEFINED value as printable text (NULs and control bytes dropped)."""
        if entry is None:
            return ""
        if entry.type not in (1, 2, 7):
            return " ".join(str(v) for v in self.ints(entry))
        return printable(self.raw(entry))

    def sub_ifd(self, entries: dict[int, Entry], tag: int) -> dict[int, Entry]:
        """The IFD a pointer tag names (ExifIFD, GPS, Interop), or {} when absent or broken."""
        entry = entries.get(tag)
        if entry is None:
            return {}
        try:
            return self.ifd(self.int(entry))[0]
        except (MalformedImage, struct.error):
            return {}


def printable(raw: bytes, limit: int = 120) -> str:
    """Bytes as a short, single-line, safe string (metadata is hostile: never echo controls)."""
    text = raw.split(b"\x00", 1)[0] if not raw.startswith(b"\x00") else raw.strip(b"\x00")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:  # IPTC and old EXIF writers use Latin-1
        decoded = text.decode("latin-1")
    cleaned = "".join(c if c.isprintable() else " " for c in decoded).strip()
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
