"""The SQLite copy of the trail: one row per record (the record's JSON plus the columns queries
filter on) and one row per image (hashes and finding kinds, for `find` and `--finding`).

The JSON-lines files are the primary copy; the database is rebuilt from them only when its
schema is out of date. `verify` checks that both hold the same chain and that every column
says what its record says.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from veil.audit.record import image_kinds

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    event TEXT,
    client TEXT, user TEXT, service TEXT, host TEXT, method TEXT, path TEXT,
    rule TEXT, verdict TEXT,
    duration_ms REAL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE INDEX IF NOT EXISTS records_decision ON records (decision_id);
CREATE INDEX IF NOT EXISTS records_user ON records (user, ts);
CREATE INDEX IF NOT EXISTS records_service ON records (service, ts);
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    format TEXT, width INTEGER, height INTEGER, bytes_in INTEGER, bytes_out INTEGER,
    sha256_in TEXT, sha256_out TEXT, phash TEXT,
    kinds TEXT NOT NULL,
    faces INTEGER,
    PRIMARY KEY (seq, idx)
);
CREATE INDEX IF NOT EXISTS images_sha256_in ON images (sha256_in);
CREATE INDEX IF NOT EXISTS images_sha256_out ON images (sha256_out);
"""

# Record fields copied into columns of `records` (everything else lives in `record` only).
COLUMNS = (
    "seq",
    "ts",
    "decision_id",
    "event",
    "client",
    "user",
    "service",
    "host",
    "method",
    "path",
    "rule",
    "verdict",
    "duration_ms",
    "prev_hash",
    "hash",
)
IMAGE_COLUMNS = (
    "idx",
    "format",
    "width",
    "height",
    "bytes_in",
    "bytes_out",
    "sha256_in",
    "sha256_out",
    "phash",
    "kinds",
    "faces",
)


def connect_writer(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the database (the proxy may be writing it)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA query_only=1")
    db.execute("PRAGMA busy_timeout=5000")
    db.row_factory = sqlite3.Row
    db.create_function("hamming", 2, hamming_hex, deterministic=True)
    return db


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def has_tables(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT count(*) FROM sqlite_master WHERE name='records'").fetchone()
    return bool(row[0])


def create(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def record_row(record: dict, line: str) -> tuple:
    return (*(_column(record, c) for c in COLUMNS), line)


def image_rows(record: dict) -> list[tuple]:
    """The `images` rows a record implies (also what `verify` expects to find)."""
    rows = []
    for idx, image in enumerate(record.get("images") or ()):
        if not isinstance(image, dict):
            continue
        faces = image.get("faces")
        rows.append(
            (
                record.get("seq"),
                idx,
                image.get("format"),
                image.get("width"),
                image.get("height"),
                image.get("bytes_in"),
                image.get("bytes_out"),
                image.get("sha256_in"),
                image.get("sha256_out"),
                image.get("phash"),
                " ".join(image_kinds(image)),
                len(faces) if isinstance(faces, list) else None,
            )
        )
    return rows


def insert(db: sqlite3.Connection, record: dict, line: str) -> None:
    """Insert one record and its images (inside the caller's transaction)."""
    marks = ",".join("?" * (len(COLUMNS) + 1))
    db.execute(
        f"INSERT INTO records ({','.join(COLUMNS)}, record) VALUES ({marks})",
        record_row(record, line),
    )
    rows = image_rows(record)
    if rows:
        marks = ",".join("?" * (len(IMAGE_COLUMNS) + 1))
        db.executemany(
            f"INSERT INTO images (seq, {','.join(IMAGE_COLUMNS)}) VALUES ({marks})", rows
        )


def head(db: sqlite3.Connection) -> tuple[int, str] | None:
    row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def delete_through(db: sqlite3.Connection, seq: int) -> None:
    db.execute("DELETE FROM images WHERE seq <= ?", (seq,))
    db.execute("DELETE FROM records WHERE seq <= ?", (seq,))


def _column(record: dict, name: str):
    value = record.get(name)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def hamming_hex(a: str | None, b: str | None) -> int | None:
    """Bits that differ between two hex-encoded hashes of the same length."""
    if not a or not b or len(a) != len(b):
        return None
    try:
        return (int(a, 16) ^ int(b, 16)).bit_count()
    except ValueError:
        return None
