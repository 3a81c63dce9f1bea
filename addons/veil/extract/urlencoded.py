"""application/x-www-form-urlencoded text: fields whose values are layers, percent-decoded.

Recognised by its grammar, not by the Content-Type (Gemini web labels raw photo bytes as a
form, and a form may arrive labelled as anything). A replacement is percent-encoded the way
the original value was: the same bytes escaped, the same hex case, `+` or `%20` for spaces.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from veil.extract.layers import Encoder, Layer, OffsetMap

# Bytes a form encoder leaves as they are; everything else arrives percent-escaped.
_FORM = re.compile(rb"[A-Za-z0-9._~%+*!'()/:;,@$?\[\]-]*=[A-Za-z0-9._~%+*!'()/:;,@$?\[\]=&-]*")
_FIELD_NAME = re.compile(rb"[A-Za-z0-9._~%+*\[\]-]{1,256}=")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_BYTES = [bytes([b]) for b in range(256)]
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class Field:
    name: str
    start: int  # the value's first byte
    end: int


def looks_like_form(data: bytes) -> bool:
    return _FIELD_NAME.match(data) is not None and _FORM.fullmatch(data) is not None


def fields_with(data: bytes, positions: list[int]) -> Iterator[Field]:
    """The fields whose values contain one of the sorted `positions`."""
    pos = 0
    size = len(data)
    while pos <= size:
        end = data.find(b"&", pos)
        end = size if end < 0 else end
        equals = data.find(b"=", pos, end)
        if equals >= 0:
            i = bisect_left(positions, equals + 1)
            if i < len(positions) and positions[i] < end:
                name = unquote_to_bytes(data[pos:equals].replace(b"+", b" "))
                yield Field(name.decode("utf-8", "replace"), equals + 1, end)
        pos = end + 1


def value_layer(parent: Layer, field: Field) -> Layer:
    raw = parent.data[field.start : field.end]
    where = parent.inner(f'form field "{field.name}"')
    escapes: list[tuple[int, int, int]] = []
    style: dict[int, bytes] = {}

    def decode(m: re.Match[bytes]) -> bytes:
        escapes.append((m.start(), m.end(), 1))
        byte = int(m.group(1), 16)
        if byte not in style:
            style[byte] = m.group()
        return _BYTES[byte]

    # '+' written literally is a space; an escaped '%2B' is a plus.
    data = _PERCENT.sub(decode, raw.replace(b"+", b" ")) if b"%" in raw else raw.replace(b"+", b" ")
    if b"+" in raw:
        style.setdefault(0x20, b"+")
    literal = frozenset(raw.translate(None, b"%+"))
    offsets = OffsetMap(escapes) if escapes else None
    return parent.child(
        field.start, data, where, offsets=offsets, escape=percent_escaper(style, literal)
    )


def percent_escaper(style: dict[int, bytes], literal: frozenset[int]) -> Encoder:
    """Escape new text as the original value was: its escapes, its literal bytes, its case."""
    upper = not any(v[1:].islower() for v in style.values() if v != b"+")

    def written(byte: int) -> bytes | None:
        if byte in style:
            return style[byte]
        if byte in _UNRESERVED or (byte in literal and byte not in b"&=+%#"):
            return None
        text = b"%%%02X" % byte
        return text if upper else text.lower()

    def escape(fragment: bytes) -> bytes:
        out = fragment.replace(b"%", written(0x25) or b"%25") if b"%" in fragment else fragment
        for byte in sorted(set(out.translate(None, bytes(_UNRESERVED) + b"%"))):
            form = written(byte)
            if form is not None:
                out = out.replace(bytes([byte]), form)
        return out

    return escape
