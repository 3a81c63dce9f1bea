"""multipart/* bodies, parsed by byte offsets so that every unchanged byte stays identical.

mitmproxy's own multipart helpers split on line breaks and lose filenames and part types;
they are never used on uploads. Every part is looked at, file parts and text fields alike: a
part may be an image, base64 text (HuggingChat's `base64;name` files), a data URL in a text
field (Microsoft 365 Copilot's `FileBase64`) or JSON holding either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from veil.extract.layers import Layer
from veil.extract.payloads import Collector, SpliceError
from veil.formats import detect

_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s]+))', re.IGNORECASE)
# A body that starts with a delimiter line is multipart whatever its Content-Type says.
_LEADING_DELIMITER = re.compile(rb"--([0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-])\r?\n")
_PARAM = re.compile(
    r';\s*([A-Za-z0-9!#$&+.^_`|~-]+\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))', re.DOTALL
)
_TRANSPORT_PADDING = b" \t"


class MalformedMultipart(ValueError):
    pass


def boundary_from_content_type(content_type: str) -> bytes | None:
    if not content_type.lower().lstrip().startswith("multipart/"):
        return None
    m = _BOUNDARY.search(content_type)
    if not m:
        raise MalformedMultipart("the multipart body has no boundary parameter")
    boundary = m.group(1) if m.group(1) is not None else m.group(2)
    if m.group(1) is not None:
        boundary = re.sub(r"\\(.)", r"\1", boundary)
    if not boundary:
        raise MalformedMultipart("the multipart body has an empty boundary")
    return boundary.encode("latin-1")


def sniff_boundary(body: bytes) -> bytes | None:
    """The boundary of a body that is multipart by its bytes (its first line is a delimiter)."""
    m = _LEADING_DELIMITER.match(body)
    if not m:
        return None
    boundary = m.group(1)
    return boundary if b"--" + boundary + b"--" in body[-len(boundary) - 64 :] else None


@dataclass(frozen=True)
class Part:
    headers: bytes  # the raw header block
    start: int  # content start offset in the body
    end: int  # content end offset (exclusive)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for line in self.headers.splitlines():
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == wanted:
                return value.strip().decode("utf-8", "replace")
        return None

    def disposition(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for m in _PARAM.finditer(self.header("content-disposition") or ""):
            key = m.group(1).lower()
            value = m.group(2) if m.group(2) is not None else m.group(3)
            if m.group(2) is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            if key.endswith("*"):  # RFC 5987: charset'lang'percent-encoded
                key = key[:-1]
                value = unquote(value.split("'", 2)[-1], encoding="utf-8", errors="replace")
            params.setdefault(key, value)
        return params

    def describe(self) -> str:
        params = self.disposition()
        text = f'multipart part "{params.get("name", "")}"'
        filename = params.get("filename")
        return f"{text} ({filename})" if filename else text


def parse(body: bytes, boundary: bytes) -> list[Part]:
    """Every part of a multipart body, by offset. The preamble and epilogue are left alone."""
    dash = b"--" + boundary
    if body.startswith(dash):
        pos = 0
    else:
        pos = body.find(b"\n" + dash)
        if pos < 0:
            raise MalformedMultipart("the multipart body does not contain its boundary")
        pos += 1
    newline = _line_end(body, pos + len(dash))
    if newline is None:
        raise MalformedMultipart("the multipart body's first boundary line is malformed")
    delimiter = newline + dash
    parts: list[Part] = []
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):
            return parts  # the close delimiter
        line_end = _padding_end(body, after)
        if not body.startswith(newline, line_end):
            raise MalformedMultipart("a multipart boundary line is malformed")
        header_start = line_end + len(newline)
        if body.startswith(newline, header_start):
            headers_end, content_start = header_start, header_start + len(newline)
        else:
            headers_end = body.find(newline + newline, header_start)
            if headers_end < 0:
                raise MalformedMultipart("a multipart part has no blank line after its headers")
            content_start = headers_end + 2 * len(newline)
        next_delim = _find_delimiter(body, delimiter, content_start - len(newline))
        if next_delim < 0:
            raise MalformedMultipart("the multipart body has no closing boundary")
        content_start = min(content_start, next_delim)
        parts.append(Part(body[header_start:headers_end], content_start, next_delim))
        pos = next_delim + len(newline)


def _line_end(body: bytes, pos: int) -> bytes | None:
    pos = _padding_end(body, pos)
    if body.startswith(b"\r\n", pos):
        return b"\r\n"
    if body.startswith(b"\n", pos):
        return b"\n"
    return None


def _padding_end(body: bytes, pos: int) -> int:
    while pos < len(body) and body[pos] in _TRANSPORT_PADDING:
        pos += 1
    return pos


def _find_delimiter(body: bytes, delimiter: bytes, start: int) -> int:
    """The next real delimiter: followed by '--' or by the end of its line."""
    pos = start
    while True:
        found = body.find(delimiter, pos)
        if found < 0:
            return -1
        after = found + len(delimiter)
        if body.startswith(b"--", after) or _line_end(body, after) is not None:
            return found
        pos = found + 1


def structure(body: bytes, content_type: str) -> tuple[bytes, list[Part]] | None:
    """The boundary and parts of a multipart body; None when the body is not multipart.

    A body that is a file (an image, a PDF) is that file whatever its Content-Type says,
    unless it also parses as the multipart body it claims to be.
    """
    is_file = detect(body) is not None
    try:
        boundary = boundary_from_content_type(content_type)
        if boundary is None and not is_file:
            boundary = sniff_boundary(body)
        return (boundary, parse(body, boundary)) if boundary is not None else None
    except MalformedMultipart:
        if is_file:
            return None
        raise


def extract(root: Layer, boundary: bytes, parts: list[Part], found: Collector) -> None:
    from veil.extract.scan import look_at

    body = root.data
    for part in parts:
        layer = root.child(part.start, body[part.start : part.end], part.describe())
        look_at(layer, found)
    found.checks.append(_same_structure(parts, boundary))


def _same_structure(parts: list[Part], boundary: bytes):
    """A spliced body must still hold the same parts with the same headers."""

    def check(new_body: bytes) -> None:
        try:
            new_parts = parse(new_body, boundary)
        except MalformedMultipart as exc:
            raise SpliceError(f"the new multipart body does not parse: {exc}") from exc
        if [p.headers for p in new_parts] != [p.headers for p in parts]:
            raise SpliceError("a new part's content contains the multipart boundary")

    return check
