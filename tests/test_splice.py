"""splice: the wire body re-encoded, Content-Length and integrity headers made true again."""

from __future__ import annotations

import base64
import gzip
import hashlib
import zlib

import pytest
from veil import splice
from veil.extract.encoding import EncodingError

OLD = b"old body " * 10
NEW = b"the new, cleaned body"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def test_content_length_follows_the_wire_body():
    spliced = splice.rebuild(NEW, {"content-length": str(len(OLD))})
    assert spliced.body == NEW
    assert spliced.set_headers["content-length"] == str(len(NEW))


def test_chunked_requests_get_no_content_length():
    spliced = splice.rebuild(NEW, {"transfer-encoding": "chunked"})
    assert "content-length" not in spliced.set_headers


def test_the_body_is_encoded_again_and_checksums_cover_the_wire_bytes():
    headers = {"content-encoding": "gzip", "content-md5": "stale", "content-length": "10"}
    spliced = splice.rebuild(NEW, headers)
    assert gzip.decompress(spliced.body) == NEW
    assert spliced.set_headers["content-length"] == str(len(spliced.body))
    assert spliced.set_headers["content-md5"] == b64(hashlib.md5(spliced.body).digest())


def test_decode_undoes_the_content_encoding_within_the_bound():
    assert splice.decode(gzip.compress(NEW), {"content-encoding": "gzip"}, 1000) == NEW


def test_aws_chunked_framing_is_refused_as_unreadable():
    headers = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    with pytest.raises(EncodingError, match="aws-chunked"):
        splice.decode(OLD, headers, 1000)


def test_recomputable_checksums_are_recomputed():
    headers = {
        "Content-MD5": "stale",
        "x-amz-checksum-crc32": "stale",
        "x-amz-checksum-sha1": "stale",
        "x-amz-checksum-sha256": "stale",
        "x-ms-blob-content-md5": "stale",
        "Upload-Checksum": "sha1 stale",
        "Content-Digest": "sha-256=:stale:, sha-512=:stale:",
        "Repr-Digest": "sha-256=:stale:",
        "Digest": "SHA-256=stale,MD5=stale",
    }
    fixed = splice.rebuild(NEW, headers).set_headers
    md5 = b64(hashlib.md5(NEW).digest())
    sha256 = b64(hashlib.sha256(NEW).digest())
    assert fixed["Content-MD5"] == md5
    assert fixed["x-amz-checksum-crc32"] == b64(zlib.crc32(NEW).to_bytes(4, "big"))
    assert fixed["x-amz-checksum-sha1"] == b64(hashlib.sha1(NEW).digest())
    assert fixed["x-amz-checksum-sha256"] == sha256
    assert fixed["x-ms-blob-content-md5"] == md5
    assert fixed["Upload-Checksum"] == f"sha1 {b64(hashlib.sha1(NEW).digest())}"
    assert fixed["Content-Digest"] == (
        f"sha-256=:{sha256}:, sha-512=:{b64(hashlib.sha512(NEW).digest())}:"
    )
    assert fixed["Repr-Digest"] == f"sha-256=:{sha256}:"
    assert fixed["Digest"] == f"SHA-256={sha256},MD5={md5}"


def test_checksums_veil_cannot_compute_are_dropped():
    headers = {
        "x-amz-checksum-crc32c": "stale",
        "x-amz-sdk-checksum-algorithm": "CRC32C",
        "x-ms-content-crc64": "stale",
        "Upload-Checksum": "blake3 stale",
    }
    spliced = splice.rebuild(NEW, headers)
    assert set(spliced.remove_headers) == set(headers)


def test_x_goog_hash_keeps_a_fresh_md5_and_drops_crc32c():
    both = splice.rebuild(NEW, {"x-goog-hash": "crc32c=stale==,md5=stale=="})
    assert both.set_headers["x-goog-hash"] == f"md5={b64(hashlib.md5(NEW).digest())}"
    only_crc = splice.rebuild(NEW, {"x-goog-hash": "crc32c=stale=="})
    assert only_crc.remove_headers == ["x-goog-hash"]


def test_unrelated_headers_are_left_alone():
    headers = {
        "content-type": "image/jpeg",
        "x-ms-blob-type": "BlockBlob",
        "x-amz-checksum-type": "FULL_OBJECT",
    }
    spliced = splice.rebuild(NEW, headers)
    assert set(spliced.set_headers) == {"content-length"}
    assert spliced.remove_headers == []


def test_a_same_request_entity_length_follows_the_body():
    headers = {"content-length": str(len(OLD)), "x-entity-length": str(len(OLD))}
    assert splice.rebuild(NEW, headers).set_headers["x-entity-length"] == str(len(NEW))


def test_a_body_signed_with_sigv4_cannot_change():
    signed = {"x-amz-content-sha256": hashlib.sha256(OLD).hexdigest()}
    with pytest.raises(splice.SignedBody, match="Signature V4"):
        splice.rebuild(NEW, signed)
    unsigned = splice.rebuild(NEW, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert unsigned.body == NEW
