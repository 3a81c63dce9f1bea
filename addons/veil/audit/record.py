"""The shape of one audit record and its place in the hash chain.

    hash_i = SHA-256(hash_{i-1} || canonical(record_i))               (plain chain)
    hash_i = HMAC-SHA-256(key, hash_{i-1} || canonical(record_i))     (sealed chain)

A sealed record names its key by `seal` (a key id, never the key), so that `verify` knows
which key to use and the key can be rotated between runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

GENESIS = "0" * 64

VERDICTS = ("allowed", "transformed", "warned", "coached", "blocked", "error")

# Events that are not upload decisions (policy reloads, retention, ...) carry `event`.
RETENTION_EVENT = "retention_pruned"


def new_decision_id() -> str:
    return uuid.uuid4().hex


def canonical(record: dict) -> bytes:
    """The bytes the chain hashes: every field but `hash`, keys sorted, no whitespace."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict, key: bytes | None = None) -> str:
    return link_hash(prev_hash, canonical(record), key)


def link_hash(prev_hash: str, body: bytes, key: bytes | None = None) -> str:
    """The chain's step on a record already in canonical form."""
    message = prev_hash.encode() + body
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def seal_key_id(key: bytes) -> str:
    """A short public name for a seal key (a hash of it; the key itself cannot be derived)."""
    return hashlib.sha256(b"veil audit seal key id\0" + key).hexdigest()[:16]


def image_kinds(image: dict) -> list[str]:
    """The finding kinds of one image entry, `faces` included when faces were found."""
    kinds = {f.get("kind") for f in image.get("findings") or () if isinstance(f, dict)}
    if image.get("faces"):
        kinds.add("faces")
    return sorted(k for k in kinds if k)
