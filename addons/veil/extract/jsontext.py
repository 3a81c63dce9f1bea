"""Images carried as base64 text inside JSON (data: URLs), spliced back as text in place."""

from __future__ import annotations

import base64
import binascii
import re

from veil.extract.limits import Limits

_DATA_URL = re.compile(rb'"data:(image/[A-Za-z0-9.+-]+);base64,([A-Za-z0-9+/=]*)"')


def extract(body: bytes, limits: Limits) -> list:
    from veil.extract import Payload, Span
    from veil.formats import detect, is_image_format

    spans = []
    for m in _DATA_URL.finditer(body):
        try:
            data = base64.b64decode(m.group(2), validate=True)
        except binascii.Error:
            continue
        fmt = detect(data)
        if not is_image_format(fmt):
            continue
        payload = Payload(data, fmt, f"json data URL at byte {m.start()}")
        spans.append(Span(m.start(2), m.end(2), payload, _b64))
        limits.check_count(len(spans))
    return spans


def _b64(new: bytes) -> bytes:
    return base64.b64encode(new)
