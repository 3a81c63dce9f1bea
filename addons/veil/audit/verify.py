"""`veil audit verify`: is the trail intact, in both stores, and do they agree?

Each store is checked on its own: every record's hash must match its contents (the HMAC, for
sealed records, with the operator's key), every record must name its predecessor's hash, and
`seq` must count up by one. Then the stores are compared record by record, and every column
of the database must say what its record says. Problems name the first record affected:
which one was altered, which ones were removed, which ones are out of order.

Records are streamed: memory grows by one short digest per record, not by the records.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from veil.audit import store
from veil.audit.files import ACTIVE as JSONL
from veil.audit.files import DATABASE, Layout, read_lines
from veil.audit.record import GENESIS, RETENTION_EVENT, canonical, link_hash, seal_key_id

DETAILED = 20  # differences between the stores explained field by field


@dataclass(frozen=True)
class Entry:
    """One record as one store holds it."""

    record: dict
    where: str  # "audit.000002.jsonl line 14", "audit.sqlite3 seq 14"
    seq: int

    @property
    def name(self) -> str:
        return describe_record(self.record, self.seq)


@dataclass
class Problem:
    store: str
    seq: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.store}: {self.message}"


@dataclass
class StoreCheck:
    """The result of checking one store's chain."""

    label: str
    count: int = 0
    head: Entry | None = None
    unverifiable: int = 0  # sealed records whose key was not given
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    digests: dict[int, bytes] = field(default_factory=dict)  # seq -> digest of the record

    def problem(self, seq: int | None, message: str) -> None:
        self.problems.append(Problem(self.label, seq, message))


@dataclass
class Result:
    files: StoreCheck
    database: StoreCheck
    cross: list[Problem] = field(default_factory=list)
    file_count: int = 0

    @property
    def problems(self) -> list[Problem]:
        found = self.files.problems + self.database.problems + self.cross
        return sorted(found, key=lambda p: (p.seq is None, p.seq or 0))

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unverifiable(self) -> int:
        return max(self.files.unverifiable, self.database.unverifiable)


def describe_record(record: dict, seq: int | None = None) -> str:
    seq = record.get("seq", seq)
    what = record.get("event") or " ".join(
        str(v) for v in (record.get("verdict"), record.get("service")) if v
    )
    return f"record #{seq} (decision {record.get('decision_id')}, {record.get('ts')}, {what})"


def verify(directory: Path, seal_keys: Iterable[bytes] = ()) -> Result:
    keys = {seal_key_id(k): k for k in seal_keys}
    layout = Layout(directory)
    database = _check_database(layout, keys)
    files = StoreCheck(JSONL)
    check_chain(_file_entries(layout, files), keys, files)
    result = Result(files, database, file_count=len(layout.files()))
    result.cross = _compare(layout, files, database)
    return result


# One store's chain.


@dataclass
class _Walk:
    """What the walk along one chain remembers: the previous record, the first one, gaps
    (a gap whose records turn up later is a reordering, not a removal) and the retention
    events that explain a trail that does not start at record 1."""

    prev: Entry | None = None
    first: Entry | None = None
    sealed: bool = False
    gaps: list[tuple[range, Entry, Entry]] = field(default_factory=list)
    anchors: dict[str, int] = field(default_factory=dict)


def check_chain(entries: Iterable[Entry], keys: dict[str, bytes], check: StoreCheck) -> None:
    walk = _Walk()
    for entry in entries:
        record = entry.record
        check.count += 1
        body = canonical(record)
        check.digests[entry.seq] = _digest(body)
        _check_hash(entry, body, keys, check)
        if walk.first is None:
            walk.first = entry
        else:
            _check_link(walk, entry, check)
        _check_seal_kept(walk, entry, check)
        if record.get("event") == RETENTION_EVENT and isinstance(record.get("through_hash"), str):
            walk.anchors[record["through_hash"]] = int(record.get("through_seq") or 0)
        walk.prev = entry
    check.head = walk.prev
    if walk.first is not None:
        _check_start(walk, check)
    _report_gaps(walk, check)


def _check_hash(entry: Entry, body: bytes, keys: dict[str, bytes], check: StoreCheck) -> None:
    record = entry.record
    seal = record.get("seal")
    key = keys.get(seal) if seal else None
    if seal and key is None:
        check.unverifiable += 1
        return
    prev_hash = record.get("prev_hash")
    expected = link_hash(prev_hash, body, key) if isinstance(prev_hash, str) else None
    if expected != record.get("hash"):
        check.problem(
            entry.seq,
            f"{entry.name} at {entry.where} was altered: its contents do not match its hash",
        )


def _check_seal_kept(walk: _Walk, entry: Entry, check: StoreCheck) -> None:
    if entry.record.get("seal"):
        walk.sealed = True
    elif walk.sealed:
        check.problem(
            entry.seq,
            f"{entry.name} at {entry.where} is not sealed although earlier records are: the "
            "chain from here may have been rewritten without the key",
        )


def _check_link(walk: _Walk, entry: Entry, check: StoreCheck) -> None:
    prev = walk.prev
    assert prev is not None
    expected = prev.seq + 1
    if entry.record.get("prev_hash") == prev.record.get("hash") and entry.seq == expected:
        return
    if entry.seq <= prev.seq:
        check.problem(
            entry.seq,
            f"{entry.name} at {entry.where} is out of order: it comes after record #{prev.seq}",
        )
    elif entry.seq > expected:
        walk.gaps.append((range(expected, entry.seq), prev, entry))
    else:
        check.problem(
            prev.seq,
            f"{prev.name} at {prev.where} was altered and its hash recomputed: the next record "
            f"#{entry.seq} names a different predecessor",
        )


def _report_gaps(walk: _Walk, check: StoreCheck) -> None:
    for missing, prev, entry in walk.gaps:
        if any(s in check.digests for s in missing):
            check.problem(
                entry.seq,
                f"{entry.name} at {entry.where} is out of order: record #{missing[0]} comes "
                "after it",
            )
            continue
        gap = f"#{missing[0]}" if len(missing) == 1 else f"#{missing[0]} to #{missing[-1]}"
        check.problem(
            missing[0],
            f"record {gap} was removed: {entry.name} at {entry.where} follows record #{prev.seq}",
        )


def _check_start(walk: _Walk, check: StoreCheck) -> None:
    first = walk.first
    assert first is not None
    prev_hash = first.record.get("prev_hash")
    if prev_hash == GENESIS and first.seq == 1:
        return
    if walk.anchors.get(prev_hash) == first.seq - 1:  # type: ignore[arg-type]
        check.notes.append(
            f"{check.label}: records 1 to {first.seq - 1} were removed by the retention setting "
            "(recorded in the chain)"
        )
        return
    check.problem(
        first.seq,
        f"the trail starts at {first.name} ({first.where}): the records before it were removed",
    )


# Reading each store.


def _file_entries(layout: Layout, check: StoreCheck) -> Iterator[Entry]:
    files = layout.files()
    position = 0
    for path in files:
        for line in read_lines(path):
            where = f"{path.name} line {line.number}"
            if line.problem == "incomplete" and path == files[-1]:
                continue  # a write in progress; a crash's leftover is set aside at next start
            if line.record is None:
                check.problem(None, f"{where} is not a record ({line.problem}): altered?")
                continue
            position += 1
            seq = line.record.get("seq")
            yield Entry(line.record, where, seq if isinstance(seq, int) else position)


def _check_database(layout: Layout, keys: dict[str, bytes]) -> StoreCheck:
    check = StoreCheck(DATABASE)
    if not layout.database.exists():
        if layout.files():
            check.problem(None, f"{DATABASE} is missing")
        return check
    db = store.connect_reader(layout.database)
    try:
        db.execute("BEGIN")  # one snapshot of both tables, even while the proxy writes
        check_chain(_database_entries(db, check), keys, check)
        db.execute("COMMIT")
    finally:
        db.close()
    return check


def _database_entries(db: sqlite3.Connection, check: StoreCheck) -> Iterator[Entry]:
    images = _images_by_seq(db)
    pending = next(images, None)
    names = ",".join(store.COLUMNS)
    for row in db.execute(f"SELECT {names}, record FROM records ORDER BY seq"):
        seq = row["seq"]
        mine: list[tuple] = []
        while pending is not None and pending[0] <= seq:
            if pending[0] == seq:
                mine.append(pending)
            else:
                check.problem(
                    pending[0], f"image rows for record #{pending[0]}, which is not there"
                )
            pending = next(images, None)
        where = f"{DATABASE} seq {seq}"
        try:
            record = json.loads(row["record"])
            assert isinstance(record, dict)
        except (ValueError, AssertionError):
            check.problem(seq, f"{where}: the record is not JSON")
            continue
        own = record.get("seq")
        entry = Entry(record, where, own if isinstance(own, int) else seq)
        _check_columns(entry, row, mine, check)
        yield entry
    while pending is not None:
        check.problem(pending[0], f"image rows for record #{pending[0]}, which is not there")
        pending = next(images, None)


def _images_by_seq(db: sqlite3.Connection) -> Iterator[tuple]:
    cursor = db.cursor()  # a second cursor, read alongside the records
    names = ",".join(("seq", *store.IMAGE_COLUMNS))
    for row in cursor.execute(f"SELECT {names} FROM images ORDER BY seq, idx"):
        yield tuple(row)


def _check_columns(entry: Entry, row: sqlite3.Row, images: list[tuple], check: StoreCheck) -> None:
    """Queries read the columns: each must say what the record says."""
    expected = store.record_row({"seq": entry.seq, **entry.record}, "")
    for name, want in zip(store.COLUMNS, expected, strict=False):
        if row[name] != want:
            check.problem(
                entry.seq,
                f"{entry.name} at {entry.where} was altered: column {name} is {row[name]!r} but "
                f"the record says {want!r}",
            )
    if images != store.image_rows({**entry.record, "seq": row["seq"]}):
        check.problem(
            entry.seq,
            f"{entry.name} at {entry.where} was altered: its rows in the images table do not "
            "match the record",
        )


# The two stores against each other.


def _compare(layout: Layout, files: StoreCheck, database: StoreCheck) -> list[Problem]:
    if not layout.database.exists():
        return []
    in_files, in_db = files.digests, database.digests
    newest = max(in_db, default=0)
    if any(seq > newest for seq in in_files):  # the proxy may be between its two writes
        time.sleep(0.5)
        in_db = {**in_db, **_digests_after(layout, newest)}
    differing = [s for s in sorted(set(in_files) | set(in_db)) if in_files.get(s) != in_db.get(s)]
    if not differing:
        return []
    lookup = _Lookup(layout, set(differing[:DETAILED]))
    problems = []
    for n, seq in enumerate(differing):
        if n >= DETAILED:
            problems.append(Problem("both", seq, f"record #{seq} differs between the stores"))
        elif seq in in_files and seq in in_db:
            problems.append(Problem("both", seq, lookup.difference(seq)))
        elif seq in in_files:
            entry = lookup.files.get(seq)
            name, where = (entry.name, entry.where) if entry else (f"record #{seq}", JSONL)
            problems.append(
                Problem("both", seq, f"{name} was removed from {DATABASE} (it is still in {where})")
            )
        else:
            record = lookup.database.get(seq, {})
            problems.append(
                Problem(
                    "both",
                    seq,
                    f"{describe_record(record, seq)} was removed from the JSON-lines files (it is "
                    f"still in {DATABASE})",
                )
            )
    return problems


def _digest(body: bytes) -> bytes:
    """What the stores are compared on: both sides must use this one."""
    return hashlib.sha256(body).digest()[:16]


def _digests_after(layout: Layout, seq: int) -> dict[int, bytes]:
    db = store.connect_reader(layout.database)
    try:
        rows = db.execute("SELECT seq, record FROM records WHERE seq > ?", (seq,)).fetchall()
    finally:
        db.close()
    out = {}
    for row in rows:
        try:
            out[row["seq"]] = _digest(canonical(json.loads(row["record"])))
        except ValueError:
            continue
    return out


class _Lookup:
    """The few records that differ, read again from both stores to explain how."""

    def __init__(self, layout: Layout, seqs: set[int]) -> None:
        self.files = {e.seq: e for e in _file_entries(layout, StoreCheck(JSONL)) if e.seq in seqs}
        db = store.connect_reader(layout.database)
        try:
            marks = ",".join("?" * len(seqs))
            rows = db.execute(f"SELECT seq, record FROM records WHERE seq IN ({marks})", list(seqs))
            self.database = {}
            for seq, text in rows:
                try:
                    self.database[seq] = json.loads(text)
                except ValueError:
                    self.database[seq] = {}
        finally:
            db.close()

    def difference(self, seq: int) -> str:
        """`record #3 (...) differs ...: field verdict is 'allowed' in the file, 'blocked' in
        the database`."""
        entry, theirs = self.files.get(seq), self.database.get(seq, {})
        if entry is None:
            return f"record #{seq} differs between the stores"
        text = f"{entry.name} differs between {entry.where} and {DATABASE}"
        path = first_difference(entry.record, theirs)
        if path is None:
            return text
        return (
            f"{text}: field {path} is {_at(entry.record, path)!r} in the file, "
            f"{_at(theirs, path)!r} in the database"
        )


def first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key == "hash":
                continue
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else (path or "(record)")


def _at(value, path: str):
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            value = value[int(part[1:-1])] if isinstance(value, list) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value
