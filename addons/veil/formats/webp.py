"""WebP: a RIFF container whose EXIF, XMP, C2PA and unknown chunks carry the metadata.

Stripping keeps the image chunks (VP8, VP8L, ALPH, and ANIM/ANMF for animations, whose frames
are rebuilt without unknown sub-chunks), ICCP when asked, and a minimal EXIF holding only
Orientation when the photo is rotated; then rewrites the VP8X flags and the RIFF size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from veil.findings import Finding
from veil.formats import exif, icc, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"})
FRAME_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"ALPH"})
FLAG_ICC, FLAG_ALPHA, FLAG_EXIF, FLAG_XMP, FLAG_ANIM = 0x20, 0x10, 0x08, 0x04, 0x02
FILLER = b"ZERO"
MAX_CHUNKS = 100_000


@dataclass(frozen=True)
class Chunk:
    fourcc: bytes
    start: int  # offset of the FourCC
    size: int  # payload bytes (without the pad byte)

    @property
    def end(self) -> int:
        return self.start + 8 + self.size + (self.size & 1)

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 8 : self.start + 8 + self.size]


def parse_chunks(data: bytes, start: int, end: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    pos = start
    while pos < end:
        if len(chunks) >= MAX_CHUNKS:
            raise MalformedImage("WebP has too many chunks")
        if pos + 8 > end:
            raise MalformedImage("WebP chunk header is truncated")
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        chunk = Chunk(fourcc, pos, size)
        if pos + 8 + size > end:
            raise MalformedImage(f"WebP chunk {printable(fourcc)!r} claims bytes past the end")
        chunks.append(chunk)
        pos = min(chunk.end, end)
    return chunks


def chunk_bytes(fourcc: bytes, payload: bytes) -> bytes:
    pad = b"\x00" if len(payload) & 1 else b""
    return fourcc + struct.pack("<I", len(payload)) + payload + pad


class WebP(ImageFormat):
    name = "webp"
    mime = "image/webp"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
            raise MalformedImage("not a WebP RIFF header")
        self.riff_end = 8 + struct.unpack_from("<I", data, 4)[0]
        if self.riff_end > len(data):
            raise MalformedImage("WebP RIFF size claims bytes past the end")
        self.chunks = parse_chunks(data, 12, self.riff_end)
        if not self.chunks:
            raise MalformedImage("WebP has no chunks")
        self.extended = self.chunks[0].fourcc == b"VP8X"
        if not any(c.fourcc in (b"VP8 ", b"VP8L", b"ANMF") for c in self.chunks):
            raise MalformedImage("WebP has no image data")

    def _first(self, fourcc: bytes) -> Chunk | None:
        return next((c for c in self.chunks if c.fourcc == fourcc), None)

    def dimensions(self) -> tuple[int, int]:
        first = self.chunks[0]
        p = first.payload(self.data)
        if first.fourcc == b"VP8X" and len(p) >= 10:
            w = int.from_bytes(p[4:7], "little") + 1
            h = int.from_bytes(p[7:10], "little") + 1
            return w, h
        if first.fourcc == b"VP8 " and len(p) >= 10 and p[3:6] == b"\x9d\x01\x2a":
            w, h = struct.unpack_from("<HH", p, 6)
            return w & 0x3FFF, h & 0x3FFF
        if first.fourcc == b"VP8L" and len(p) >= 5 and p[0] == 0x2F:
            bits = int.from_bytes(p[1:5], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        raise MalformedImage("WebP header gives no dimensions")

    def orientation(self) -> int:
        chunk = self._first(b"EXIF")
        return exif.orientation(chunk.payload(self.data)) if chunk else 1

    def findings(self) -> list[Finding]:
        inv = Inventory()
        for chunk in self.chunks:
            payload = chunk.payload(self.data)
            fourcc = chunk.fourcc
            if fourcc == b"EXIF":
                inv.extend(exif.findings(payload, "EXIF chunk"))
            elif fourcc in (b"XMP ", b"XMP\x00"):
                inv.extend(xmp.findings(payload, "XMP chunk"))
            elif fourcc == b"ICCP":
                inv.extend([icc.finding(payload, "ICCP chunk")])
            elif fourcc == b"C2PA":
                inv.add("c2pa", f"C2PA manifest (C2PA chunk, {size_text(len(payload))})")
            elif fourcc == b"ANMF":
                for sub in self._frame_extras(chunk):
                    inv.add("other_metadata", f"chunk {printable(sub.fourcc)!r} inside a frame")
            elif fourcc == FILLER and not payload.strip(b"\x00"):
                continue  # size-preserving filler: zeros
            elif fourcc not in IMAGE_CHUNKS and fourcc != b"VP8X":
                inv.add(
                    "other_metadata", f"chunk {printable(fourcc)!r} ({size_text(len(payload))})"
                )
        if self.riff_end < len(self.data):
            inv.add(
                "trailing_data", f"{size_text(len(self.data) - self.riff_end)} after the RIFF data"
            )
        return inv.findings()

    def _frame_chunks(self, frame: Chunk) -> list[Chunk]:
        start = frame.start + 8 + 16  # ANMF: 16 bytes of frame header, then sub-chunks
        end = frame.start + 8 + frame.size
        if start > end:
            raise MalformedImage("WebP animation frame is truncated")
        return parse_chunks(self.data, start, end)

    def _frame_extras(self, frame: Chunk) -> list[Chunk]:
        return [c for c in self._frame_chunks(frame) if c.fourcc not in FRAME_CHUNKS]

    def padded(self, length: int) -> bytes:
        missing = self._missing(length)
        if missing < 8 or not self.extended:  # no room for a chunk: zeros after the RIFF
            return self.data + bytes(missing)
        filler = chunk_bytes(FILLER, bytes(missing - 8 - (missing & 1)))
        out = _riff([self.data[12 : self.riff_end], filler])
        return out + bytes(length - len(out))

    def strip(self, options: StripOptions) -> Stripped:
        data = self.data
        body: list[bytes] = []
        removed: list[str] = []
        vp8x: bytes | None = None
        for chunk in self.chunks:
            if chunk.fourcc == b"VP8X":
                vp8x = chunk.payload(data)
            elif chunk.fourcc == b"ANMF":
                body.append(self._clean_frame(chunk, removed))
            elif chunk.fourcc == b"ANIM" and chunk.size >= 6:  # fixed size: nothing rides along
                body.append(chunk_bytes(b"ANIM", chunk.payload(data)[:6]))
            elif chunk.fourcc in IMAGE_CHUNKS or (chunk.fourcc == b"ICCP" and options.keep_icc):
                body.append(data[chunk.start : chunk.end])
            else:
                removed.append(f"{printable(chunk.fourcc) or 'unnamed'} chunk")
        flags_exif = 0
        orientation = self.orientation() if options.keep_orientation else 1
        if orientation != 1 and vp8x is not None:
            body.append(chunk_bytes(b"EXIF", exif.minimal(orientation)))
            flags_exif = FLAG_EXIF
        if vp8x is not None:
            flags = vp8x[0] & (FLAG_ALPHA | FLAG_ANIM)
            flags |= flags_exif | (FLAG_ICC if options.keep_icc and self._first(b"ICCP") else 0)
            body.insert(0, chunk_bytes(b"VP8X", bytes([flags]) + vp8x[1:10]))
        if self.riff_end < len(data):
            removed.append("data after the RIFF end")
        out = _riff(body)
        if options.size_preserving:
            out = self._same_length(body, out)
        return Stripped(out, tuple(dict.fromkeys(removed)))

    def _clean_frame(self, frame: Chunk, removed: list[str]) -> bytes:
        subs = self._frame_chunks(frame)
        extras = [c for c in subs if c.fourcc not in FRAME_CHUNKS]
        if not extras:
            return self.data[frame.start : frame.end]
        removed.extend(f"{printable(c.fourcc)!r} chunk inside a frame" for c in extras)
        header = self.data[frame.start + 8 : frame.start + 24]
        kept = b"".join(self.data[c.start : c.end] for c in subs if c.fourcc in FRAME_CHUNKS)
        return chunk_bytes(b"ANMF", header + kept)

    def _same_length(self, body: list[bytes], out: bytes) -> bytes:
        missing = len(self.data) - len(out)
        if missing >= 8 and self.extended:
            filler = chunk_bytes(FILLER, bytes(missing - 8 - (missing & 1)))
            out = _riff([*body, filler])
        return out + bytes(len(self.data) - len(out))  # an odd byte (or a simple WebP): zeros


def _riff(chunks: list[bytes]) -> bytes:
    size = 4 + sum(map(len, chunks))
    return b"".join([b"RIFF", struct.pack("<I", size), b"WEBP", *chunks])
