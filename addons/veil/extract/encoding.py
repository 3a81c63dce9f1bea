"""Content-Encoding of request bodies, decoded with a size bound (a zip bomb fails closed)."""

from __future__ import annotations


class EncodingError(ValueError):
    """The body does not decode as its Content-Encoding says."""


def _codings(header: str) -> list[str]:
    return [c.strip().lower() for c in header.split(",") if c.strip()]


def decode_body(raw: bytes, content_encoding: str, max_size: int) -> bytes:
    codings = [c for c in _codings(content_encoding) if c != "identity"]
    if codings:
        raise EncodingError(f"Content-Encoding {content_encoding!r} is not supported")
    return raw


def encode_body(body: bytes, content_encoding: str) -> bytes:
    codings = [c for c in _codings(content_encoding) if c != "identity"]
    if codings:
        raise EncodingError(f"Content-Encoding {content_encoding!r} is not supported")
    return body
