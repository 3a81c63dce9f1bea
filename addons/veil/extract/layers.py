"""Decoded views of parts of a body, each knowing where its bytes came from.

A layer is one level of encoding undone: the body itself, a multipart part, the content of a
JSON string (escapes undone), a form field's value (percent-decoding undone). Every layer maps
its offsets back to the body and knows how to encode new text the way its own text was
encoded, so a payload found five layers deep is spliced back as one byte range of the body,
and every byte around it stays as it was.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

Encoder = Callable[[bytes], bytes]


class Misaligned(ValueError):
    """An offset falls inside an escape sequence, so no byte of the raw text corresponds to it."""


@dataclass(frozen=True)
class Escape:
    """Raw bytes [raw_start, raw_end) decode to [dec_start, dec_end) of a different length."""

    raw_start: int
    raw_end: int
    dec_start: int
    dec_end: int


class OffsetMap:
    """Offsets in decoded text -> offsets in the raw text it was decoded from."""

    def __init__(self, escapes: list[Escape]) -> None:
        self._escapes = escapes
        self._dec_starts = [e.dec_start for e in escapes]

    def to_raw(self, offset: int) -> int:
        i = bisect_right(self._dec_starts, offset) - 1
        if i < 0:
            return offset
        escape = self._escapes[i]
        if offset == escape.dec_start:
            return escape.raw_start
        if offset < escape.dec_end:
            raise Misaligned(f"decoded offset {offset} is inside an escape sequence")
        return escape.raw_end + (offset - escape.dec_end)


def _identity(fragment: bytes) -> bytes:
    return fragment


@dataclass
class Layer:
    data: bytes  # this layer's decoded bytes
    where: str  # for people: 'multipart part "file"', 'json $.messages[0].content'
    depth: int = 0
    parent: Layer | None = None
    start: int = 0  # where this layer's raw bytes start in the parent's data
    offsets: OffsetMap | None = None  # None: every decoded byte is one raw byte
    escape: Encoder = field(default=_identity)  # decoded text -> the parent's raw text

    def child(
        self,
        start: int,
        data: bytes,
        where: str,
        *,
        offsets: OffsetMap | None = None,
        escape: Encoder = _identity,
    ) -> Layer:
        return Layer(data, where, self.depth + 1, self, start, offsets, escape)

    def inner(self, text: str) -> str:
        """How people read the place of something inside this layer."""
        return f"{self.where} > {text}" if self.parent is not None else text

    def to_root(self, offset: int) -> int:
        """The body offset of this layer's `offset` (raises Misaligned inside an escape)."""
        layer: Layer | None = self
        while layer is not None and layer.parent is not None:
            if layer.offsets is not None:
                offset = layer.offsets.to_raw(offset)
            offset += layer.start
            layer = layer.parent
        return offset

    def encoder(self, leaf: Encoder) -> Encoder:
        """`leaf` followed by every layer's escaping up to the body."""
        chain: list[Encoder] = []
        layer: Layer | None = self
        while layer is not None and layer.parent is not None:
            if layer.escape is not _identity:
                chain.append(layer.escape)
            layer = layer.parent

        def encode(new: bytes) -> bytes:
            out = leaf(new)
            for escape in chain:
                out = escape(out)
            return out

        return encode
