"""Content-Encoding of request bodies: decoded with a size bound, encoded back the same way.

mitmproxy's own decoders (`Message.content`) have no size bound, so a small compressed upload
could expand without limit; every decoder here stops one byte past `max_size` and refuses. A
body that does not decode as its header claims (or claims an encoding Veil does not know) is
refused too: a body that cannot be read cannot be inspected.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable

import brotli

from veil.extract.limits import ExtractionLimitExceeded

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

GZIP_MAGIC = b"\x1f\x8b"
# Encoders use their fastest levels, as mitmproxy does: a rewritten body goes out while the
# client waits, and bodies with images are mostly base64, which compresses little anyway.
GZIP_LEVEL = 1
BROTLI_QUALITY = 1
ZSTD_LEVEL = 1


class EncodingError(ValueError):
    """The body does not decode as its Content-Encoding says."""


class DecodedTooLarge(ExtractionLimitExceeded):
    """The body decompresses past the bound."""


def codings(header: str) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied."""
    found = [c.strip().lower() for c in header.split(",") if c.strip()]
    return ["gzip" if c == "x-gzip" else c for c in found if c != "identity"]


def decode_body(raw: bytes, content_encoding: str, max_size: int) -> bytes:
    """The body with every coding undone, or EncodingError / DecodedTooLarge."""
    applied = codings(content_encoding)
    if not raw or not applied:
        return raw
    for coding in applied:
        if coding not in _DECODERS:
            raise EncodingError(
                f"the body's Content-Encoding {content_encoding!r} is not one Veil can read "
                "(gzip, deflate, br, zstd)"
            )
    data = raw
    for coding in reversed(applied):
        data = _DECODERS[coding](data, max_size)
    return data


def encode_body(body: bytes, content_encoding: str) -> bytes:
    """The body with the same codings applied again, in the same order."""
    for coding in codings(content_encoding):
        if coding not in _ENCODERS:
            raise EncodingError(f"cannot apply Content-Encoding {coding!r}")
        body = _ENCODERS[coding](body)
    return body


def _too_large(coding: str, max_size: int) -> DecodedTooLarge:
    return DecodedTooLarge(
        f"the {coding}-encoded body decompresses to more than {max_size} bytes; "
        f"Veil inspects at most {max_size}"
    )


def _decode_gzip(data: bytes, max_size: int) -> bytes:
    out = bytearray()
    rest = data
    members = 0
    while True:  # a gzip body may hold several members, one after the other (RFC 1952)
        if not rest.startswith(GZIP_MAGIC):
            if members:
                raise EncodingError("the gzip-encoded body has bytes after its end")
            raise EncodingError("the body says Content-Encoding gzip but is not gzip data")
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += _inflate(decoder, rest, max_size - len(out), "gzip", max_size)
        members += 1
        rest = decoder.unused_data
        if not rest:
            return bytes(out)


def _decode_deflate(data: bytes, max_size: int) -> bytes:
    # HTTP's "deflate" is zlib-wrapped (RFC 9110); some clients send raw deflate instead.
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        decoder = zlib.decompressobj(wbits)
        try:
            out = _inflate(decoder, data, max_size, "deflate", max_size)
        except EncodingError:
            continue
        if decoder.unused_data:
            raise EncodingError("the deflate-encoded body has bytes after its end")
        return out
    raise EncodingError("the body says Content-Encoding deflate but is not deflate data")


def _inflate(decoder, data: bytes, budget: int, coding: str, max_size: int) -> bytes:
    try:
        out = decoder.decompress(data, budget + 1)
    except zlib.error as exc:
        raise EncodingError(f"the {coding}-encoded body does not decode: {exc}") from exc
    if len(out) > budget or decoder.unconsumed_tail:
        raise _too_large(coding, max_size)
    if not decoder.eof:
        raise EncodingError(f"the {coding}-encoded body is truncated")
    return out


def _decode_brotli(data: bytes, max_size: int) -> bytes:
    decoder = brotli.Decompressor()
    out = bytearray()
    chunk = data
    try:
        while True:
            piece = decoder.process(chunk, output_buffer_limit=max_size + 1)
            chunk = b""
            out += piece
            if len(out) > max_size:
                raise _too_large("br", max_size)
            if decoder.is_finished():
                return bytes(out)
            if not piece:
                raise EncodingError("the br-encoded body is truncated")
    except brotli.error as exc:
        raise EncodingError(f"the br-encoded body does not decode: {exc}") from exc


def _decode_zstd(data: bytes, max_size: int) -> bytes:
    out = bytearray()
    rest = data
    while rest:  # a zstd body may hold several frames, including skippable ones (RFC 8878)
        decoder = zstd.ZstdDecompressor()
        try:
            piece = decoder.decompress(rest, max_length=max_size - len(out) + 1)
        except zstd.ZstdError as exc:
            raise EncodingError(f"the zstd-encoded body does not decode: {exc}") from exc
        out += piece
        if len(out) > max_size or (not decoder.eof and not decoder.needs_input):
            raise _too_large("zstd", max_size)
        if not decoder.eof:
            raise EncodingError("the zstd-encoded body is truncated")
        rest = decoder.unused_data
    return bytes(out)


def _encode_gzip(body: bytes) -> bytes:
    encoder = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return encoder.compress(body) + encoder.flush()


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _decode_gzip,
    "deflate": _decode_deflate,
    "br": _decode_brotli,
    "zstd": _decode_zstd,
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _encode_gzip,
    "deflate": lambda body: zlib.compress(body, GZIP_LEVEL),
    "br": lambda body: brotli.compress(body, quality=BROTLI_QUALITY),
    "zstd": lambda body: zstd.compress(body, level=ZSTD_LEVEL),
}
