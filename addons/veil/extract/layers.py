"""Decoded views of parts of a body, each knowing where its bytes came from.

A layer is one level of encoding undone: the body itself, a multipart part, the content of a
JSON string (escapes undone), a form field's value (percent-decoding undone). Every layer maps
its offsets back to the body and knows how to encode new text the way its own text was
encoded, so a payload found five layers deep is spliced back as one byte range of the body,
and every byte around it stays as it was.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

Encoder = Callable[[bytes], bytes]


class Misaligned(ValueError):
    """An offset falls inside an escape sequence, so no byte of the raw text corresponds to it."""


class OffsetMap:
    """Offsets in decoded text -> offsets in the raw text it was decoded from.

    Built from the escape sequences of the raw text, in order: (raw start, raw end, decoded
    length) each; every byte between escapes decodes to itself.
    """

    def __init__(self, escapes: list[tuple[int, int, int]]) -> None:
        self._raw_starts = [e[0] for e in escapes]
        self._raw_ends = [e[1] for e in escapes]
        # Raw offset minus decoded offset before each escape: what the earlier ones saved.
        shifts = accumulate((e[1] - e[0] - e[2] for e in escapes), initial=0)  # one extra
        starts = zip(self._raw_starts, shifts, strict=False)
        self._dec_starts = [start - shift for start, shift in starts]
        self._dec_ends = [d + e[2] for d, e in zip(self._dec_starts, escapes, strict=True)]

    def to_raw(self, offset: int) -> int:
        i = bisect_right(self._dec_starts, offset) - 1
        if i < 0:
            return offset
        if offset == self._dec_starts[i]:
            return self._raw_starts[i]
        if offset < self._dec_ends[i]:
            raise Misaligned(f"decoded offset {offset} is inside an escape sequence")
        return self._raw_ends[i] + (offset - self._dec_ends[i])

    def to_decoded(self, raw: int) -> int:
        """The decoded offset of a raw offset (the start of an escape it falls inside)."""
        i = bisect_right(self._raw_starts, raw) - 1
        if i < 0:
            return raw
        if raw < self._raw_ends[i]:
            return self._dec_starts[i]
        return self._dec_ends[i] + (raw - self._raw_ends[i])


class UniformOffsetMap(OffsetMap):
    """The same map when every escape is one sequence decoding to one byte (`\\/` -> `/`).

    Built from the raw text split on that sequence, without a Python step per escape: a
    base64 string with every slash escaped has one escape every 64 characters.
    """

    def __init__(self, chunk_lengths: list[int], escape_length: int) -> None:
        # Decoded offset of escape k: the text before it plus the k escapes before it.
        self._before = list(accumulate(chunk_lengths[:-1]))
        self._extra = escape_length - 1

    def to_raw(self, offset: int) -> int:
        # Escapes that start before `offset` each add `_extra` raw bytes.
        count = bisect_left(range(len(self._before)), offset, key=lambda k: self._before[k] + k)
        return offset + count * self._extra

    def to_decoded(self, raw: int) -> int:
        step = self._extra + 1  # raw length of one escape
        count = bisect_left(range(len(self._before)), raw, key=lambda k: self._before[k] + k * step)
        if count and raw < self._before[count - 1] + (count - 1) * step + step:
            return self._before[count - 1] + count - 1  # inside escape count-1
        return raw - count * self._extra


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
