"""Find every image in a request body, whatever its shape (step 2), and splice results back.

The interface the rest of Veil sees is small: `extract()` returns an `Extraction` holding
`Payload`s (bytes, detected format, where they came from); a caller hands replacement bytes
to `Payload.replace()` and asks the extraction for the new body with `splice()`. Every byte
that belongs to no replaced payload stays as it was. Inspection and policy code never see
body shapes.

Images are recognised by their bytes, never by a Content-Type or file name; the Content-Type
only supplies a multipart boundary. Shapes are layers inside each other (see `layers`): the
body, multipart parts, form fields, JSON strings, JSON inside JSON strings, and finally the
image itself, raw or as base64 text.
"""

from __future__ import annotations

from veil.extract import jsontext, multipart, urlencoded
from veil.extract.layers import Layer
from veil.extract.limits import ExtractionLimitExceeded, Limits
from veil.extract.payloads import Collector, Document, Extraction, Payload, Span, SpliceError
from veil.extract.scan import look_at

__all__ = [
    "Document",
    "Extraction",
    "ExtractionLimitExceeded",
    "Limits",
    "Payload",
    "Span",
    "SpliceError",
    "extract",
]


def extract(
    body: bytes,
    content_type: str,
    *,
    size_declared: bool = False,
    limits: Limits | None = None,
) -> Extraction:
    """Every image in a decoded body. `content_type` only supplies a multipart boundary.

    `size_declared`: the protocol announced the body's length before these bytes, so images
    carried as raw bytes (the body itself, a multipart file part) must keep their length.
    Raises ExtractionLimitExceeded past a limit and ValueError for a body that cannot be
    parsed as what it claims to be (a multipart body without its boundary).
    """
    limits = limits or Limits()
    limits.check_body(len(body))
    if not body:
        return Extraction(body)
    found = Collector(limits, size_declared)
    structure = multipart.structure(body, content_type)
    if structure is not None:
        multipart.extract(Layer(body, "body"), *structure, found)
        shape = "multipart"
    else:
        look_at(Layer(body, "raw body"), found)
        shape = _shape(body, found)
    return Extraction(body, found.spans, shape, found.documents, found.checks)


def _shape(body: bytes, found: Collector) -> str:
    locators = [s.payload.locator for s in found.spans] + [d.locator for d in found.documents]
    if locators == ["raw body"]:
        return "raw"
    if not locators:
        return "none"
    if urlencoded.looks_like_form(body):
        return "urlencoded"
    if jsontext.looks_like_json(body):
        return "json"
    return "text"
