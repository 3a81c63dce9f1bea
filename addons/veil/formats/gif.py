"""GIF: metadata lives in comment, plain-text and application extensions, and after the trailer.

Stripping keeps the header, colour tables, image descriptors with their LZW data, graphic
control extensions (frame timing and transparency) and the NETSCAPE2.0 looping extension
(rebuilt with only its loop count); it drops every other extension and stops at the trailer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from veil.findings import Finding
from veil.formats import icc, xmp
from veil.formats.base import ImageFormat, MalformedImage, StripOptions, Stripped
from veil.formats.inventory import Inventory, size_text
from veil.formats.tiffdata import printable

EXTENSION, IMAGE, TRAILER = 0x21, 0x2C, 0x3B
GCE, COMMENT, PLAIN_TEXT, APPLICATION = 0xF9, 0xFE, 0x01, 0xFF
LOOPING_IDS = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
MAX_BLOCKS = 1_000_000


@dataclass(frozen=True)
class Block:
    kind: int  # EXTENSION or IMAGE
    label: int  # extension label (0 for images)
    start: int
    end: int


class Gif(ImageFormat):
    name = "gif"
    mime = "image/gif"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        if len(data) < 14 or data[:6] not in (b"GIF87a", b"GIF89a"):
            raise MalformedImage("not a GIF header")
        self.screen = struct.unpack_from("<HH", data, 6)
        packed = data[10]
        self.header_end = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
        self.blocks, self.image_end, self.extent = self._parse()

    def _parse(self) -> tuple[list[Block], int, tuple[int, int]]:
        data, pos = self.data, self.header_end
        blocks: list[Block] = []
        width, height = self.screen
        while len(blocks) < MAX_BLOCKS:
            if pos >= len(data):
                raise MalformedImage("GIF ends before its trailer")
            introducer = data[pos]
            if introducer == TRAILER:
                return blocks, pos + 1, (width, height)
            if introducer == EXTENSION:
                if pos + 2 > len(data):
                    raise MalformedImage("GIF extension is truncated")
                end = _skip_sub_blocks(data, pos + 2)
                blocks.append(Block(EXTENSION, data[pos + 1], pos, end))
            elif introducer == IMAGE:
                if pos + 11 > len(data):
                    raise MalformedImage("GIF image descriptor is truncated")
                left, top, w, h, packed = struct.unpack_from("<HHHHB", data, pos + 1)
                width, height = max(width, left + w), max(height, top + h)
                table = 3 << ((packed & 7) + 1) if packed & 0x80 else 0
                end = _skip_sub_blocks(data, pos + 10 + table + 1)
                blocks.append(Block(IMAGE, 0, pos, end))
            else:
                raise MalformedImage(f"GIF has an unknown block 0x{introducer:02X} at {pos}")
            pos = end
        raise MalformedImage("GIF has too many blocks")

    def dimensions(self) -> tuple[int, int]:
        return self.extent

    def _app_id(self, block: Block) -> bytes:
        data = self.data
        if data[block.start + 2] != 11:
            return b""
        return data[block.start + 3 : block.start + 14]

    def findings(self) -> list[Finding]:
        inv = Inventory()
        for block in self.blocks:
            if block.kind != EXTENSION:
                continue
            if block.label == COMMENT:
                text = printable(self._sub_block_data(block.start + 2), 120)
                if text:
                    inv.add("comment", f"comment {text!r}")
            elif block.label == PLAIN_TEXT:
                inv.add("comment", "plain-text extension")
            elif block.label == APPLICATION:
                self._app_findings(block, inv)
            elif block.label != GCE:
                inv.add("other_metadata", f"extension 0x{block.label:02X}")
        if self.image_end < len(self.data):
            inv.add(
                "trailing_data", f"{size_text(len(self.data) - self.image_end)} after the trailer"
            )
        return inv.findings()

    def _app_findings(self, block: Block, inv: Inventory) -> None:
        app = self._app_id(block)
        if app in LOOPING_IDS:
            return
        if app == b"XMP DataXMP":
            # XMP is stored raw (not in sub-blocks), followed by a 258-byte "magic trailer".
            raw = self.data[block.start + 14 : block.end]
            inv.extend(xmp.findings(raw[: raw.rfind(b">") + 1], "XMP extension"))
        elif app == b"ICCRGBG1012":
            profile = self._sub_block_data(block.start + 14)
            inv.extend([icc.finding(profile, "ICC extension")])
        elif app.startswith(b"C2PA_GIF"):
            inv.add(
                "c2pa",
                f"C2PA manifest (application extension, {size_text(block.end - block.start)})",
            )
        else:
            inv.add("other_metadata", f"application extension {printable(app)!r}")

    def _sub_block_data(self, pos: int) -> bytes:
        parts = []
        while pos < len(self.data) and (n := self.data[pos]):
            parts.append(self.data[pos + 1 : pos + 1 + n])
            pos += 1 + n
        return b"".join(parts)

    def padded(self, length: int) -> bytes:
        missing = self._missing(length)
        filler = _comment_filler(missing)
        if filler is None:  # no comment block has exactly this size: zeros after the trailer
            return self.data + bytes(missing)
        trailer = self.image_end - 1
        return self.data[:trailer] + filler + self.data[trailer:]

    def strip(self, options: StripOptions) -> Stripped:
        data = self.data
        pieces: list[bytes] = [data[: self.header_end]]
        removed: list[str] = []
        for block in self.blocks:
            if block.kind == IMAGE:
                pieces.append(data[block.start : block.end])
            elif block.label == GCE and data[block.start + 2] == 4:
                # Exactly one 4-byte sub-block (timing, disposal, transparency) and the end.
                pieces.append(data[block.start : block.start + 7] + b"\x00")
            elif block.label == APPLICATION and self._app_id(block) in LOOPING_IDS:
                pieces.append(self._looping(block))
            else:
                removed.append(_describe(block, self._app_id(block)))
        if self.image_end < len(data):
            removed.append("data after the trailer")
        if options.size_preserving:
            missing = len(data) - sum(map(len, pieces)) - 1
            filler = _comment_filler(missing)
            pieces.append(filler if filler is not None else b"")
            pieces.append(b";")
            if filler is None:
                pieces.append(bytes(missing))
        else:
            pieces.append(b";")
        return Stripped(b"".join(pieces), tuple(dict.fromkeys(removed)))

    def _looping(self, block: Block) -> bytes:
        """The looping extension with only its loop-count sub-block."""
        loops = 0
        pos = block.start + 14
        while pos < block.end and (n := self.data[pos]):
            if n == 3 and self.data[pos + 1] == 1:
                loops = struct.unpack_from("<H", self.data, pos + 2)[0]
            pos += 1 + n
        return (
            b"\x21\xff\x0b" + self._app_id(block) + b"\x03\x01" + struct.pack("<H", loops) + b"\x00"
        )


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Offset past a chain of data sub-blocks (each: a length byte, then that many bytes)."""
    size = len(data)
    while True:
        if pos >= size:
            raise MalformedImage("GIF data sub-blocks run past the end")
        n = data[pos]
        pos += 1
        if n == 0:
            return pos
        pos += n
        if pos > size:
            raise MalformedImage("GIF data sub-block claims bytes past the end")


def _describe(block: Block, app: bytes) -> str:
    if block.label == COMMENT:
        return "comment extension"
    if block.label == APPLICATION:
        return f"application extension {printable(app)!r}"
    if block.label == PLAIN_TEXT:
        return "plain-text extension"
    return f"extension 0x{block.label:02X}"


def _comment_filler(n: int) -> bytes | None:
    """A comment extension of exactly `n` bytes of zeros (None when no such block exists)."""
    if n == 0:
        return b""
    if n < 3 or n == 4:
        return None
    parts = [b"\x21\xfe"]
    body = n - 3
    while body > 0:
        k = min(255, body - 1)
        if body - (k + 1) == 1:
            k -= 1
        parts.append(bytes([k]) + bytes(k))
        body -= k + 1
    parts.append(b"\x00")
    return b"".join(parts)
