"""PNG (and APNG): metadata lives in ancillary chunks, anywhere between IHDR and IEND.

Stripping keeps an allowlist: the critical chunks, the colour and transparency chunks the
display needs, and APNG's animation chunks; it drops text (tEXt, zTXt, iTXt), eXIf, tIME,
caBX (C2PA) and every other ancillary chunk, and stops at IEND. Every CRC is checked: a file
whose chunks do not add up is refused, not guessed at.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from veil.findings import Finding
from veil.formats import exif, icc, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 1_000_000
MAX_TEXT = 8 * 2**20  # decompressed text read for the inventory, per chunk
MAX_INFLATED = 32 * 2**20  # ... and for the whole image (many small bombs add up)

# Chunks the display needs: image data, colour, transparency, density, animation.
KEEP = frozenset(
    {
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"cICP",
        b"mDCV", b"cLLI", b"sBIT", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
    }
)  # fmt: skip
# Lengths of the kept chunks whose size the specification fixes: a longer one could carry
# anything after its fields, so it is dropped (ancillary) or refused (IHDR).
FIXED_LENGTHS = {
    b"IHDR": (13,), b"gAMA": (4,), b"cHRM": (32,), b"sRGB": (1,), b"cICP": (4,),
    b"mDCV": (24,), b"cLLI": (8,), b"pHYs": (9,), b"acTL": (8,), b"fcTL": (26,),
    b"bKGD": (1, 2, 6), b"sBIT": (1, 2, 3, 4),
}  # fmt: skip
# Size-preserving filler: ancillary, private, reserved-bit clear, safe to copy; zeros inside.
FILLER = b"zeRo"

_TEXT_KINDS = {
    "author": "person_names",
    "artist": "person_names",
    "copyright": "person_names",
    "owner": "person_names",
    "comment": "comment",
    "description": "comment",
    "title": "other_metadata",
    "creation time": "datetime",
    "date:create": "datetime",
    "date:modify": "datetime",
    "datecreate": "datetime",
    "datemodify": "datetime",
    "software": "device",
    "source": "device",
    "gps": "gps",
    "location": "gps",
    "parameters": "other_metadata",
    "prompt": "other_metadata",
    "workflow": "other_metadata",
}


@dataclass(frozen=True)
class Chunk:
    type: bytes
    start: int  # offset of the length field
    end: int  # offset past the CRC

    def data(self, png: bytes) -> bytes:
        return png[self.start + 8 : self.end - 4]


def parse_chunks(data: bytes) -> tuple[list[Chunk], int]:
    if not data.startswith(SIGNATURE):
        raise MalformedImage("not a PNG signature")
    chunks: list[Chunk] = []
    pos = len(SIGNATURE)
    while len(chunks) < MAX_CHUNKS:
        if pos + 12 > len(data):
            raise MalformedImage("PNG ends before its IEND chunk")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise MalformedImage(f"PNG chunk {_name(ctype)} claims {length} bytes past the end")
        if not ctype.isalpha():
            raise MalformedImage(f"PNG chunk type {ctype!r} is not valid")
        crc = struct.unpack_from(">I", data, end - 4)[0]
        if zlib.crc32(memoryview(data)[pos + 4 : end - 4]) != crc:
            raise MalformedImage(f"PNG chunk {_name(ctype)} at offset {pos} has a bad CRC")
        chunks.append(Chunk(ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            if chunks[0].type != b"IHDR":
                raise MalformedImage("PNG does not start with IHDR")
            return chunks, pos
    raise MalformedImage("PNG has too many chunks")


def _name(ctype: bytes) -> str:
    return repr(printable(ctype))


def make_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload)
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


class Png(ImageFormat):
    name = "png"
    mime = "image/png"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.chunks, self.image_end = parse_chunks(data)
        if self.chunks[0].end - self.chunks[0].start != 12 + 13:
            raise MalformedImage("PNG IHDR has the wrong length")

    def dimensions(self) -> tuple[int, int]:
        ihdr = self.chunks[0].data(self.data)
        if len(ihdr) != 13:
            raise MalformedImage("PNG IHDR has the wrong length")
        return struct.unpack_from(">II", ihdr)

    def orientation(self) -> int:
        chunk = self._first(b"eXIf")
        return exif.orientation(chunk.data(self.data)) if chunk else 1

    def _first(self, ctype: bytes) -> Chunk | None:
        return next((c for c in self.chunks if c.type == ctype), None)

    def findings(self) -> list[Finding]:
        inv = Inventory()
        self._budget = MAX_INFLATED
        for chunk in self.chunks:
            self._chunk_findings(chunk, inv)
        if self.image_end < len(self.data):
            inv.add("trailing_data", f"{size_text(len(self.data) - self.image_end)} after IEND")
        return inv.findings()

    def _chunk_findings(self, chunk: Chunk, inv: Inventory) -> None:
        payload = chunk.data(self.data)
        ctype = chunk.type
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, text = _text_chunk(ctype, payload, self._inflate)
            self._text_findings(keyword, text, inv, ctype.decode())
        elif ctype == b"eXIf":
            inv.extend(exif.findings(payload, "EXIF eXIf"))
        elif ctype == b"tIME" and len(payload) == 7:
            y, mo, d, h, mi, s = struct.unpack(">HBBBBB", payload)
            inv.add(
                "datetime", f"modified {y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d} (tIME)"
            )
        elif ctype == b"iCCP":
            name, _, rest = payload.partition(b"\x00")
            profile = self._inflate(rest[1:]) or b""
            inv.extend([icc.finding(profile, f"iCCP {printable(name)!r}")])
        elif ctype == b"caBX":
            inv.add("c2pa", f"C2PA manifest (caBX, {size_text(len(payload))})")
        elif ctype == FILLER and not payload.strip(b"\x00"):
            return  # size-preserving filler: zeros
        elif ctype not in KEEP and ctype[:1].islower():
            inv.add("other_metadata", f"chunk {_name(ctype)} ({size_text(len(payload))})")

    def _inflate(self, data: bytes) -> bytes | None:
        """Decompress within the per-chunk and per-image budgets (None: corrupt or over)."""
        if self._budget <= 0:
            return None
        text = _inflate(data, min(MAX_TEXT, self._budget))
        self._budget -= len(text or b"") + 1
        return text

    def _text_findings(self, keyword: str, text: bytes | None, inv: Inventory, where: str) -> None:
        key = keyword.lower()
        if text is None:
            inv.add("other_metadata", f"{where} {keyword!r} (could not be decompressed)")
            return
        if key == "xml:com.adobe.xmp":
            inv.extend(xmp.findings(text, f"XMP {where}"))
        elif key.startswith("raw profile type"):
            self._raw_profile(key, text, inv, where)
        elif kind := _TEXT_KINDS.get(key):
            inv.add(kind, f"{keyword} {printable(text)!r} ({where})")
        else:
            inv.add("other_metadata", f"{keyword!r}: {printable(text, 60)!r} ({where})")

    def _raw_profile(self, key: str, text: bytes, inv: Inventory, where: str) -> None:
        # ImageMagick's hex dump: "\nexif\n   1234\n4578696600..."; the data after the count.
        lines = text.split(b"\n", 3)
        blob = bytes.fromhex(lines[3].decode("ascii", "replace")) if len(lines) > 3 else b""
        profile = key.removeprefix("raw profile type ").strip()
        if profile in ("exif", "app1") and blob:
            inv.extend(exif.findings(blob, f"EXIF in {where}"))
        elif profile == "xmp" and blob:
            inv.extend(xmp.findings(blob, f"XMP in {where}"))
        else:
            inv.add("other_metadata", f"raw {profile} profile ({where})")

    def padded(self, length: int) -> bytes:
        missing = self._missing(length)
        if missing < 12:  # too small for a chunk: zeros after IEND
            return self.data + bytes(missing)
        iend = self.image_end - 12
        filler = make_chunk(FILLER, bytes(missing - 12))
        return self.data[:iend] + filler + self.data[iend:]

    def strip(self, options: StripOptions) -> Stripped:
        keep = KEEP | ({b"iCCP"} if options.keep_icc else set())
        pieces: list[bytes] = [SIGNATURE]
        removed: list[str] = []
        for chunk in self.chunks:
            if chunk.type in keep and _plausible(chunk):
                pieces.append(self.data[chunk.start : chunk.end])
            else:
                removed.append(f"{chunk.type.decode('latin-1')} chunk")
        orientation = self.orientation() if options.keep_orientation else 1
        if orientation != 1:
            # eXIf must come before IDAT to be seen by every reader: right after IHDR.
            pieces.insert(2, make_chunk(b"eXIf", exif.minimal(orientation)))
        if self.image_end < len(self.data):
            removed.append("data after IEND")
        if options.size_preserving:
            missing = len(self.data) - sum(map(len, pieces))
            if missing >= 12:
                pieces.insert(2, make_chunk(FILLER, bytes(missing - 12)))
            else:  # too small for a chunk (a short trailer went): zeros after IEND
                pieces.append(bytes(missing))
        return Stripped(b"".join(pieces), tuple(dict.fromkeys(removed)))


def _plausible(chunk: Chunk) -> bool:
    lengths = FIXED_LENGTHS.get(chunk.type)
    return lengths is None or chunk.end - chunk.start - 12 in lengths


def _text_chunk(ctype: bytes, payload: bytes, inflate) -> tuple[str, bytes | None]:
    keyword, _, rest = payload.partition(b"\x00")
    name = printable(keyword, 80)
    if ctype == b"tEXt":
        return name, rest
    if ctype == b"zTXt":
        return name, inflate(rest[1:])
    # iTXt: compression flag, method, language\0, translated keyword\0, text
    if len(rest) < 2:
        return name, b""
    compressed = rest[0] == 1
    parts = rest[2:].split(b"\x00", 2)
    text = parts[2] if len(parts) == 3 else b""
    return name, inflate(text) if compressed else text


def _inflate(data: bytes, limit: int) -> bytes | None:
    """Decompress at most `limit` bytes (a zlib bomb stops there); None when corrupt."""
    try:
        d = zlib.decompressobj()
        return d.decompress(data, limit)
    except zlib.error:
        return None
