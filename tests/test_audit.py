"""The audit writer: one hash-chained record per write, in both stores or in neither; the chain
continues across restarts and rotated files; failures raise AuditError (uploads are refused)."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from veil.audit import AuditError, AuditLog
from veil.audit.files import Layout, Rotation, last_records, parse_retention
from veil.audit.record import GENESIS, chain_hash
from veil.audit.verify import verify


def decision(n: int = 0, **extra) -> dict:
    record = {
        "client": "10.0.0.7",
        "user": "alice",
        "service": "chatgpt",
        "host": "chatgpt.com",
        "method": "POST",
        "path": "/backend-api/files",
        "rule": "strip-everywhere",
        "actions": ["strip"],
        "verdict": "transformed",
        "images": [
            {
                "format": "jpeg",
                "width": 640,
                "height": 480,
                "bytes_in": 1000 + n,
                "bytes_out": 900 + n,
                "sha256_in": f"{n:064x}",
                "sha256_out": f"{n + 1:064x}",
                "phash": "cedbd88c49e8f808",
                "findings": [{"kind": "gps", "summary": "GPS position"}],
                "faces": None,
            }
        ],
        "duration_ms": 12.5,
    }
    record.update(extra)
    return record


def jsonl(directory: Path, name: str = "audit.jsonl") -> list[dict]:
    text = (directory / name).read_text()
    return [json.loads(line) for line in text.splitlines() if line]


def rows(directory: Path) -> list[tuple]:
    db = sqlite3.connect(directory / "audit.sqlite3")
    try:
        return db.execute("SELECT seq, verdict, hash, record FROM records ORDER BY seq").fetchall()
    finally:
        db.close()


@pytest.fixture
def log(tmp_path):
    audit = AuditLog(tmp_path / "audit")
    audit.open()
    yield audit
    audit.close()


def test_each_write_is_one_chained_record_in_both_stores(log):
    written = [log.write(decision(n)) for n in range(3)]
    on_disk = jsonl(log.directory)
    assert on_disk == written
    assert [r["seq"] for r in on_disk] == [1, 2, 3]
    assert on_disk[0]["prev_hash"] == GENESIS
    for prev, record in itertools.pairwise(on_disk):
        assert record["prev_hash"] == prev["hash"]
        assert record["hash"] == chain_hash(prev["hash"], record)
    in_db = rows(log.directory)
    assert [(r[0], r[2]) for r in in_db] == [(r["seq"], r["hash"]) for r in on_disk]
    assert [json.loads(r[3]) for r in in_db] == on_disk
    db = sqlite3.connect(log.db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert verify(log.directory).ok


def test_restart_continues_the_same_chain(tmp_path):
    first = AuditLog(tmp_path)
    first.open()
    a = first.write(decision(1))
    first.close()
    second = AuditLog(tmp_path)
    second.open()
    b = second.write(decision(2))
    second.close()
    assert (b["seq"], b["prev_hash"]) == (2, a["hash"])
    assert verify(tmp_path).ok


def test_a_database_failure_takes_the_line_back(log):
    log.write(decision(1))
    before = log.jsonl_path.read_bytes()
    # A real SQLite failure inside the real database, as a full disk or a lock would give.
    other = sqlite3.connect(log.db_path)
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON records"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    other.commit()
    with pytest.raises(AuditError, match="disk I/O error"):
        log.write(decision(2))
    assert log.jsonl_path.read_bytes() == before  # the two stores did not diverge
    other.execute("DROP TRIGGER refuse")
    other.commit()
    other.close()
    record = log.write(decision(3))
    assert record["seq"] == 2  # the refused record never joined the chain
    assert verify(log.directory).ok


def test_a_full_disk_raises_and_writes_nothing(log):
    log.write(decision(1))
    kept = log.jsonl_path.with_name("kept.jsonl")
    log.jsonl_path.rename(kept)
    log.jsonl_path.symlink_to("/dev/full")  # every write fails with ENOSPC, even for root
    with pytest.raises(AuditError, match="No space left"):
        log.write(decision(2))
    assert len(rows(log.directory)) == 1
    log.jsonl_path.unlink()
    kept.rename(log.jsonl_path)
    assert log.write(decision(3))["seq"] == 2
    assert verify(log.directory).ok


def test_a_crash_between_the_two_writes_is_repaired_at_start(tmp_path):
    log = AuditLog(tmp_path)
    log.open()
    log.write(decision(1))
    last = log.write(decision(2))
    log.close()
    db = sqlite3.connect(tmp_path / "audit.sqlite3")
    db.execute("DELETE FROM images WHERE seq = 2")
    db.execute("DELETE FROM records WHERE seq = 2")  # the row never committed
    db.commit()
    db.close()
    assert not verify(tmp_path).ok
    log = AuditLog(tmp_path)
    log.open()
    assert [r[2] for r in rows(tmp_path)][-1] == last["hash"]
    assert log.write(decision(3))["prev_hash"] == last["hash"]
    log.close()
    assert verify(tmp_path).ok


def test_a_torn_last_line_is_set_aside_at_start(tmp_path):
    log = AuditLog(tmp_path)
    log.open()
    first = log.write(decision(1))
    log.close()
    with (tmp_path / "audit.jsonl").open("a") as f:
        f.write('{"ts":"2025-01-01T00:00:00.000+00:00","decision_id":"half')
    log = AuditLog(tmp_path)
    log.open()
    second = log.write(decision(2))
    log.close()
    assert second["prev_hash"] == first["hash"]
    assert [r["seq"] for r in jsonl(tmp_path)] == [1, 2]
    (torn,) = tmp_path.glob("audit.jsonl.torn-*")
    assert torn.read_text().endswith('"half')
    assert verify(tmp_path).ok


def test_a_second_writer_is_refused(log):
    other = AuditLog(log.directory)
    with pytest.raises(AuditError, match=rf"being written by process {os.getpid()}"):
        other.open()


def test_bytes_bodies_and_credentials_never_reach_the_trail(log):
    log.write(
        decision(
            1,
            headers={"cookie": "session=secret"},
            body=b"\xff\xd8 image bytes",
            extra={"Authorization": "Bearer sk-secret", "thumbnail": b"\x89PNG"},
        )
    )
    text = log.jsonl_path.read_text() + repr(rows(log.directory))
    for secret in ("session=secret", "sk-secret", "image bytes", "PNG"):
        assert secret not in text
    assert "<4 bytes not recorded>" in text
    assert verify(log.directory).ok


def test_event_records_get_a_time_and_an_id(log):
    event = log.write(
        {"event": "policy_reload_failed", "verdict": "error", "message": "line 7: bad action"}
    )
    assert event["decision_id"] and event["ts"].endswith("+00:00")
    assert list(event)[:2] == ["ts", "decision_id"]
    (row,) = rows(log.directory)
    assert row[1] == "error"
    assert verify(log.directory).ok


def test_timestamps_are_stored_in_utc(log):
    record = log.write(decision(1, ts="2025-03-01T15:00:00+01:00"))
    assert record["ts"] == "2025-03-01T14:00:00.000+00:00"


def test_rotation_by_size_keeps_one_chain_across_files_and_restarts(tmp_path):
    log = AuditLog(tmp_path, rotation=Rotation(max_bytes=2000))
    log.open()
    for n in range(6):
        log.write(decision(n))
    log.close()
    log = AuditLog(tmp_path, rotation=Rotation(max_bytes=2000))
    log.open()
    for n in range(6, 10):
        log.write(decision(n))
    log.close()
    layout = Layout(tmp_path)
    assert len(layout.rotated()) >= 3
    records = [r for path in layout.files() for r in jsonl(tmp_path, path.name)]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert [r["seq"] for r in last_records(layout, 4)] == [7, 8, 9, 10]
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert result.files.count == 10


def test_daily_rotation_starts_a_file_per_day(tmp_path):
    log = AuditLog(tmp_path, rotation=Rotation(daily=True))
    log.open()
    for day, hour in ((1, 9), (1, 17), (2, 8), (3, 23), (3, 23)):
        log.write(decision(day * 100 + hour, ts=f"2025-03-0{day}T{hour:02d}:00:00+00:00"))
    log.close()
    layout = Layout(tmp_path)
    days = [{r["ts"][:10] for r in jsonl(tmp_path, p.name)} for p in layout.files()]
    assert days == [{"2025-03-01"}, {"2025-03-02"}, {"2025-03-03"}]
    assert verify(tmp_path).ok


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_retention_removes_old_files_and_says_so_in_the_chain(tmp_path):
    clock = Clock(datetime(2025, 1, 1, 12, tzinfo=UTC))
    log = AuditLog(
        tmp_path, rotation=Rotation(daily=True), retention=timedelta(days=30), clock=clock
    )
    log.open()
    for day in range(45):  # one upload a day for 45 days
        log.write(decision(day))
        clock.now += timedelta(days=1)
    log.close()
    records = [r for p in Layout(tmp_path).files() for r in jsonl(tmp_path, p.name)]
    events = [r for r in records if r.get("event")]
    assert events and all(e["event"] == "retention_pruned" for e in events)
    kept = [r for r in records if not r.get("event")]
    oldest_kept = datetime.fromisoformat(kept[0]["ts"])
    assert clock.now - oldest_kept <= timedelta(days=32)  # nothing much older than 30 days
    assert records[0]["prev_hash"] == events[-1]["through_hash"]
    assert [r[0] for r in rows(tmp_path)] == [r["seq"] for r in records]
    result = verify(tmp_path)
    assert result.ok, result.problems
    assert any("retention" in note for note in result.files.notes)


def test_retention_set_at_a_restart_prunes_at_once(tmp_path):
    now = datetime.now(UTC)
    log = AuditLog(tmp_path, rotation=Rotation(daily=True))
    log.open()
    for age in (100, 99, 50, 10):
        log.write(decision(age, ts=(now - timedelta(days=age)).isoformat()))
    log.close()
    log = AuditLog(tmp_path, retention=timedelta(days=30))
    log.open()
    log.close()
    records = [r for p in Layout(tmp_path).files() for r in jsonl(tmp_path, p.name)]
    assert [r.get("event") or r["seq"] for r in records] == [4, "retention_pruned"]
    assert records[1]["through_seq"] == 3
    assert verify(tmp_path).ok


def test_a_rotated_file_removed_by_hand_is_caught(tmp_path):
    log = AuditLog(tmp_path, rotation=Rotation(max_bytes=1500))
    log.open()
    for n in range(6):
        log.write(decision(n))
    log.close()
    oldest = Layout(tmp_path).rotated()[0]
    removed = jsonl(tmp_path, oldest.name)
    oldest.unlink()
    problems = [str(p) for p in verify(tmp_path).problems]
    assert any("records before it were removed" in p for p in problems)
    first = removed[0]
    assert any(
        f"record #{first['seq']} (decision {first['decision_id']}" in p
        and "removed from the JSON-lines files" in p
        for p in problems
    )


def test_sealed_chain_needs_the_key(tmp_path):
    key = os.urandom(32).hex().encode()
    log = AuditLog(tmp_path, seal_key=key)
    log.open()
    records = [log.write(decision(n)) for n in range(3)]
    log.close()
    assert all(r["seal"] == records[0]["seal"] for r in records)
    assert records[1]["hash"] == chain_hash(records[0]["hash"], records[1], key)
    assert verify(tmp_path, [key]).ok
    unchecked = verify(tmp_path)
    assert unchecked.ok and unchecked.unverifiable == 3
    other_key = verify(tmp_path, [os.urandom(32).hex().encode()])  # not the trail's key
    assert other_key.ok and other_key.unverifiable == 3
    with pytest.raises(AuditError, match="sealed"):
        AuditLog(tmp_path).open()


def test_a_sealed_record_recomputed_without_the_key_is_caught(tmp_path):
    key = b"k" * 32
    log = AuditLog(tmp_path, seal_key=key)
    log.open()
    for n in range(3):
        log.write(decision(n))
    log.close()
    # Someone without the key rewrites record 2 as an unsealed record and re-chains the rest.
    path = tmp_path / "audit.jsonl"
    records = jsonl(tmp_path)
    prev = records[0]["hash"]
    for record in records[1:]:
        record.pop("seal")
        if record["seq"] == 2:
            record["verdict"] = "allowed"
        record["prev_hash"] = prev
        record["hash"] = prev = chain_hash(prev, record)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    problems = [str(p) for p in verify(tmp_path, [key]).problems]
    assert any("#2" in p and "not sealed" in p for p in problems)


def test_records_from_before_seq_existed_are_read_and_continued(tmp_path):
    prev = GENESIS
    lines = []
    for n in range(2):  # the foundation's records: no seq
        record = {"ts": f"2025-01-0{n + 1}T00:00:00.000+00:00", "decision_id": f"{n:032x}"}
        record.update(verdict="allowed", images=[], prev_hash=prev)
        record["hash"] = prev = chain_hash(prev, record)
        lines.append(json.dumps(record))
    (tmp_path / "audit.jsonl").write_text("\n".join(lines) + "\n")
    db = sqlite3.connect(tmp_path / "audit.sqlite3")
    db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT)")
    db.close()
    log = AuditLog(tmp_path)
    log.open()
    record = log.write(decision(3))
    log.close()
    assert (record["seq"], record["prev_hash"]) == (3, prev)
    assert list(tmp_path.glob("audit.sqlite3.v0-*"))
    result = verify(tmp_path)
    assert result.ok, result.problems


def test_options_are_checked_with_clear_messages(tmp_path):
    assert Rotation.parse("daily,100MiB") == Rotation(daily=True, max_bytes=100 * 2**20)
    assert Rotation.parse("") == Rotation()
    assert parse_retention("90d") == timedelta(days=90)
    assert parse_retention("36h") == timedelta(hours=36)
    with pytest.raises(ValueError, match="'daily'"):
        Rotation.parse("weekly")
    with pytest.raises(ValueError, match="90d"):
        parse_retention("three months")
    short = tmp_path / "short.key"
    short.write_text("abc")
    with pytest.raises(AuditError, match="at least 16"):
        AuditLog.from_options(tmp_path, seal_key_file=str(short))
    with pytest.raises(AuditError, match="X25519 public key"):
        AuditLog.from_options(tmp_path, quarantine_key_file=str(short))
    # Retention without rotation rotates daily: retention removes whole files.
    assert AuditLog.from_options(tmp_path, retention="30d").rotation == Rotation(daily=True)


def test_writing_to_a_closed_log_raises(tmp_path):
    log = AuditLog(tmp_path)
    with pytest.raises(AuditError, match="not open"):
        log.write(decision(1))


def test_veil_run_stops_on_a_bad_audit_flag_before_starting(tmp_path, capsys):
    from veil.cli import main

    common = ["run", "--certs", str(tmp_path / "certs"), "--audit", str(tmp_path / "audit")]
    assert main([*common, "--audit-rotate", "weekly"]) == 1
    assert (
        "veil run: audit rotation 'weekly' not understood: use 'daily'" in capsys.readouterr().err
    )
    assert main([*common, "--audit-seal-key", str(tmp_path / "missing.key")]) == 1
    assert "cannot read the audit seal key" in capsys.readouterr().err
    assert not (tmp_path / "audit").exists()
