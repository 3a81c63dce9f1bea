"""Walk a layer: its own bytes may be an image; otherwise look for base64 text in it and below.

One rule decides what is looked at: the prefilter's hits. Structured text (a form, JSON-style
strings) is descended into where a hit lies; every hit that the descent did not explain is
then tried where it stands, so an image is found by its content even in text that is neither
JSON nor a form.
"""

from __future__ import annotations

from veil.extract import base64text, jsontext, urlencoded
from veil.extract.layers import Layer
from veil.extract.payloads import Collector, Document, Payload
from veil.formats import DOCUMENT_FORMATS, detect, is_image_format


def look_at(layer: Layer, found: Collector) -> None:
    """A layer whose bytes may be a file themselves (the body, a multipart part)."""
    data = layer.data
    fmt = detect(data)
    if is_image_format(fmt):
        assert fmt is not None
        payload = Payload(data, fmt, layer.where, size_declared=found.size_declared)
        found.add_image(layer, 0, len(data), payload, _as_is)
    elif fmt in DOCUMENT_FORMATS:
        assert fmt is not None
        found.add_document(layer, 0, len(data), Document(fmt, layer.where, len(data)))
    else:
        scan_text(layer, found)


def scan_text(
    layer: Layer, found: Collector, hits: list[int] | None = None, near: list[int] | None = None
) -> None:
    """Look for base64 images in a layer of text. `hits`: already known; `near`: roughly."""
    hits = base64text.candidates(layer.data, near) if hits is None else hits
    if not hits:
        return
    found.limits.check_depth(layer.depth)
    if urlencoded.looks_like_form(layer.data):
        for field in urlencoded.fields_with(layer.data, hits):
            child = urlencoded.value_layer(layer, field)
            scan_text(child, found, near=_inside(child, hits, field.start, field.end))
    elif b'"' in layer.data:
        for token in jsontext.strings_with(layer.data, hits):
            child = jsontext.string_layer(layer, token)
            inside = _inside(child, hits, token.start, token.end)
            if child.offsets is None:  # nothing was unescaped: the hits are the same bytes
                scan_text(child, found, hits=inside)
            else:
                scan_text(child, found, near=inside)
    for hit in hits:
        if not found.covers(layer, hit):
            base64_at(layer, hit, found)


def _inside(child: Layer, hits: list[int], start: int, end: int) -> list[int]:
    """The hits between start and end, as offsets of the child layer that starts at start."""
    inside = [h - start for h in hits if start <= h < end]
    if child.offsets is None:
        return inside
    return [child.offsets.to_decoded(h) for h in inside]


def base64_at(layer: Layer, offset: int, found: Collector) -> None:
    run = base64text.find_run(layer.data, offset)
    if run is None:
        return
    fmt = detect(run.data)
    kind = "data URL" if run.is_data_url(layer.data) else "text"
    where = layer.inner(f"{kind} ({run.form.describe()})")
    if is_image_format(fmt):
        assert fmt is not None
        found.add_image(layer, run.start, run.end, Payload(run.data, fmt, where), run.form.encode)
    elif fmt in DOCUMENT_FORMATS:
        assert fmt is not None
        found.add_document(layer, run.start, run.end, Document(fmt, where, len(run.data)))


def _as_is(new: bytes) -> bytes:
    return new
