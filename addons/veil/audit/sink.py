"""The two stores behind structlog: `Stores.msg` appends one JSON line (fsynced) and commits
one SQLite row, or neither; and the repairs a crash can call for at the next start."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from veil.audit import store
from veil.audit.files import Layout, Rotation, first_record, read_lines

logger = logging.getLogger("veil.audit.log")


class AuditError(OSError):
    """The audit trail cannot be written: uploads must be refused."""


class Stores:
    """structlog's "logger": appends one line and commits one row, or neither."""

    def __init__(self, layout: Layout, db: sqlite3.Connection, rotation: Rotation) -> None:
        self.layout = layout
        self.db = db
        self.rotation = rotation
        self.rotated = False
        self._first_ts = (first_record(layout.active) or {}).get("ts")
        self._uncut: int | None = None  # a line that could not be cut off after a failure

    def msg(self, line: str, *, record: dict) -> dict:
        self._cut_leftover()
        try:
            self._rotate_if_due(record["ts"])
            offset = self._append(line + "\n")
        except OSError as exc:
            raise AuditError(f"cannot write {self.layout.active}: {exc}") from exc
        try:
            with transaction(self.db):
                store.insert(self.db, record, line)
        except sqlite3.Error as exc:
            self._cut(offset)
            raise AuditError(f"cannot write {self.layout.database}: {exc}") from exc
        if self._first_ts is None:
            self._first_ts = record["ts"]
        return record

    def _append(self, data: str) -> int:
        path = self.layout.active
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            offset = os.fstat(fd).st_size
            try:
                view = memoryview(data.encode())
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # the first error is the one to report
                    _truncate_fd(fd, offset)
                raise
        finally:
            os.close(fd)
        if offset == 0:
            fsync_directory(self.layout.directory)  # the new file's name is durable too
        return offset

    def _cut(self, offset: int) -> None:
        try:
            fd = os.open(self.layout.active, os.O_WRONLY)
            try:
                _truncate_fd(fd, offset)
            finally:
                os.close(fd)
        except OSError as exc:
            logger.critical("could not take back an unrecorded audit line: %s", exc)
            self._uncut = offset

    def _cut_leftover(self) -> None:
        if self._uncut is None:
            return
        offset, self._uncut = self._uncut, None
        self._cut(offset)
        if self._uncut is not None:
            raise AuditError("the audit file still holds a line the database refused")

    def _rotate_if_due(self, ts: str) -> None:
        try:
            size = self.layout.active.stat().st_size
        except FileNotFoundError:
            return
        if not self.rotation.due(size, self._first_ts, ts):
            return
        target = self.layout.next_rotated()
        os.rename(self.layout.active, target)
        fsync_directory(self.layout.directory)
        self._first_ts = None
        self.rotated = True
        logger.info("audit: rotated audit.jsonl to %s", target.name)

    def delete_through(self, seq: int) -> None:
        with transaction(self.db):
            store.delete_through(self.db, seq)

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; on an error rolled back (as far as it can be) and raised."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _truncate_fd(fd: int, offset: int) -> None:
    os.ftruncate(fd, offset)
    os.fsync(fd)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_database(layout: Layout) -> sqlite3.Connection:
    db = store.connect_writer(layout.database)
    if store.has_tables(db) and store.schema_version(db) != store.SCHEMA_VERSION:
        db.close()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        old = layout.database.with_name(f"{layout.database.name}.v0-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{layout.database}{suffix}")
            if source.exists():
                source.rename(Path(f"{old}{suffix}"))
        logger.warning("audit database schema is out of date: moved to %s, rebuilt", old.name)
        db = store.connect_writer(layout.database)
    store.create(db)
    return db


def seq_of(record: dict, layout: Layout) -> int:
    """A record's sequence number (records written before `seq` existed: their position)."""
    seq = record.get("seq")
    if isinstance(seq, int):
        return seq
    return sum(1 for _ in numbered(layout))


def numbered(layout: Layout) -> Iterator[tuple[int, str, dict]]:
    """(seq, line, record) for every complete record of the files, oldest first."""
    position = 0
    for path in layout.files():
        for line in read_lines(path):
            if line.record is None:
                continue
            position += 1
            seq = line.record.get("seq")
            yield (seq if isinstance(seq, int) else position), line.text, line.record


def copy_missing(
    layout: Layout, db: sqlite3.Connection, db_head: tuple[int, str] | None
) -> int | None:
    """Insert the records after the database's head; None when the head is not in the files."""
    after = db_head[0] if db_head else 0
    missing = []
    for seq, text, record in numbered(layout):
        if db_head and seq == db_head[0] and record.get("hash") != db_head[1]:
            return None
        if seq > after:
            missing.append((seq, text, record))
    with transaction(db):
        for seq, text, record in missing:
            store.insert(db, {**record, "seq": seq}, text)
    return len(missing)
