"""Writes audit records durably: a record is on disk, in both stores, before the upload is
released or answered; when it cannot be, `write` raises `AuditError` and the upload is refused.

Records go through a structlog processor chain, each step small and named:

    stamp -> redact -> normalise -> chain -> render  ==>  Stores (JSON lines + SQLite)

One write is one transaction across both stores: the line is appended and fsynced, then the
row is committed; if the commit fails the line is cut off again, so the stores never diverge
(a crash between the two is repaired at the next start, from the JSON lines).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from veil.audit import store
from veil.audit.files import (
    Layout,
    Rotation,
    format_ts,
    last_of,
    last_record,
    parse_retention,
    parse_ts,
    torn_tail,
)
from veil.audit.processors import as_event_kwargs, normalise, redact, render
from veil.audit.record import (
    GENESIS,
    RETENTION_EVENT,
    chain_hash,
    new_decision_id,
    seal_key_id,
)
from veil.audit.sink import AuditError, Stores, copy_missing, open_database, seq_of

__all__ = ["AuditError", "AuditLog", "read_seal_key"]

logger = logging.getLogger(__name__)

MIN_SEAL_KEY = 16


class AuditLog:
    """Appends hash-chained records to `audit.jsonl` and `audit.sqlite3` in one directory.

    Optional: `rotation` (by size and/or day), `retention` (how long rotated files are kept),
    `seal_key` (HMAC the chain, so that it cannot be recomputed without the key) and
    `quarantine_key` (an X25519 public key: blocked images are kept encrypted to it).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        rotation: Rotation | None = None,
        retention: timedelta | None = None,
        seal_key: bytes | None = None,
        quarantine_key=None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = Path(directory)
        self.clock = clock
        self.layout = Layout(self.directory)
        self.jsonl_path = self.layout.active
        self.db_path = self.layout.database
        if retention is not None and not (rotation and rotation.enabled):
            rotation = Rotation(daily=True)  # retention removes whole rotated files
        self.rotation = rotation or Rotation()
        self.retention = retention
        if seal_key is not None and len(seal_key) < MIN_SEAL_KEY:
            raise AuditError(f"the seal key is too short ({len(seal_key)} bytes; at least 16)")
        self.seal_key = seal_key
        self.seal_id = seal_key_id(seal_key) if seal_key else None
        self.quarantine_key = quarantine_key
        self._lock = threading.Lock()
        self._stores: Stores | None = None
        self._lock_file: int | None = None
        self._seq = 0
        self._last_hash = GENESIS
        self._pending: tuple[int, str] | None = None
        self._log = None

    @classmethod
    def from_options(
        cls,
        directory: str | Path,
        *,
        rotate: str = "",
        retention: str = "",
        seal_key_file: str = "",
        quarantine_key_file: str = "",
    ) -> AuditLog:
        """Build from the text of `veil run` flags; errors say which flag and what to type."""
        from veil.audit.quarantine import QuarantineError, load_public_key

        try:
            rotation = Rotation.parse(rotate)
            keep = parse_retention(retention)
            seal_key = read_seal_key(seal_key_file) if seal_key_file else None
            quarantine_key = load_public_key(quarantine_key_file) if quarantine_key_file else None
        except (ValueError, QuarantineError) as exc:
            raise AuditError(str(exc)) from exc
        return cls(
            directory,
            rotation=rotation,
            retention=keep,
            seal_key=seal_key,
            quarantine_key=quarantine_key,
        )

    # Opening and closing.

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._take_lock()
            self._repair_torn_tail()
            db = open_database(self.layout)
            self._stores = Stores(self.layout, db, self.rotation)
            self._log = structlog.wrap_logger(
                self._stores,
                processors=[self._stamp, redact, normalise, self._chain, render],
                wrapper_class=structlog.BoundLogger,
                cache_logger_on_first_use=True,
            )
            self._seq, self._last_hash = self._reconcile(db)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise AuditError(f"cannot open the audit trail in {self.directory}: {exc}") from exc
        except AuditError:
            self.close()
            raise
        self._check_seal()
        with self._lock:
            self._prune()

    def close(self) -> None:
        with self._lock:
            if self._stores is not None:
                self._stores.close()
                self._stores = None
                self._log = None
            if self._lock_file is not None:
                os.close(self._lock_file)
                self._lock_file = None

    def _take_lock(self) -> None:
        fd = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AuditError(
                f"the audit trail in {self.directory} is being written by process {holder}; "
                "give each Veil instance its own --audit directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_file = fd

    def _repair_torn_tail(self) -> None:
        """A crash mid-write leaves half a line: keep it aside, never in the chain."""
        offset = torn_tail(self.layout.active)
        if offset is None:
            return
        with self.layout.active.open("r+b") as f:
            f.seek(offset)
            fragment = f.read()
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            (self.directory / f"audit.jsonl.torn-{stamp}").write_bytes(fragment)
            f.truncate(offset)
            os.fsync(f.fileno())
        logger.warning(
            "audit.jsonl ended in an incomplete line (%d bytes, a crash mid-write); moved it "
            "to audit.jsonl.torn-%s",
            len(fragment),
            stamp,
        )

    def _reconcile(self, db: sqlite3.Connection) -> tuple[int, str]:
        """The chain's head; records that reached the JSON lines but not the database (a crash
        between the two writes, or a rebuilt database) are added to the database."""
        file_head = last_of(self.layout)
        db_head = store.head(db)
        file_seq = seq_of(file_head, self.layout) if file_head else 0
        if file_head is None and db_head is None:
            return 0, GENESIS
        if (
            db_head is not None
            and file_head is not None
            and db_head == (file_seq, file_head["hash"])
        ):
            return db_head
        if file_head is not None and (db_head is None or file_seq > db_head[0]):
            added = copy_missing(self.layout, db, db_head)
            if added is not None:
                logger.warning(
                    "added %d record(s) to %s that were only in the JSON-lines files",
                    added,
                    self.layout.database.name,
                )
                return file_seq, file_head["hash"]
        logger.critical(
            "AUDIT STORES DISAGREE in %s: the database ends at record %s, the JSON-lines files "
            "at record %s. Writing continues from the later one; run 'veil audit verify'.",
            self.directory,
            db_head[0] if db_head else None,
            file_seq if file_head else None,
        )
        if db_head is not None and (file_head is None or db_head[0] >= file_seq):
            return db_head
        return file_seq, file_head["hash"]  # type: ignore[index]

    def _check_seal(self) -> None:
        head = last_of(self.layout)
        if head and head.get("seal") and self.seal_key is None:
            self.close()
            raise AuditError(
                f"the audit trail in {self.directory} is sealed (key {head['seal']}); start with "
                "--audit-seal-key FILE, or use a new --audit directory"
            )
        if head and head.get("seal") and head["seal"] != self.seal_id:
            logger.info("audit seal key changed from %s to %s", head["seal"], self.seal_id)

    # Writing.

    def write(self, record: dict) -> dict:
        """Chain, write and flush one record; raises AuditError when it cannot be stored."""
        with self._lock:
            written = self._write_locked(record)
            if self._stores is not None and self._stores.rotated:
                self._stores.rotated = False
                self._prune()
            return written

    def _write_locked(self, record: dict) -> dict:
        if self._stores is None or self._log is None:
            raise AuditError("the audit trail is not open")
        try:
            written = self._log.msg(**as_event_kwargs(record))
        except AuditError as exc:
            logger.critical("AUDIT WRITE FAILED, uploads are refused: %s", exc)
            raise
        except Exception as exc:  # a record that cannot be serialised: refuse, never skip
            logger.critical("AUDIT WRITE FAILED, uploads are refused: %r", exc)
            raise AuditError(f"cannot write the audit record: {exc!r}") from exc
        assert self._pending is not None
        self._seq, self._last_hash = self._pending
        return written

    def _stamp(self, _logger, _name: str, record: dict) -> dict:
        """Processor: every record starts with a UTC timestamp and a decision id (events
        from elsewhere may bring neither)."""
        ts = record.pop("ts", None)
        try:
            when = parse_ts(ts) if isinstance(ts, str) else self.clock()
        except ValueError:
            when = self.clock()
        decision_id = record.pop("decision_id", None) or new_decision_id()
        return {
            "ts": format_ts(when),
            "decision_id": decision_id,
            **record,
        }

    def _chain(self, _logger, _name: str, record: dict) -> dict:
        """Processor: the record's place in the chain (and its seal)."""
        record["seq"] = self._seq + 1
        record["prev_hash"] = self._last_hash
        if self.seal_id:
            record["seal"] = self.seal_id
        record["hash"] = chain_hash(self._last_hash, record, self.seal_key)
        self._pending = (record["seq"], record["hash"])
        return record

    def quarantine(self, decision_id: str, images: list[bytes]) -> dict:
        """Keep the originals of a blocked upload, encrypted; what to add to its record."""
        if self.quarantine_key is None or not images:
            return {}
        from veil.audit.quarantine import Quarantine

        try:
            entries = Quarantine(self.layout.quarantine, self.quarantine_key).store(
                decision_id, images
            )
        except Exception as exc:  # the upload is blocked anyway; the record says why not kept
            logger.error("could not quarantine the images of %s: %s", decision_id, exc)
            return {"quarantine_error": str(exc)}
        return {"quarantine": entries}

    # Retention.

    def _prune(self) -> None:
        """Remove rotated files older than the retention, recording that in the chain first."""
        if self.retention is None or self._stores is None:
            return
        cutoff = self.clock() - self.retention
        doomed: list[tuple[Path, dict]] = []
        for path in self.layout.rotated():
            last = last_record(path)
            if last is None or not _older(last.get("ts"), cutoff):
                break
            doomed.append((path, last))
        if not doomed:
            self._prune_quarantine(cutoff)
            return
        through = doomed[-1][1]
        files = [path.name for path, _ in doomed]
        event = {
            "event": RETENTION_EVENT,
            "message": f"removed {len(files)} rotated file(s) with records older than "
            f"{cutoff.isoformat(timespec='seconds')}",
            "files": files,
            "through_seq": through.get("seq"),
            "through_hash": through.get("hash"),
        }
        try:
            self._write_locked(event)
            for path, _ in doomed:
                path.unlink()
            self._stores.delete_through(through.get("seq") or 0)
        except (OSError, sqlite3.Error) as exc:
            logger.warning("audit retention could not remove old files: %s", exc)
            return
        self._prune_quarantine(cutoff)

    def _prune_quarantine(self, cutoff: datetime) -> None:
        if not self.layout.quarantine.is_dir():
            return
        for path in self.layout.quarantine.iterdir():
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
                    path.unlink()
            except OSError as exc:
                logger.warning("audit retention could not remove %s: %s", path, exc)


def _older(ts, cutoff: datetime) -> bool:
    try:
        return parse_ts(ts) < cutoff
    except (TypeError, ValueError):
        return False  # an unreadable time: keep the file


def read_seal_key(path: str | Path) -> bytes:
    """The seal key: the file's bytes (e.g. 64 hex digits from 'veil audit keygen seal')."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the audit seal key: {exc.strerror}") from exc
    if len(key) < MIN_SEAL_KEY:
        raise ValueError(
            f"{path}: the audit seal key is {len(key)} bytes, at least {MIN_SEAL_KEY} are needed "
            "(make one with 'veil audit keygen seal FILE')"
        )
    return key
