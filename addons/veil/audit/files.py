"""The files of an audit directory: the active JSON-lines file, rotated ones, the database.

audit.jsonl            the active file, appended to
audit.000001.jsonl     rotated files, oldest first (the chain runs through them in order)
audit.sqlite3          the same records, for queries
audit.lock             held by the one process that writes this trail
quarantine/            encrypted originals of blocked uploads (optional)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ACTIVE = "audit.jsonl"
DATABASE = "audit.sqlite3"
LOCK = "audit.lock"
QUARANTINE = "quarantine"
_ROTATED = re.compile(r"^audit\.(\d{6,})\.jsonl$")
_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Layout:
    directory: Path

    @property
    def active(self) -> Path:
        return self.directory / ACTIVE

    @property
    def database(self) -> Path:
        return self.directory / DATABASE

    @property
    def lock(self) -> Path:
        return self.directory / LOCK

    @property
    def quarantine(self) -> Path:
        return self.directory / QUARANTINE

    def rotated(self) -> list[Path]:
        """Rotated files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            m = _ROTATED.match(path.name)
            if m:
                found.append((int(m.group(1)), path))
        return [path for _, path in sorted(found)]

    def files(self) -> list[Path]:
        """Every JSON-lines file in chain order: rotated ones, then the active one."""
        active = [self.active] if self.active.exists() else []
        return self.rotated() + active

    def next_rotated(self) -> Path:
        rotated = self.rotated()
        number = int(_ROTATED.match(rotated[-1].name).group(1)) + 1 if rotated else 1  # type: ignore[union-attr]
        return self.directory / f"audit.{number:06d}.jsonl"


@dataclass(frozen=True)
class Line:
    """One line of a JSON-lines file; `record` is None when it is not a JSON object."""

    path: Path
    number: int
    text: str
    record: dict | None
    problem: str | None = None


def read_lines(path: Path) -> Iterator[Line]:
    """Every line of one file; an incomplete last line (a write in progress) is reported."""
    with path.open("rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for number, raw in enumerate(complete, 1):
        if raw.strip():
            yield _parse(path, number, raw)
    if tail.strip():
        yield Line(path, len(complete) + 1, tail.decode("utf-8", "replace"), None, "incomplete")


def _parse(path: Path, number: int, raw: bytes) -> Line:
    text = raw.decode("utf-8", "replace")
    try:
        record = json.loads(text)
    except ValueError as exc:
        return Line(path, number, text, None, f"not JSON ({exc})")
    if not isinstance(record, dict):
        return Line(path, number, text, None, "not a JSON object")
    return Line(path, number, text, record)


def last_record(path: Path) -> dict | None:
    """The last complete record of a file, read from its end (files can be large)."""
    raw = _last_complete_line(path)
    if raw is None:
        return None
    return _parsed(raw)


def first_record(path: Path) -> dict | None:
    try:
        with path.open("rb") as f:
            raw = f.readline()
    except FileNotFoundError:
        return None
    if not raw.endswith(b"\n"):
        return None
    return _parsed(raw)


def _parsed(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _last_complete_line(path: Path) -> bytes | None:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    with f:
        pos = f.seek(0, 2)
        buf = b""
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            # Whatever follows the last newline is an incomplete line: never a record.
            body = buf[: buf.rfind(b"\n") + 1].rstrip(b"\n")
            start = body.rfind(b"\n")
            if start >= 0:
                return body[start + 1 :]
            if pos == 0:
                return body or None
        return None


def torn_tail(path: Path) -> int | None:
    """The offset where an incomplete last line starts (a crash mid-write), or None."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with path.open("rb") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        pos = size
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            cut = f.read(step).rfind(b"\n")
            if cut >= 0:
                return pos + cut + 1
        return 0


@dataclass(frozen=True)
class Rotation:
    """When the active file is closed and a new one begun: by size, by day, or both."""

    daily: bool = False
    max_bytes: int | None = None

    @classmethod
    def parse(cls, text: str) -> Rotation:
        from veil.policy import parse_size

        daily, max_bytes = False, None
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            if part.lower() in ("daily", "day"):
                daily = True
            elif part.lower() in ("never", "off"):
                continue
            else:
                try:
                    max_bytes = parse_size(part)
                except ValueError:
                    raise ValueError(
                        f"audit rotation {part!r} not understood: use 'daily', a size like "
                        "'100MiB', or both ('daily,100MiB')"
                    ) from None
                if max_bytes <= 0:
                    raise ValueError(f"audit rotation size must be positive, not {part!r}")
        return cls(daily, max_bytes)

    @property
    def enabled(self) -> bool:
        return self.daily or self.max_bytes is not None

    def due(self, size: int, first_ts: str | None, ts: str) -> bool:
        """Whether the active file (`size` bytes, first record at `first_ts`) is closed before
        a record stamped `ts` is written."""
        if size == 0:
            return False
        if self.max_bytes is not None and size >= self.max_bytes:
            return True
        return self.daily and first_ts is not None and first_ts[:10] < ts[:10]


def parse_retention(text: str | None) -> timedelta | None:
    """`90d`, `90` (days), `12w` or `36h` -> how long rotated files are kept; empty: forever."""
    if not text or str(text).strip().lower() in ("", "forever", "never", "off"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            f"audit retention {text!r} not understood: use a number of days like '90d' "
            "(or hours '36h', weeks '12w')"
        )
    unit = {"": "days", "d": "days", "h": "hours", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: float(m.group(1))})


def parse_ts(ts: str) -> datetime:
    value = datetime.fromisoformat(ts)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_ts(when: datetime) -> str:
    """A record's `ts`: UTC to the millisecond, so that time ranges compare as text in SQL."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def follow(layout: Layout, interval: float = 0.5) -> Iterator[dict]:
    """New records as they are written (like tail -F). When the active file is rotated away,
    the files written since are read too, so that no record is skipped, however fast the
    rotations; `seq` keeps each record to one appearance."""
    last = last_of(layout)
    after = last.get("seq", 0) if last else 0
    current = _open_at_end(layout.active)
    pending = b""
    try:
        while True:
            if current is None or _replaced(current, layout.active):
                if current is not None:
                    current.close()
                current, records, pending = _catch_up(layout, after)
            else:
                chunk = current.read()
                if not chunk:
                    time.sleep(interval)
                    continue
                records, pending = _complete_records(pending + chunk)
            for record in records:
                seq = record.get("seq")
                if isinstance(seq, int):
                    if seq <= after:
                        continue
                    after = seq
                yield record
            if current is None:
                time.sleep(interval)
    finally:
        if current is not None:
            current.close()


def _catch_up(layout: Layout, after: int):
    """(the active file open at its end, every record after seq `after`, a partial line)."""
    current = _open_at_start(layout.active)  # before listing: a rotation now is seen twice
    older: list[dict] = []
    for path in reversed(layout.rotated()):
        found = [line.record for line in read_lines(path) if line.record is not None]
        older = found + older
        if not found or found[0].get("seq", 0) <= after + 1:
            break
    if current is None:
        return None, older, b""
    records, pending = _complete_records(current.read())
    return current, older + records, pending


def _complete_records(data: bytes) -> tuple[list[dict], bytes]:
    *complete, pending = data.split(b"\n")
    records = []
    for raw in complete:
        if raw.strip():
            line = _parse(Path(ACTIVE), 0, raw)
            if line.record is not None:
                records.append(line.record)
    return records, pending


def last_of(layout: Layout) -> dict | None:
    """The newest record of the trail, across its files."""
    for path in reversed(layout.files()):
        record = last_record(path)
        if record is not None:
            return record
    return None


def _open_at_end(path: Path):
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    f.seek(0, 2)
    return f


def _open_at_start(path: Path):
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


def _replaced(f, path: Path) -> bool:
    """Whether `path` now names another file than the open one (rotated away)."""
    try:
        return path.stat().st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return True


def last_records(layout: Layout, count: int) -> list[dict]:
    """The newest `count` complete records, oldest first, read from the files' ends."""
    found: list[dict] = []
    for path in reversed(layout.files()):
        for raw in _lines_backwards(path):
            line = _parse(path, 0, raw)
            if line.record is not None:
                found.append(line.record)
                if len(found) >= count:
                    return found[::-1]
    return found[::-1]


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """Complete lines of a file, newest first (an incomplete last line is skipped)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        size = f.seek(0, 2)
        torn = torn_tail(path)
        pos = size if torn is None else torn
        pending = b""
        while pos > 0:
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            parts = (f.read(step) + pending).split(b"\n")
            pending = parts[0]  # maybe the end of a line that starts in an earlier block
            for raw in reversed(parts[1:]):
                if raw.strip():
                    yield raw
        if pending.strip():
            yield pending
