"""The shape of one audit record and its place in the hash chain."""

from __future__ import annotations

import hashlib
import json
import uuid

GENESIS = "0" * 64

# Fields every record carries (DESIGN.md, "Audit record").
FIELDS = (
    "ts",
    "decision_id",
    "client",
    "user",
    "service",
    "host",
    "method",
    "path",
    "rule",
    "actions",
    "verdict",
    "images",
    "duration_ms",
    "prev_hash",
    "hash",
)
VERDICTS = ("allowed", "transformed", "warned", "coached", "blocked", "error")


def new_decision_id() -> str:
    return uuid.uuid4().hex


def canonical(record: dict) -> bytes:
    """The bytes the chain hashes: every field but `hash`, keys sorted, no whitespace."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, record: dict) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(record)).hexdigest()
