"""Writes audit records durably: a record is on disk before the upload is released."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path

from veil.audit.record import GENESIS, chain_hash

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    decision_id TEXT NOT NULL UNIQUE,
    client TEXT, user TEXT, service TEXT, host TEXT, method TEXT, path TEXT,
    rule TEXT, verdict TEXT NOT NULL,
    duration_ms REAL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
"""


class AuditError(OSError):
    """The audit trail cannot be written: uploads must be refused."""


class AuditLog:
    """Appends hash-chained records to `audit.jsonl` and `audit.sqlite3` in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.jsonl_path = self.directory / "audit.jsonl"
        self.db_path = self.directory / "audit.sqlite3"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._last_hash = GENESIS

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.db_path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._last_hash = self._read_last_hash()
        except (OSError, sqlite3.Error) as exc:
            raise AuditError(f"cannot open the audit trail in {self.directory}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _read_last_hash(self) -> str:
        if not self.jsonl_path.exists():
            return GENESIS
        last = None
        with self.jsonl_path.open("rb") as f:
            for line in f:
                if line.strip():
                    last = line
        return json.loads(last)["hash"] if last else GENESIS

    def write(self, record: dict) -> dict:
        """Chain, write and flush one record; raises AuditError when it cannot be stored."""
        with self._lock:
            if self._db is None:
                raise AuditError("the audit trail is not open")
            record = dict(record, prev_hash=self._last_hash)
            record["hash"] = chain_hash(self._last_hash, record)
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            try:
                with self.jsonl_path.open("a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                with self._db:
                    self._db.execute(
                        "INSERT INTO records (ts, decision_id, client, user, service, host,"
                        " method, path, rule, verdict, duration_ms, prev_hash, hash, record)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            record["ts"],
                            record["decision_id"],
                            record.get("client"),
                            record.get("user"),
                            record.get("service"),
                            record.get("host"),
                            record.get("method"),
                            record.get("path"),
                            record.get("rule"),
                            record["verdict"],
                            record.get("duration_ms"),
                            record["prev_hash"],
                            record["hash"],
                            line.rstrip("\n"),
                        ),
                    )
            except (OSError, sqlite3.Error) as exc:
                logger.critical("AUDIT WRITE FAILED, uploads are refused: %s", exc)
                raise AuditError(f"cannot write the audit record: {exc}") from exc
            self._last_hash = record["hash"]
            return record
