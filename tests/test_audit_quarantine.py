"""Quarantine: blocked images kept encrypted to the operator's public key; only the private key
gets them back, unaltered, and only for the decision they belong to."""

from __future__ import annotations

import pytest
from veil.audit import AuditLog
from veil.audit.quarantine import (
    QuarantineError,
    decrypt,
    encrypt,
    extract,
    generate_keypair,
    load_private_key,
    load_public_key,
)
from veil.cli import main

from tests.conftest import corpus_file
from tests.test_audit import decision

PHOTO = "es_nikon_p6000_gps_DSCN0010.jpg"


@pytest.fixture
def keys(tmp_path, capsys):
    out = tmp_path / "keys" / "quarantine.key"
    out.parent.mkdir()
    assert main(["audit", "keygen", "quarantine", str(out)]) == 0
    capsys.readouterr()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    return out, out.with_name("quarantine.key.pub")


def blocked_upload(directory, public_key_file, data: bytes) -> dict:
    log = AuditLog.from_options(directory, quarantine_key_file=str(public_key_file))
    log.open()
    record = decision(1, verdict="blocked", rule="no-location", actions=["block"])
    record.update(log.quarantine(record.setdefault("decision_id", "ab" * 16), [data]))
    written = log.write(record)
    log.close()
    return written


def test_a_blocked_image_is_stored_encrypted_and_extracted_intact(tmp_path, keys, capsys):
    private, public = keys
    photo = corpus_file(PHOTO).read_bytes()
    record = blocked_upload(tmp_path / "audit", public, photo)
    (entry,) = record["quarantine"]
    stored = (tmp_path / "audit" / "quarantine" / entry["file"]).read_bytes()
    assert photo[:4096] not in stored and b"NIKON" not in stored  # encrypted at rest
    out = tmp_path / "out"
    args = ["audit", "show", record["decision_id"], "--audit", str(tmp_path / "audit")]
    assert main([*args, "--extract", "--key", str(private), "--out", str(out)]) == 0
    (extracted,) = out.iterdir()
    assert extracted.suffix == ".jpg"
    assert extracted.read_bytes() == photo
    assert "sha256 matches" in capsys.readouterr().out


def test_extract_needs_the_right_private_key(tmp_path, keys, capsys):
    _, public = keys
    record = blocked_upload(tmp_path / "audit", public, b"\xff\xd8\xff image")
    wrong = tmp_path / "other.key"
    assert main(["audit", "keygen", "quarantine", str(wrong)]) == 0
    capsys.readouterr()
    args = ["audit", "show", record["decision_id"], "--audit", str(tmp_path / "audit")]
    assert main([*args, "--extract"]) == 2
    assert "--key FILE" in capsys.readouterr().err
    assert main([*args, "--extract", "--key", str(wrong), "--out", str(tmp_path / "o")]) == 2
    assert "wrong key" in capsys.readouterr().err
    assert main([*args, "--extract", "--key", str(wrong.with_name("other.key.pub"))]) == 2
    assert "private key" in capsys.readouterr().err


def test_files_are_bound_to_their_decision_and_cannot_be_altered(keys):
    private_file, public_file = keys
    private, public = load_private_key(private_file), load_public_key(public_file)
    blob = encrypt(public, b"image bytes", b"decision-a:0")
    assert decrypt(private, blob, b"decision-a:0") == b"image bytes"
    with pytest.raises(QuarantineError):
        decrypt(private, blob, b"decision-b:0")  # moved to another decision
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(QuarantineError):
        decrypt(private, tampered, b"decision-a:0")


def test_extract_checks_the_record_hash(tmp_path, keys):
    private, public = keys
    record = blocked_upload(tmp_path, public, b"\xff\xd8\xff image")
    record["quarantine"][0]["sha256"] = "0" * 64
    with pytest.raises(QuarantineError, match="sha256"):
        extract(tmp_path / "quarantine", record, load_private_key(private))


def test_quarantine_is_off_by_default(tmp_path):
    log = AuditLog(tmp_path)
    log.open()
    assert log.quarantine("ab" * 16, [b"image"]) == {}
    log.close()
    assert not (tmp_path / "quarantine").exists()


def test_keys_are_never_overwritten(tmp_path, capsys):
    key = tmp_path / "seal.key"
    assert main(["audit", "keygen", "seal", str(key)]) == 0
    first = key.read_bytes()
    assert len(first.strip()) == 64
    assert main(["audit", "keygen", "seal", str(key)]) == 1
    assert "never overwritten" in capsys.readouterr().err
    assert key.read_bytes() == first
    private, public = generate_keypair()
    assert b"PRIVATE KEY" in private and b"PUBLIC KEY" in public
