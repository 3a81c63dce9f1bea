"""Put new bytes back into the request (step 6): body encoding and the headers that describe it.

When the body changed, every header that describes the old body is fixed: Content-Length, and
the integrity headers the request carries are recomputed where Veil can compute them and
dropped where it cannot (a checksum that no longer matches would only make the server refuse
the cleaned upload). A body signed by AWS Signature V4 cannot be changed at all: the
signature covers its hash, so such an upload is refused rather than forwarded unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from veil.extract.encoding import EncodingError, decode_body, encode_body

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class SignedBody(ValueError):
    """The request is signed over its body, so a changed body would be refused upstream."""


@dataclass
class SplicedRequest:
    body: bytes  # as sent on the wire (Content-Encoding applied again)
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)


def decode(raw: bytes, headers: Mapping[str, str], max_size: int) -> bytes:
    """The body Veil inspects: every Content-Encoding undone, within `max_size`."""
    if headers.get("x-amz-content-sha256", "").upper().startswith("STREAMING-"):
        raise EncodingError(
            "the body is sent in aws-chunked framing (signed chunks), which Veil cannot read"
        )
    return decode_body(raw, headers.get("content-encoding", ""), max_size)


def rebuild(new_body: bytes, headers: Mapping[str, str]) -> SplicedRequest:
    """The wire body and header changes for a body whose content changed."""
    _refuse_signed(headers)
    wire = encode_body(new_body, headers.get("content-encoding", ""))
    spliced = SplicedRequest(wire)
    old_length = headers.get("content-length")
    if "transfer-encoding" not in headers:
        spliced.set_headers["content-length"] = str(len(wire))
    if old_length is not None and headers.get("x-entity-length") == old_length:
        spliced.set_headers["x-entity-length"] = str(len(wire))  # Meta's rupload
    for name, value in headers.items():
        fix = _INTEGRITY.get(name.lower())
        if fix is None and name.lower().startswith("x-amz-checksum-"):
            fix = _amz_checksum(name.lower())
        if fix is None:
            continue
        new_value = fix(value, wire)
        if new_value is None:
            spliced.remove_headers.append(name)
        else:
            spliced.set_headers[name] = new_value
    if any(h.lower().startswith("x-amz-checksum-") for h in spliced.remove_headers):
        # The SDK announced an algorithm whose checksum Veil had to drop.
        spliced.remove_headers += [
            h for h in headers if h.lower() == "x-amz-sdk-checksum-algorithm"
        ]
    return spliced


def _refuse_signed(headers: Mapping[str, str]) -> None:
    if _HEX_SHA256.fullmatch(headers.get("x-amz-content-sha256", "").strip()):
        raise SignedBody(
            "the request is signed over its body (AWS Signature V4), so a cleaned body would "
            "be rejected; Veil cannot change it"
        )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _md5(body: bytes) -> bytes:
    return hashlib.md5(body, usedforsecurity=False).digest()


def _crc32(body: bytes) -> bytes:
    return zlib.crc32(body).to_bytes(4, "big")


# Digests Veil can compute, by the names the various headers use for them.
_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "md5": _md5,
    "sha1": lambda b: hashlib.sha1(b, usedforsecurity=False).digest(),
    "sha-1": lambda b: hashlib.sha1(b, usedforsecurity=False).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha-256": lambda b: hashlib.sha256(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
    "sha-512": lambda b: hashlib.sha512(b).digest(),
    "crc32": _crc32,
}


def _content_md5(_value: str, body: bytes) -> str:
    return _b64(_md5(body))


def _amz_checksum(name: str) -> Callable[[str, bytes], str | None] | None:
    algorithm = name.removeprefix("x-amz-checksum-")
    if algorithm == "type":  # FULL_OBJECT / COMPOSITE: not a checksum value
        return None
    digest = _DIGESTS.get(algorithm)
    if digest is None:  # crc32c, crc64nvme: not in the standard library; drop them
        return lambda _value, _body: None
    return lambda _value, body: _b64(digest(body))


def _goog_hash(value: str, body: bytes) -> str | None:
    """`x-goog-hash: crc32c=...,md5=...`: recompute md5, drop crc32c."""
    kept = []
    for item in value.split(","):
        algorithm = item.split("=", 1)[0].strip().lower()
        if algorithm == "md5":
            kept.append(f"md5={_b64(_md5(body))}")
    return ",".join(kept) or None


def _upload_checksum(value: str, body: bytes) -> str | None:
    """tus `Upload-Checksum: <algorithm> <base64>`."""
    algorithm = value.strip().split(" ", 1)[0].lower()
    digest = _DIGESTS.get(algorithm)
    return f"{algorithm} {_b64(digest(body))}" if digest else None


def _digest_fields(value: str, body: bytes) -> str | None:
    """RFC 9530 `Content-Digest: sha-256=:...:` (and `Repr-Digest`)."""
    kept = []
    for item in value.split(","):
        algorithm = item.split("=", 1)[0].strip().lower()
        digest = _DIGESTS.get(algorithm)
        if digest:
            kept.append(f"{algorithm}=:{_b64(digest(body))}:")
    return ", ".join(kept) or None


def _legacy_digest(value: str, body: bytes) -> str | None:
    """RFC 3230 `Digest: SHA-256=...`."""
    kept = []
    for item in value.split(","):
        algorithm = item.split("=", 1)[0].strip()
        digest = _DIGESTS.get(algorithm.lower())
        if digest:
            kept.append(f"{algorithm}={_b64(digest(body))}")
    return ",".join(kept) or None


_INTEGRITY: dict[str, Callable[[str, bytes], str | None]] = {
    "content-md5": _content_md5,
    "x-ms-blob-content-md5": _content_md5,
    "x-ms-content-crc64": lambda _value, _body: None,  # Azure's CRC-64: dropped
    "x-goog-hash": _goog_hash,
    "upload-checksum": _upload_checksum,
    "content-digest": _digest_fields,
    "repr-digest": _digest_fields,
    "digest": _legacy_digest,
}
