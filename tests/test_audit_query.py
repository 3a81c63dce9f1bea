"""Reading the trail: `tail`, `query` filters, `find` by sha256 and perceptual hash, `show`."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image, ImageOps
from veil.audit import AuditLog
from veil.audit.files import Layout, Rotation, follow
from veil.audit.phash import perceptual_hash
from veil.audit.query import Filters, QueryError, parse_when, query
from veil.cli import main

from tests.conftest import corpus_file
from tests.test_audit import decision

UPLOADED = "es_nikon_p6000_gps_DSCN0010.jpg"
NEVER_UPLOADED = "es_canon_ixus_owner.jpg"


def image_entry(data: bytes, kinds: tuple[str, ...] = ("gps",), faces: int = 0) -> dict:
    return {
        "format": "jpeg",
        "width": 640,
        "height": 480,
        "bytes_in": len(data),
        "bytes_out": len(data) - 100,
        "sha256_in": hashlib.sha256(data).hexdigest(),
        "sha256_out": hashlib.sha256(data[:-100]).hexdigest(),
        "phash": perceptual_hash(data),
        "findings": [{"kind": k, "summary": k} for k in kinds],
        "faces": [[1, 2, 3, 4, 0.9]] * faces,
    }


@pytest.fixture
def trail(tmp_path):
    photo = corpus_file(UPLOADED).read_bytes()
    other = corpus_file("es_nikon_d70s_gps_serial.jpg").read_bytes()
    base = datetime(2025, 3, 1, 9, tzinfo=UTC)
    rows = [
        ("alice", "chatgpt", "transformed", "strip-everywhere", [image_entry(photo)]),
        ("bob", "gemini", "blocked", "no-location", [image_entry(other, ("gps", "serial"))]),
        ("alice", "claude", "allowed", "allow-claude", [image_entry(other, (), faces=2)]),
        ("carol", "chatgpt", "warned", "faces-warn", [image_entry(photo, ("faces",), faces=1)]),
    ]
    log = AuditLog(tmp_path)
    log.open()
    for n, (user, service, verdict, rule, images) in enumerate(rows):
        ts = (base + timedelta(days=n)).isoformat()
        log.write(
            decision(
                n, ts=ts, user=user, service=service, verdict=verdict, rule=rule, images=images
            )
        )
    log.write({"event": "policy_reload_failed", "verdict": "error", "message": "line 7: bad"})
    log.close()
    return tmp_path


def users(records: list[dict]) -> list[str]:
    return [r.get("user") or r.get("event") for r in records]


def test_filters_combine(trail):
    assert users(query(trail, Filters(users=["alice"]))) == ["alice", "alice"]
    assert users(query(trail, Filters(services=["chatgpt"], users=["carol"]))) == ["carol"]
    assert users(query(trail, Filters(verdicts=["blocked", "warned"]))) == ["bob", "carol"]
    assert users(query(trail, Filters(rules=["no-location"]))) == ["bob"]
    assert users(query(trail, Filters(findings=["serial"]))) == ["bob"]
    assert users(query(trail, Filters(findings=["faces"]))) == ["alice", "carol"]
    march_2 = datetime(2025, 3, 2, tzinfo=UTC)
    window = Filters(since=march_2, until=march_2 + timedelta(days=2), events=False)
    assert users(query(trail, window)) == ["bob", "alice"]
    assert users(query(trail, Filters(limit=2))) == ["carol", "policy_reload_failed"]
    assert users(query(trail, Filters(events=False, limit=1))) == ["carol"]


def test_times_people_type_are_understood():
    now = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("today", now) == datetime(2025, 3, 10, tzinfo=UTC)
    assert parse_when("2025-03-01", now) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-01T14:00+01:00", now) == datetime(2025, 3, 1, 13, tzinfo=UTC)
    with pytest.raises(QueryError, match="2025-03-01"):
        parse_when("last tuesday", now)


def test_query_cli_prints_lines_or_json(trail, capsys):
    assert main(["audit", "query", "--audit", str(trail), "--verdict", "blocked"]) == 0
    out = capsys.readouterr()
    (line,) = out.out.splitlines()
    assert "BLOCKED" in line and "gemini" in line and "bob" in line and "gps serial" in line
    assert "1 record(s)" in out.err
    assert main(["audit", "query", "--audit", str(trail), "--finding", "faces", "--json"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert users(records) == ["alice", "carol"]
    assert main(["audit", "query", "--audit", str(trail), "--finding", "gpss"]) == 2
    assert "one of:" in capsys.readouterr().err


def test_tail_shows_decisions_and_events(trail, capsys):
    assert main(["audit", "tail", "--audit", str(trail), "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "WARNED" in lines[0] and "carol" in lines[0]
    assert "EVENT" in lines[1] and "policy_reload_failed: line 7: bad" in lines[1]


def test_follow_sees_new_records_across_rotation(tmp_path):
    log = AuditLog(tmp_path, rotation=Rotation(max_bytes=500))  # one record per file
    log.open()
    log.write(decision(1, user="old"))
    seen: list[dict] = []

    def reader() -> None:
        for record in follow(Layout(tmp_path), interval=0.02):
            seen.append(record)
            if len(seen) == 6:
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(0.2)
    for n in range(5):
        log.write(decision(n, user=f"new{n}"))
    log.write({"event": "policy_reloaded", "message": "ok"})
    thread.join(5)
    log.close()
    assert len(Layout(tmp_path).rotated()) >= 5
    assert [r.get("user") or r.get("event") for r in seen] == [
        "new0", "new1", "new2", "new3", "new4", "policy_reloaded",
    ]  # fmt: skip


def test_find_recognises_the_file_and_its_copies(trail, tmp_path, capsys):
    data = corpus_file(UPLOADED).read_bytes()
    copy = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    copy = copy.resize((copy.width * 3 // 5, copy.height * 3 // 5))
    resized = tmp_path / "resized.jpg"
    copy.save(resized, "JPEG", quality=55)
    original = corpus_file(UPLOADED)
    assert main(["audit", "find", str(original), "--audit", str(trail)]) == 0
    out = capsys.readouterr().out
    assert out.count("same file") == 2 and "alice" in out and "carol" in out
    assert main(["audit", "find", str(resized), "--audit", str(trail), "--json"]) == 0
    matches = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [m["how"] for m in matches] == ["similar", "similar"]
    assert [m["record"]["user"] for m in matches] == ["alice", "carol"]
    assert all(m["distance"] <= 10 for m in matches)
    never = corpus_file(NEVER_UPLOADED)
    assert main(["audit", "find", str(never), "--audit", str(trail)]) == 1
    assert "not found" in capsys.readouterr().out


def test_show_prints_one_decision(trail, capsys):
    record = query(trail, Filters(users=["bob"]))[0]
    assert main(["audit", "show", record["decision_id"][:10], "--audit", str(trail)]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert main(["audit", "show", "ffffffff", "--audit", str(trail)]) == 2
    assert "veil audit query" in capsys.readouterr().err
