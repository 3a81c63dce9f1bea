"""`veil audit verify`: is the trail intact, in both stores, and do they agree?

Each store is checked on its own: every record's hash must match its contents (the HMAC, for
sealed records, with the operator's key), every record must name its predecessor's hash, and
`seq` must count up by one. Then the stores are compared record by record, and every column
of the database must say what its record says. Problems name the first record affected:
which one was altered, which ones were removed, which ones are out of order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from veil.audit import store
from veil.audit.files import Layout, read_lines
from veil.audit.record import GENESIS, RETENTION_EVENT, canonical, chain_hash, seal_key_id

JSONL = "audit.jsonl"
DATABASE = "audit.sqlite3"


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
    decision_id: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.store}: {self.message}"


@dataclass
class StoreCheck:
    """The result of checking one store's chain."""

    count: int = 0
    head: Entry | None = None
    unverifiable: int = 0  # sealed records whose key was not given
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # seq -> (digest of the canonical record, where it is, its name)
    digests: dict[int, tuple[str, str, str]] = field(default_factory=dict)


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
    files = _check_files(layout, keys)
    result = Result(files, database, file_count=len(layout.files()))
    result.cross = _compare(layout, files, database)
    return result


# One store's chain.


def check_chain(entries: Iterable[Entry], keys: dict[str, bytes], label: str) -> StoreCheck:
    check = StoreCheck()
    listed = list(entries)
    anchors = _retention_anchors(listed)
    seqs = {e.seq for e in listed}
    prev: Entry | None = None
    sealed = False
    for entry in listed:
        record = entry.record
        check.count += 1
        digest = hashlib.sha256(canonical(record)).hexdigest()
        check.digests[entry.seq] = (digest, entry.where, entry.name)
        _check_hash(entry, keys, check, label)
        if prev is None:
            _check_start(entry, anchors, check, label)
        else:
            _check_link(prev, entry, seqs, check, label)
        if record.get("seal"):
            sealed = True
        elif sealed:
            check.problems.append(
                Problem(
                    label,
                    entry.seq,
                    record.get("decision_id"),
                    f"{entry.name} at {entry.where} is not sealed although earlier records "
                    "are: the chain from here may have been rewritten without the key",
                )
            )
        prev = entry
    check.head = prev
    return check


def _check_hash(entry: Entry, keys: dict[str, bytes], check: StoreCheck, label: str) -> None:
    record = entry.record
    seal = record.get("seal")
    key = keys.get(seal) if seal else None
    if seal and key is None:
        check.unverifiable += 1
        return
    prev_hash = record.get("prev_hash")
    if not isinstance(prev_hash, str) or chain_hash(prev_hash, record, key) != record.get("hash"):
        check.problems.append(
            Problem(
                label,
                entry.seq,
                record.get("decision_id"),
                f"{entry.name} at {entry.where} was altered: its contents do not match its hash",
            )
        )


def _check_start(entry: Entry, anchors: dict[str, int], check: StoreCheck, label: str) -> None:
    prev_hash = entry.record.get("prev_hash")
    if prev_hash == GENESIS and entry.seq == 1:
        return
    if prev_hash in anchors and anchors[prev_hash] == entry.seq - 1:
        check.notes.append(
            f"{label}: records 1 to {entry.seq - 1} were removed by the retention setting "
            "(recorded in the chain)"
        )
        return
    check.problems.append(
        Problem(
            label,
            entry.seq,
            entry.record.get("decision_id"),
            f"the trail starts at {entry.name} ({entry.where}): the records before it were removed",
        )
    )


def _check_link(prev: Entry, entry: Entry, seqs: set[int], check: StoreCheck, label: str) -> None:
    record = entry.record
    expected = prev.seq + 1
    if record.get("prev_hash") == prev.record.get("hash") and entry.seq == expected:
        return
    decision = record.get("decision_id")
    if entry.seq <= prev.seq:
        message = (
            f"{entry.name} at {entry.where} is out of order: it comes after record #{prev.seq}"
        )
    elif entry.seq > expected:
        missing = range(expected, entry.seq)
        if any(s in seqs for s in missing):
            message = (
                f"{entry.name} at {entry.where} is out of order: record #{expected} comes after it"
            )
        else:
            gap = f"#{expected}" if len(missing) == 1 else f"#{expected} to #{entry.seq - 1}"
            message = (
                f"record {gap} was removed: {entry.name} at {entry.where} follows "
                f"record #{prev.seq}"
            )
            check.problems.append(Problem(label, expected, decision, message))
            return
    else:
        message = (
            f"{prev.name} at {prev.where} was altered and its hash recomputed: the next record "
            f"#{entry.seq} names a different predecessor"
        )
        check.problems.append(Problem(label, prev.seq, prev.record.get("decision_id"), message))
        return
    check.problems.append(Problem(label, entry.seq, decision, message))


def _retention_anchors(entries: list[Entry]) -> dict[str, int]:
    """Hashes of the last record removed by retention -> its seq (from events in the chain)."""
    anchors = {}
    for entry in entries:
        r = entry.record
        if r.get("event") == RETENTION_EVENT and isinstance(r.get("through_hash"), str):
            anchors[r["through_hash"]] = int(r.get("through_seq") or 0)
    return anchors


# Reading each store.


def _file_entries(layout: Layout) -> tuple[list[Entry], list[Problem]]:
    files = layout.files()
    entries, problems = [], []
    position = 0
    for path in files:
        for line in read_lines(path):
            where = f"{path.name} line {line.number}"
            if line.problem == "incomplete" and path == files[-1]:
                continue  # a write in progress; a crash's leftover is set aside at next start
            if line.record is None:
                message = f"{where} is not a record ({line.problem}): altered?"
                problems.append(Problem(JSONL, None, None, message))
                continue
            position += 1
            seq = line.record.get("seq")
            entries.append(Entry(line.record, where, seq if isinstance(seq, int) else position))
    return entries, problems


def _check_files(layout: Layout, keys: dict[str, bytes]) -> StoreCheck:
    entries, problems = _file_entries(layout)
    check = check_chain(entries, keys, JSONL)
    check.problems = problems + check.problems
    return check


def _check_database(layout: Layout, keys: dict[str, bytes]) -> StoreCheck:
    if not layout.database.exists():
        check = StoreCheck()
        if layout.files():
            check.problems.append(Problem(DATABASE, None, None, f"{DATABASE} is missing"))
        return check
    db = store.connect_reader(layout.database)
    try:
        images = _image_rows(db)
        entries, problems = _database_entries(db, images)
    finally:
        db.close()
    check = check_chain(entries, keys, DATABASE)
    check.problems = problems + check.problems
    return check


def _image_rows(db: sqlite3.Connection) -> dict[int, list[tuple]]:
    rows: dict[int, list[tuple]] = {}
    names = ",".join(("seq", *store.IMAGE_COLUMNS))
    for row in db.execute(f"SELECT {names} FROM images ORDER BY seq, idx"):
        rows.setdefault(row[0], []).append(tuple(row))
    return rows


def _database_entries(
    db: sqlite3.Connection, images: dict[int, list[tuple]]
) -> tuple[list[Entry], list[Problem]]:
    entries, problems = [], []
    names = ",".join(store.COLUMNS)
    for row in db.execute(f"SELECT {names}, record FROM records ORDER BY seq"):
        seq = row["seq"]
        where = f"{DATABASE} seq {seq}"
        try:
            record = json.loads(row["record"])
            assert isinstance(record, dict)
        except (ValueError, AssertionError):
            problems.append(Problem(DATABASE, seq, None, f"{where}: the record is not JSON"))
            continue
        own = record.get("seq")
        entry = Entry(record, where, own if isinstance(own, int) else seq)
        problems += _column_problems(entry, row, images.pop(seq, []))
        entries.append(entry)
    for seq in images:
        problems.append(
            Problem(
                DATABASE, seq, None, f"{DATABASE}: image rows for record #{seq}, which is not there"
            )
        )
    return entries, problems


def _column_problems(entry: Entry, row: sqlite3.Row, images: list[tuple]) -> list[Problem]:
    """Queries read the columns: each must say what the record says."""
    found = []
    expected = store.record_row({"seq": entry.seq, **entry.record}, "")
    for name, want in zip(store.COLUMNS, expected, strict=False):
        if row[name] != want:
            found.append(
                Problem(
                    DATABASE,
                    entry.seq,
                    entry.record.get("decision_id"),
                    f"{entry.name} at {entry.where} was altered: column {name} is "
                    f"{row[name]!r} but the record says {want!r}",
                )
            )
    if [tuple(r) for r in images] != store.image_rows({**entry.record, "seq": row["seq"]}):
        found.append(
            Problem(
                DATABASE,
                entry.seq,
                entry.record.get("decision_id"),
                f"{entry.name} at {entry.where} was altered: its rows in the images table do "
                "not match the record",
            )
        )
    return found


# The two stores against each other.


def _compare(layout: Layout, files: StoreCheck, database: StoreCheck) -> list[Problem]:
    if not layout.database.exists():
        return []
    in_files, in_db = files.digests, database.digests
    late = [s for s in in_files if s not in in_db and s > max(in_db, default=0)]
    if late:  # the proxy may be between its two writes: look again
        time.sleep(0.5)
        in_db = {**in_db, **_digests_after(layout, min(late) - 1)}
    problems = []
    for seq in sorted(set(in_files) | set(in_db)):
        a, b = in_files.get(seq), in_db.get(seq)
        if a and b and a[0] == b[0]:
            continue
        if a and b:
            name, detail = _difference(layout, a[1], seq)
            problems.append(
                Problem(
                    "both",
                    seq,
                    None,
                    f"{name} differs between {a[1]} and {DATABASE}{detail}",
                )
            )
        elif a:
            message = f"{a[2]} was removed from {DATABASE} (it is still in {a[1]})"
            problems.append(Problem("both", seq, None, message))
        else:
            message = f"{b[2]} was removed from the JSON-lines files (it is still in {DATABASE})"
            problems.append(Problem("both", seq, None, message))
    return problems


def _digests_after(layout: Layout, seq: int) -> dict[int, tuple[str, str, str]]:
    db = store.connect_reader(layout.database)
    try:
        rows = db.execute("SELECT seq, record FROM records WHERE seq > ?", (seq,)).fetchall()
    finally:
        db.close()
    out = {}
    for row in rows:
        try:
            digest = hashlib.sha256(canonical(json.loads(row["record"]))).hexdigest()
        except ValueError:
            continue
        out[row["seq"]] = (digest, f"{DATABASE} seq {row['seq']}", f"record #{row['seq']}")
    return out


def _difference(layout: Layout, where: str, seq: int) -> tuple[str, str]:
    """The record's name, and `: field verdict is 'allowed' in the file, 'blocked' in the
    database`."""
    name, _, number = where.rpartition(" line ")
    try:
        text = (layout.directory / name).read_text(encoding="utf-8").split("\n")[int(number) - 1]
        ours = json.loads(text)
        db = store.connect_reader(layout.database)
        try:
            row = db.execute("SELECT record FROM records WHERE seq = ?", (seq,)).fetchone()
        finally:
            db.close()
        theirs = json.loads(row[0])
    except (OSError, ValueError, IndexError, TypeError):
        return f"record #{seq}", ""
    path = first_difference(ours, theirs)
    if path is None:
        return describe_record(ours, seq), ""
    detail = (
        f": field {path} is {_at(ours, path)!r} in the file, {_at(theirs, path)!r} in the database"
    )
    return describe_record(ours, seq), detail


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
