"""`veil audit verify`: every kind of tampering, in either store, fails with exit 1 and names
the first record affected; an intact trail passes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from veil.audit import AuditLog
from veil.audit.record import chain_hash
from veil.cli import main

from tests.test_audit import decision


@pytest.fixture
def trail(tmp_path) -> Path:
    log = AuditLog(tmp_path)
    log.open()
    for n in range(5):
        log.write(decision(n, verdict=("allowed", "blocked")[n % 2]))
    log.write({"event": "policy_reload_failed", "verdict": "error", "message": "bad rule"})
    log.close()
    return tmp_path


def run_verify(directory: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--audit", str(directory), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def lines(directory: Path) -> list[dict]:
    return [json.loads(x) for x in (directory / "audit.jsonl").read_text().splitlines()]


def write_lines(directory: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    (directory / "audit.jsonl").write_text(text)


def tamper_database(directory: Path, *statements: str) -> None:
    db = sqlite3.connect(directory / "audit.sqlite3")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def test_an_intact_trail_passes(trail, capsys):
    code, out = run_verify(trail, capsys)
    assert code == 0, out
    assert "OK" in out
    assert "6 record(s)" in out


def test_a_field_altered_in_the_file_is_named(trail, capsys):
    records = lines(trail)
    assert records[2]["verdict"] == "allowed"
    records[2]["verdict"] = "blocked"
    write_lines(trail, records)
    code, out = run_verify(trail, capsys)
    assert code == 1
    first = out.splitlines()[1]
    assert f"record #3 (decision {records[2]['decision_id']}" in first
    assert "audit.jsonl line 3 was altered" in first
    assert "field verdict is" in out  # and the comparison with the database says which field


def test_a_record_altered_in_the_database_is_named(trail, capsys):
    decision_id = lines(trail)[3]["decision_id"]
    tamper_database(
        trail,
        "UPDATE records SET record = json_set(record, '$.user', 'mallory') WHERE seq = 4",
    )
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert f"record #4 (decision {decision_id}" in out
    assert "audit.sqlite3 seq 4 was altered" in out
    assert "field user is 'alice' in the file, 'mallory' in the database" in out


def test_a_column_altered_in_the_database_is_named(trail, capsys):
    decision_id = lines(trail)[1]["decision_id"]
    tamper_database(
        trail,
        "UPDATE records SET verdict = 'allowed' WHERE seq = 2",  # what queries read
    )
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert f"decision {decision_id}" in out
    assert "column verdict is 'allowed' but the record says 'blocked'" in out


def test_an_image_row_altered_in_the_database_is_named(trail, capsys):
    tamper_database(
        trail,
        "UPDATE images SET sha256_in = 'ff' WHERE seq = 5",  # what `find` reads
    )
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert "record #5" in out and "images table" in out


def test_a_removed_line_is_named(trail, capsys):
    records = lines(trail)
    del records[1]
    write_lines(trail, records)
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert "record #2 was removed" in out
    assert f"record #2 (decision {lines(trail)[0]['decision_id']}" not in out
    assert "was removed from audit.sqlite3" not in out


def test_a_removed_database_row_is_named(trail, capsys):
    decision_id = lines(trail)[2]["decision_id"]
    tamper_database(
        trail,
        "DELETE FROM images WHERE seq = 3",
        "DELETE FROM records WHERE seq = 3",
    )
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert f"record #3 (decision {decision_id}" in out
    assert "removed from audit.sqlite3" in out


def test_reordered_lines_are_named(trail, capsys):
    records = lines(trail)
    records[1], records[2] = records[2], records[1]
    write_lines(trail, records)
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert "record #3" in out.splitlines()[1] and "out of order" in out.splitlines()[1]


def test_an_altered_record_with_a_recomputed_hash_is_named(trail, capsys):
    records = lines(trail)
    target = records[1]
    target["user"] = "mallory"
    target["hash"] = chain_hash(target["prev_hash"], target)  # consistent on its own
    write_lines(trail, records)
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert f"record #2 (decision {target['decision_id']}" in out.splitlines()[1]
    assert "altered and its hash recomputed" in out


def test_a_whole_chain_recomputed_in_the_file_disagrees_with_the_database(trail, capsys):
    records = lines(trail)
    records[3]["verdict"] = "allowed"
    prev = records[3]["prev_hash"]
    for record in records[3:]:
        record["prev_hash"] = prev
        record["hash"] = prev = chain_hash(prev, record)
    write_lines(trail, records)
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert f"record #4 (decision {records[3]['decision_id']}" in out
    assert "field verdict is 'allowed' in the file, 'blocked' in the database" in out


def test_a_line_that_is_not_json_is_reported(trail, capsys):
    text = (trail / "audit.jsonl").read_text().splitlines()
    text[2] = text[2][:-10]
    (trail / "audit.jsonl").write_text("\n".join(text) + "\n")
    code, out = run_verify(trail, capsys)
    assert code == 1
    assert "audit.jsonl line 3 is not a record" in out


def test_a_missing_directory_says_what_to_type(tmp_path, capsys):
    code, out = run_verify(tmp_path / "nowhere", capsys)
    assert code == 2
    assert "--audit DIR" in out


def test_a_sealed_trail_needs_its_key(tmp_path, capsys):
    key_file = tmp_path / "seal.key"
    assert main(["audit", "keygen", "seal", str(key_file)]) == 0
    log = AuditLog.from_options(tmp_path / "audit", seal_key_file=str(key_file))
    log.open()
    log.write(decision(1))
    log.close()
    capsys.readouterr()
    code, out = run_verify(tmp_path / "audit", capsys)
    assert code == 2
    assert "--seal-key" in out
    code, out = run_verify(tmp_path / "audit", capsys, "--seal-key", str(key_file))
    assert code == 0, out
