"""Content-Encoding: bounded decoding, refusal of bodies that are not what they claim."""

from __future__ import annotations

import gzip
import os
import sys
import zlib

import brotli
import pytest
from veil.extract.encoding import (
    DecodedTooLarge,
    EncodingError,
    codings,
    decode_body,
    encode_body,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

BODY = b'{"messages": [{"content": "' + os.urandom(3000).hex().encode() + b'"}]}'
LIMIT = 1 << 20

ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_each_coding_decodes_and_encodes_back(coding):
    wire = ENCODERS[coding](BODY)
    assert decode_body(wire, coding, LIMIT) == BODY
    assert decode_body(encode_body(BODY, coding), coding, LIMIT) == BODY


def test_identity_and_no_header_pass_the_body_through():
    assert decode_body(BODY, "", LIMIT) is BODY
    assert decode_body(BODY, "identity", LIMIT) is BODY
    assert encode_body(BODY, "identity") is BODY


def test_stacked_codings_are_undone_in_reverse_order():
    wire = zstd.compress(gzip.compress(BODY))
    assert codings("gzip, zstd") == ["gzip", "zstd"]
    assert decode_body(wire, "gzip, zstd", LIMIT) == BODY
    assert encode_body(BODY, "gzip, zstd")[:4] == b"\x28\xb5\x2f\xfd"  # zstd outermost


def test_raw_deflate_is_accepted_too():
    raw = zlib.compressobj(wbits=-15)
    wire = raw.compress(BODY) + raw.flush()
    assert decode_body(wire, "deflate", LIMIT) == BODY


def test_several_gzip_members_and_zstd_frames_are_one_body():
    half = len(BODY) // 2
    assert (
        decode_body(gzip.compress(BODY[:half]) + gzip.compress(BODY[half:]), "gzip", LIMIT) == BODY
    )
    skippable = b"\x50\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"abc"
    frames = zstd.compress(BODY[:half]) + skippable + zstd.compress(BODY[half:])
    assert decode_body(frames, "zstd", LIMIT) == BODY


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_body_that_is_not_what_it_claims_is_refused(coding):
    with pytest.raises(EncodingError):
        decode_body(BODY, coding, LIMIT)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_truncated_body_is_refused(coding):
    wire = ENCODERS[coding](BODY)
    with pytest.raises(EncodingError, match=r"truncated|not deflate data"):
        decode_body(wire[: len(wire) * 2 // 3], coding, LIMIT)


def test_bytes_after_the_compressed_data_are_refused():
    with pytest.raises(EncodingError, match="after its end"):
        decode_body(gzip.compress(BODY) + b"junk", "gzip", LIMIT)
    with pytest.raises(EncodingError):
        decode_body(zlib.compress(BODY) + b"junk", "deflate", LIMIT)
    with pytest.raises(EncodingError):
        decode_body(brotli.compress(BODY) + b"junk", "br", LIMIT)
    with pytest.raises(EncodingError):
        decode_body(zstd.compress(BODY) + b"junk", "zstd", LIMIT)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_compression_bomb_stops_at_the_limit(coding):
    bomb = encode_body(bytes(20 * LIMIT), coding)  # 20 MiB of zeros, a few KiB on the wire
    assert len(bomb) < LIMIT // 10
    with pytest.raises(DecodedTooLarge, match=f"more than {LIMIT} bytes"):
        decode_body(bomb, coding, LIMIT)


def test_exactly_the_limit_is_allowed():
    data = bytes(1000)
    assert decode_body(gzip.compress(data), "gzip", 1000) == data
    with pytest.raises(DecodedTooLarge):
        decode_body(gzip.compress(data), "gzip", 999)


def test_unknown_codings_are_refused():
    for header in ("compress", "aws-chunked", "gzip, x-custom"):
        with pytest.raises(EncodingError, match="not one Veil can read"):
            decode_body(BODY, header, LIMIT)


def test_an_empty_body_needs_no_decoding():
    assert decode_body(b"", "gzip", LIMIT) == b""
