"""Searching the trail (the SQLite copy): by time, service, user, verdict, rule and finding,
and by image (`find`: the same photo by sha256, or a resized / re-encoded copy of it by
perceptual hash)."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from veil.audit import store
from veil.audit.files import Layout, format_ts, parse_ts
from veil.audit.phash import SIMILAR, perceptual_hash

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class QueryError(ValueError):
    """A filter the user typed cannot be understood; the message says what to type."""


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    services: Sequence[str] = ()
    users: Sequence[str] = ()
    verdicts: Sequence[str] = ()
    rules: Sequence[str] = ()
    findings: Sequence[str] = ()
    clients: Sequence[str] = ()
    decision: str | None = None
    events: bool = True  # include records that are not upload decisions
    limit: int | None = None  # the newest N


@dataclass
class Match:
    """An image in the trail that is the one searched for, or a copy of it."""

    record: dict
    image: int
    how: str  # "same file", "same file as sent", "similar"
    distance: int | None = None


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`2025-03-01`, `2025-03-01T14:00`, `2025-03-01 14:00+01:00`, `today`, or `2h`/`7d` ago."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    if value in ("today", "yesterday"):
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start - timedelta(days=1) if value == "yesterday" else start
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        return parse_ts(text.strip())
    except ValueError:
        raise QueryError(
            f"not a time: {text!r} (use a date like 2025-03-01, a time like "
            "2025-03-01T14:00, 'today', or an age like 2h or 7d)"
        ) from None


def open_database(directory: Path) -> sqlite3.Connection:
    path = Layout(directory).database
    if not path.exists():
        raise QueryError(
            f"no audit database at {path} (give the trail's directory with --audit DIR)"
        )
    return store.connect_reader(path)


def query(directory: Path, filters: Filters) -> list[dict]:
    """Matching records, oldest first."""
    where, params = sql_conditions(filters)
    sql = "SELECT record FROM records"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC"
    if filters.limit:
        sql += f" LIMIT {int(filters.limit)}"
    db = open_database(directory)
    try:
        rows = db.execute(sql, params).fetchall()
    finally:
        db.close()
    return [json.loads(row[0]) for row in reversed(rows)]


def sql_conditions(f: Filters) -> tuple[list[str], list]:
    where: list[str] = []
    params: list = []
    if f.since:
        where.append("ts >= ?")
        params.append(format_ts(f.since))
    if f.until:
        where.append("ts < ?")
        params.append(format_ts(f.until))
    for column, values in (
        ("service", f.services),
        ("user", f.users),
        ("verdict", f.verdicts),
        ("rule", f.rules),
        ("client", f.clients),
    ):
        if values:
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if f.decision:
        where.append("decision_id LIKE ?")
        params.append(f.decision.lower() + "%")
    if f.findings:
        any_of = " OR ".join("(' ' || i.kinds || ' ') LIKE ?" for _ in f.findings)
        where.append(f"EXISTS (SELECT 1 FROM images i WHERE i.seq = records.seq AND ({any_of}))")
        params.extend(f"% {kind} %" for kind in f.findings)
    if not f.events:
        where.append("event IS NULL")
    return where, params


def record_by_decision(directory: Path, decision: str) -> dict | None:
    """The decision's record (a unique prefix of its id is enough)."""
    found = query(directory, Filters(decision=decision, limit=2))
    if len(found) > 1:
        raise QueryError(f"{decision!r} is the start of several decision ids; give more of it")
    return found[0] if found else None


def find(directory: Path, data: bytes, threshold: int = SIMILAR) -> list[Match]:
    """Where this image, or a resized / re-encoded copy of it, was uploaded."""
    sha = hashlib.sha256(data).hexdigest()
    phash = perceptual_hash(data)
    db = open_database(directory)
    try:
        rows = db.execute(
            "SELECT i.idx, i.sha256_in, i.sha256_out, i.phash, r.record,"
            " hamming(i.phash, ?) AS distance"
            " FROM images i JOIN records r ON r.seq = i.seq"
            " WHERE i.sha256_in = ? OR i.sha256_out = ? OR hamming(i.phash, ?) <= ?"
            " ORDER BY i.seq",
            (phash, sha, sha, phash, threshold),
        ).fetchall()
    finally:
        db.close()
    matches = []
    for row in rows:
        if row["sha256_in"] == sha:
            how = "same file"
        elif row["sha256_out"] == sha:
            how = "same file as sent"
        else:
            how = "similar"
        matches.append(Match(json.loads(row["record"]), row["idx"], how, row["distance"]))
    return matches
