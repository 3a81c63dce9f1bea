"""The structlog processors every audit record goes through (besides the writer's own
`stamp` and `chain`, which need its state): small steps, each with one job."""

from __future__ import annotations

import json
import logging

import structlog

logger = logging.getLogger("veil.audit.log")

# Keys that must never reach the trail, at any depth (DESIGN.md: no bodies, no credentials).
FORBIDDEN_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "cookies",
        "set-cookie",
        "password",
        "body",
        "headers",
        "content",
    }
)


def redact(_logger, _name: str, record: dict) -> dict:
    """No bytes, bodies, credentials or cookies, at any depth, whatever a caller passes."""
    return _scrub(record, "")


def _scrub(value, where: str):
    if isinstance(value, dict):
        clean = {}
        for key, item in value.items():
            if str(key).lower() in FORBIDDEN_KEYS:
                logger.error("audit: dropped the field %s%s (never recorded)", where, key)
                continue
            clean[key] = _scrub(item, f"{where}{key}.")
        return clean
    if isinstance(value, (list, tuple)):
        return [_scrub(item, where) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        place = where.rstrip(".") or "the top level"
        logger.error("audit: dropped %d bytes at %s (never recorded)", len(value), place)
        return f"<{len(value)} bytes not recorded>"
    return value


def normalise(_logger, _name: str, record: dict) -> dict:
    """The record exactly as JSON gives it back, so what is hashed is what is verified."""
    return json.loads(json.dumps(record, ensure_ascii=False, default=str))


_json = structlog.processors.JSONRenderer(ensure_ascii=False, separators=(",", ":"))


def render(logger, name: str, record: dict):
    """Processor: one JSON line; the record rides along for the database columns."""
    return (_json(logger, name, record),), {"record": record}


def as_event_kwargs(record: dict) -> dict:
    return {str(k): v for k, v in record.items()}
