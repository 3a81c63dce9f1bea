"""JSON text: the strings that may hold images, and layers that undo their escapes.

The document is never parsed into objects and never re-serialised. A scan over its structural
characters finds the string tokens that contain a prefilter hit, with their JSON path for the
audit record; each such string becomes a layer whose escapes (`\\/`, `\\n`, `\\u002B`, `\\"`)
are undone, and whose new text is escaped the way the original was. It works on any text made
of JSON-style strings: JSON at any depth, NDJSON, keyless JSPB arrays of arrays, and JSON
nested inside a JSON string (the inner document is just the next layer).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from veil.extract.layers import Encoder, Layer, OffsetMap, UniformOffsetMap

_STRUCTURE = re.compile(rb'["{}\[\],:]')
_ESCAPE = re.compile(
    rb"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"  # a surrogate pair
    rb"|\\u([0-9a-fA-F]{4})|\\(.)",
    re.DOTALL,
)
_SHORT = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
# How a JSON encoder must write these bytes (others it may write as they are).
_REQUIRED = {
    0x22: b'\\"',
    0x5C: b"\\\\",
    0x08: b"\\b",
    0x0C: b"\\f",
    0x0A: b"\\n",
    0x0D: b"\\r",
    0x09: b"\\t",
} | {c: b"\\u%04x" % c for c in range(0x20) if c not in (0x08, 0x09, 0x0A, 0x0C, 0x0D)}
_MAX_PATH_PARTS = 12


@dataclass(frozen=True)
class StringToken:
    start: int  # first byte after the opening quote
    end: int  # the closing quote
    path: str


def looks_like_json(data: bytes) -> bool:
    head = data[:64].lstrip()
    return head[:1] in (b"{", b"[")


def strings_with(data: bytes, positions: list[int]) -> Iterator[StringToken]:
    """The string tokens of `data` that contain one of the sorted `positions`."""
    stack: list[_Frame] = []
    pos = 0
    last = positions[-1]
    while pos <= last:
        m = _STRUCTURE.search(data, pos)
        if m is None:
            return
        at = m.start()
        char = data[at]
        if char != 0x22:  # '"'
            _structure(stack, char)
            pos = at + 1
            continue
        end = string_end(data, at + 1)
        if end < 0:
            return  # an unterminated string: what follows is not JSON text
        frame = stack[-1] if stack else None
        is_key = frame is not None and frame.is_object and frame.expect_key
        i = bisect_left(positions, at + 1)
        if i < len(positions) and positions[i] < end:
            yield StringToken(at + 1, end, _path(stack, is_key))
        if is_key and frame is not None:
            frame.key = data[at + 1 : end]
        pos = end + 1


def string_end(data: bytes, start: int) -> int:
    """The offset of the quote that closes the string starting at `start`, or -1."""
    pos = start
    while True:
        quote = data.find(b'"', pos)
        if quote < 0:
            return -1
        backslashes = 0
        while quote - backslashes - 1 >= start and data[quote - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return quote
        pos = quote + 1


def string_layer(parent: Layer, token: StringToken) -> Layer:
    """A layer holding the string's content with its escapes undone."""
    raw = parent.data[token.start : token.end]
    where = parent.inner(f"json {token.path}")
    # Line breaks written as they are: not strict JSON, so keep writing them that way.
    literal = {c: bytes([c]) for c in b"\r\n\t" if c in raw}
    if b"\\" not in raw:
        return parent.child(token.start, raw, where, escape=escaper(literal))
    decoded, offsets, style = unescape(raw)
    escape = escaper(literal | style)
    return parent.child(token.start, decoded, where, offsets=offsets, escape=escape)


def unescape(raw: bytes) -> tuple[bytes, OffsetMap, dict[int, bytes]]:
    """The string's bytes, where they came from, and how it wrote each escaped ASCII byte.

    The style only holds bytes the string always escaped: one it also wrote as they are (an
    inconsistent encoder) is written as it is, which is valid either way.
    """
    if raw.count(b"\\") == raw.count(b"\\/"):  # only escaped slashes: base64 from PHP & co
        chunks = raw.split(b"\\/")
        offsets = UniformOffsetMap(list(map(len, chunks)), 2)
        always = raw.count(b"/") == len(chunks) - 1
        return b"/".join(chunks), offsets, {0x2F: b"\\/"} if always else {}
    decoded_forms: dict[bytes, bytes] = {}  # each distinct escape, decoded once
    uses: dict[bytes, int] = {}
    escapes = []

    def decode(m: re.Match[bytes]) -> bytes:
        text = m.group()
        out = decoded_forms.get(text)
        if out is None:
            out = decoded_forms[text] = _decode_escape(m)
            uses[text] = 0
        uses[text] += 1
        escapes.append((m.start(), m.end(), len(out)))
        return out

    decoded = _ESCAPE.sub(decode, raw)
    style: dict[int, bytes] = {}
    for text, out in decoded_forms.items():
        if len(out) == 1 and out[0] < 0x80:
            style.setdefault(out[0], text)
    for char in list(style):
        inside_escapes = sum(n * text.count(char) for text, n in uses.items())
        if char not in _REQUIRED and raw.count(char) > inside_escapes:
            del style[char]  # also written as it is
    return decoded, OffsetMap(escapes), style


def _decode_escape(m: re.Match[bytes]) -> bytes:
    high, low, code, char = m.groups()
    if char is not None:
        return _SHORT.get(char[0], char)
    if high is not None:
        point = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
        return chr(point).encode("utf-8")
    return chr(int(code, 16)).encode("utf-8", "surrogatepass")


def escaper(style: dict[int, bytes]) -> Encoder:
    """Escape new string content the way the original string was escaped."""
    table = _REQUIRED | style
    backslash = table[0x5C]
    # Bytes no rule touches; one pass over new text leaves only the ones that need work.
    untouched = bytes(b for b in range(256) if b not in table)

    def escape(fragment: bytes) -> bytes:
        special = set(fragment.translate(None, untouched))
        if not special:
            return fragment
        out = fragment.replace(b"\\", backslash) if 0x5C in special else fragment
        for char in special - {0x5C}:
            out = out.replace(bytes([char]), table[char])
        return out

    return escape


@dataclass
class _Frame:
    is_object: bool
    index: int = 0
    key: bytes = b""
    expect_key: bool = True

    def part(self) -> str:
        if not self.is_object:
            return f"[{self.index}]"
        try:
            key = json.loads(b'"' + self.key + b'"')
        except ValueError:
            key = self.key.decode("utf-8", "replace")
        return f".{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"[{key!r}]"


def _structure(stack: list[_Frame], char: int) -> None:
    if char in (0x7B, 0x5B):  # { [
        stack.append(_Frame(is_object=char == 0x7B))
    elif char in (0x7D, 0x5D):  # } ]
        if stack:
            stack.pop()
    elif stack and char == 0x2C:  # ,
        frame = stack[-1]
        if frame.is_object:
            frame.expect_key = True
        else:
            frame.index += 1
    elif stack and char == 0x3A:  # :
        stack[-1].expect_key = False


def _path(stack: list[_Frame], is_key: bool) -> str:
    frames = stack[:-1] if is_key else stack
    parts = [f.part() for f in frames]
    if len(parts) > _MAX_PATH_PARTS:
        parts = ["…", *parts[-_MAX_PATH_PARTS:]]
    path = "$" + "".join(parts)
    return f"{path} (a key)" if is_key else path
