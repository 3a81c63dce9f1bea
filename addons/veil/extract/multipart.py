"""multipart/form-data, parsed by byte offsets so that unchanged bytes stay identical.

mitmproxy's own multipart helpers split on line breaks and lose filenames and part types;
they are never used on uploads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from veil.extract.limits import Limits

_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;,\s]+))', re.IGNORECASE)
_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'\bfilename="([^"]*)"', re.IGNORECASE)


class MalformedMultipart(ValueError):
    pass


def boundary_from_content_type(content_type: str) -> bytes | None:
    if not content_type.lower().lstrip().startswith("multipart/"):
        return None
    m = _BOUNDARY.search(content_type)
    if not m:
        raise MalformedMultipart("multipart body without a boundary parameter")
    return (m.group(1) or m.group(2)).encode("latin-1")


@dataclass(frozen=True)
class Part:
    headers: bytes
    start: int  # content start offset in the body
    end: int  # content end offset (exclusive)

    @property
    def name(self) -> str:
        m = _NAME.search(self.headers)
        return m.group(1).decode("utf-8", "replace") if m else ""

    @property
    def filename(self) -> str | None:
        m = _FILENAME.search(self.headers)
        return m.group(1).decode("utf-8", "replace") if m else None

    def describe(self) -> str:
        name = f'multipart part "{self.name}"'
        return f"{name} ({self.filename})" if self.filename else name


def parse(body: bytes, boundary: bytes) -> list[Part]:
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    if pos < 0:
        raise MalformedMultipart("multipart body does not contain its boundary")
    parts: list[Part] = []
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):
            return parts  # close delimiter
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise MalformedMultipart("multipart body ends inside a boundary line")
        headers_end = body.find(b"\r\n\r\n", line_end)
        if headers_end < 0:
            raise MalformedMultipart("multipart part without the blank line after its headers")
        content_start = headers_end + 4
        next_delim = body.find(b"\r\n" + delimiter, content_start - 2)
        if next_delim < 0:
            raise MalformedMultipart("multipart body has no closing boundary")
        content_start = min(content_start, next_delim + 2)
        parts.append(Part(body[line_end + 2 : headers_end], content_start, next_delim))
        pos = next_delim + 2


def extract(body: bytes, boundary: bytes, limits: Limits) -> list:
    from veil.extract import Payload, Span
    from veil.formats import detect, is_image_format

    spans = []
    for part in parse(body, boundary):
        content = body[part.start : part.end]
        fmt = detect(content)
        if not is_image_format(fmt):
            continue
        payload = Payload(content, fmt, part.describe())
        spans.append(Span(part.start, part.end, payload, _checked_encoder(boundary)))
        limits.check_count(len(spans))
    return spans


def _checked_encoder(boundary: bytes):
    def encode(new: bytes) -> bytes:
        if b"--" + boundary in new:
            raise MalformedMultipart("the new part content contains the multipart boundary")
        return new

    return encode
