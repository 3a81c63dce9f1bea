"""Find every image in a request body, whatever its shape (step 2), and splice results back.

The interface the rest of Veil sees is small: `extract()` returns an `Extraction` holding
`Payload`s (bytes, detected format, where they came from); a caller hands replacement bytes
to `Payload.replace()` and asks the extraction for the new body with `splice()`. Every byte
that belongs to no replaced payload stays as it was. Inspection and policy code never see
body shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from veil.extract.limits import ExtractionLimitExceeded, Limits
from veil.formats import detect, is_image_format

__all__ = [
    "Extraction",
    "ExtractionLimitExceeded",
    "Limits",
    "Payload",
    "Span",
    "extract",
]


@dataclass
class Payload:
    """One embedded image: its bytes, what they are, and where they sit in the body."""

    data: bytes
    format: str
    locator: str  # for people: 'multipart part "file" (photo.jpg)', 'json $.messages[0]...'
    size_declared: bool = False  # the protocol announced this length before the bytes
    replacement: bytes | None = None

    def replace(self, new: bytes) -> None:
        self.replacement = new

    @property
    def output(self) -> bytes:
        return self.data if self.replacement is None else self.replacement


@dataclass(frozen=True)
class Span:
    """A byte range of the body whose content is produced from a payload by `encode`."""

    start: int
    end: int
    payload: Payload
    encode: Callable[[bytes], bytes]


@dataclass
class Extraction:
    body: bytes
    spans: list[Span] = field(default_factory=list)
    shape: str = "none"  # raw, multipart, json, urlencoded, none

    @property
    def payloads(self) -> list[Payload]:
        return [s.payload for s in self.spans]

    @property
    def changed(self) -> bool:
        return any(p.replacement is not None and p.replacement != p.data for p in self.payloads)

    def splice(self) -> bytes:
        """The body with every replaced payload put back in place, in its original form."""
        if not self.changed:
            return self.body
        out = bytearray()
        pos = 0
        for span in sorted(self.spans, key=lambda s: s.start):
            out += self.body[pos : span.start]
            if span.payload.replacement is None:
                out += self.body[span.start : span.end]
            else:
                out += span.encode(span.payload.replacement)
            pos = span.end
        out += self.body[pos:]
        return bytes(out)


def extract(
    body: bytes,
    content_type: str,
    *,
    size_declared: bool = False,
    limits: Limits | None = None,
) -> Extraction:
    """Every image in a decoded body. `content_type` only chooses how to parse containers."""
    from veil.extract import jsontext, multipart

    limits = limits or Limits()
    limits.check_body(len(body))
    if not body:
        return Extraction(body)
    raw = raw_payload(body, size_declared)
    if raw is not None:
        return Extraction(body, [raw], shape="raw")
    boundary = multipart.boundary_from_content_type(content_type)
    if boundary is not None:
        spans = multipart.extract(body, boundary, limits)
        return Extraction(body, spans, shape="multipart")
    spans = jsontext.extract(body, limits)
    if spans:
        return Extraction(body, spans, shape="json")
    return Extraction(body)


def raw_payload(body: bytes, size_declared: bool) -> Span | None:
    """The whole body is the file itself (a raw PUT or POST)."""
    fmt = detect(body)
    if not is_image_format(fmt):
        return None
    payload = Payload(body, fmt, "raw body", size_declared=size_declared)
    return Span(0, len(body), payload, lambda new: new)
