"""The audit trail through the real proxy: one record per decision, verifiable and
tamper-evident in both stores, searchable by image, quarantined when blocked; an audit that
cannot be written stops uploads; a restart continues the same chain across rotated files."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from veil.audit.phash import perceptual_hash

from tests.conftest import corpus_file

from .conftest import IMAGE_FIELDS, RECORD_FIELDS, VEIL, wait_for

pytestmark = pytest.mark.e2e

PHOTO = "es_nikon_p6000_gps_DSCN0010.jpg"
POLICY = """
version: 1
settings:
  on_error: block
rules:
  - name: allow-deepseek
    match: {services: [deepseek]}
    action: allow
  - name: warn-grok
    match: {services: [grok]}
    action: [strip, warn]
    message: Photos sent to Grok are checked.
  - name: block-openai-api
    match: {services: [openai-api]}
    action: block
    message: Photos may not be sent to the OpenAI API.
  - name: strip-everywhere
    action: strip
"""
# Where each verdict comes from: (url, expected status, expected verdict, rule).
UPLOADS = [
    ("https://chat.deepseek.com/api/v0/file/upload_file", 200, "allowed", "allow-deepseek"),
    ("https://chatgpt.com/backend-api/files", 200, "transformed", "strip-everywhere"),
    ("https://grok.com/http/upload-file-v2/direct", 200, "warned", "warn-grok"),
    ("https://api.openai.com/v1/files", 403, "blocked", "block-openai-api"),
]


def veil(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VEIL), *args], capture_output=True, text=True, timeout=120)


def upload(proxy, url: str, data: bytes):
    with proxy.client() as client:
        return client.post(url, files={"file": ("photo.jpg", data, "image/jpeg")})


def resized_copy(data: bytes, path: Path) -> Path:
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    image.resize((image.width // 2, image.height // 2)).save(path, "JPEG", quality=60)
    return path


def test_each_decision_leaves_one_record_that_verify_checks(start_proxy, upstream, tmp_path):
    keys = tmp_path / "quarantine.key"
    assert veil("audit", "keygen", "quarantine", str(keys)).returncode == 0
    proxy = start_proxy(POLICY, args=["--quarantine-key", f"{keys}.pub"])
    photo = corpus_file(PHOTO).read_bytes()
    answers = {}
    for url, status, verdict, rule in UPLOADS:
        before = len(proxy.records())
        response = upload(proxy, url, photo)
        assert response.status_code == status, (verdict, response.text)
        records = proxy.records()
        assert len(records) == before + 1, f"{verdict}: one record per decision"
        record = records[-1]
        assert record.keys() >= RECORD_FIELDS
        assert (record["verdict"], record["rule"]) == (verdict, rule)
        (image,) = record["images"]
        assert image.keys() >= IMAGE_FIELDS
        assert image["format"] == "jpeg" and (image["width"], image["height"]) == (640, 480)
        assert image["bytes_in"] == len(photo)
        assert image["phash"] == perceptual_hash(photo)  # hashed alongside, the same hash
        assert "gps" in {f["kind"] for f in image["findings"]}
        answers[verdict] = (response, record)
    assert (
        answers["transformed"][1]["images"][0]["sha256_out"]
        != answers["allowed"][1]["images"][0]["sha256_out"]
    )
    assert answers["warned"][0].headers["veil-notice"] == "Photos sent to Grok are checked."
    blocked = answers["blocked"]
    assert blocked[0].json()["error"]["decision_id"] == blocked[1]["decision_id"]

    response = upload(proxy, "https://chatgpt.com/backend-api/files", photo[: len(photo) // 2])
    assert response.status_code == 403
    error = proxy.last_record()
    assert (error["verdict"], error["rule"]) == ("error", "on_error")
    assert error.keys() >= RECORD_FIELDS - {"images"} | {"error"}
    assert len(proxy.records()) == 5
    assert [r["seq"] for r in proxy.records()] == [1, 2, 3, 4, 5]

    # Nothing secret in either store: no image bytes, no bodies, no credentials.
    stores = ("audit.jsonl", "audit.sqlite3", "audit.sqlite3-wal")
    everything = b"".join(
        (proxy.audit_dir / name).read_bytes()
        for name in stores
        if (proxy.audit_dir / name).exists()
    )
    # (Findings are summaries, e.g. the camera's make, never the metadata blocks themselves.)
    middle = len(photo) // 2
    assert photo[2000:2064] not in everything and photo[middle : middle + 64] not in everything

    result = veil("audit", "verify", "--audit", str(proxy.audit_dir))  # while it runs
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.stop() == 0
    assert veil("audit", "verify", "--audit", str(proxy.audit_dir)).returncode == 0

    # One field of one record altered, in the file or in the database: verify names it.
    target = blocked[1]
    altered_file = _tampered_copy(proxy.audit_dir, tmp_path / "t1", _alter_line(target))
    result = veil("audit", "verify", "--audit", str(altered_file))
    assert result.returncode == 1
    assert f"record #{target['seq']} (decision {target['decision_id']}" in result.stdout
    assert "field verdict is 'allowed' in the file, 'blocked' in the database" in result.stdout
    altered_db = _tampered_copy(proxy.audit_dir, tmp_path / "t2", _alter_row(target))
    result = veil("audit", "verify", "--audit", str(altered_db))
    assert result.returncode == 1
    assert f"record #{target['seq']} (decision {target['decision_id']}" in result.stdout
    assert "audit.sqlite3 seq 4 was altered" in result.stdout

    # The blocked photo, found again from a resized and re-encoded copy, and extracted.
    copy = resized_copy(photo, tmp_path / "copy.jpg")
    found = veil("audit", "find", str(copy), "--audit", str(proxy.audit_dir), "--json")
    assert found.returncode == 0, found.stderr
    matches = [json.loads(line) for line in found.stdout.splitlines()]
    assert {m["record"]["verdict"] for m in matches} == {
        "allowed",
        "transformed",
        "warned",
        "blocked",
    }
    assert all(m["how"] == "similar" for m in matches)
    out = tmp_path / "extracted"
    shown = veil(
        "audit", "show", target["decision_id"], "--audit", str(proxy.audit_dir),
        "--extract", "--key", str(keys), "--out", str(out),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert [p.read_bytes() for p in out.iterdir()] == [photo]

    lines = veil("audit", "tail", "--audit", str(proxy.audit_dir)).stdout.splitlines()
    assert [line.split()[2] for line in lines] == [
        "ALLOWED", "TRANSFORMED", "WARNED", "BLOCKED", "ERROR",
    ]  # fmt: skip
    query = veil("audit", "query", "--audit", str(proxy.audit_dir), "--service", "grok", "--json")
    assert [json.loads(x)["verdict"] for x in query.stdout.splitlines()] == ["warned"]


def _tampered_copy(source: Path, target: Path, alter: Callable[[Path], None]) -> Path:
    shutil.copytree(source, target)
    alter(target)
    return target


def _alter_line(record: dict) -> Callable[[Path], None]:
    def alter(directory: Path) -> None:
        path = directory / "audit.jsonl"
        lines = path.read_text().splitlines()
        mine = json.loads(lines[record["seq"] - 1])
        mine["verdict"] = "allowed"
        lines[record["seq"] - 1] = json.dumps(mine, separators=(",", ":"))
        path.write_text("\n".join(lines) + "\n")

    return alter


def _alter_row(record: dict) -> Callable[[Path], None]:
    def alter(directory: Path) -> None:
        db = sqlite3.connect(directory / "audit.sqlite3")
        db.execute(
            "UPDATE records SET record = json_set(record, '$.rule', 'strip-everywhere')"
            " WHERE seq = ?",
            (record["seq"],),
        )
        db.commit()
        db.close()

    return alter


def make_unwritable(path: Path) -> Callable[[], None]:
    """Make the audit file (and its directory) unwritable for this user, root included; return
    how to undo it. Root ignores permissions, so root gets the immutable attribute, or, where
    the file system has none, a directory in the file's place."""
    directory = path.parent
    if os.geteuid() != 0:
        path.chmod(0o444)
        directory.chmod(0o555)

        def undo() -> None:
            directory.chmod(0o755)
            path.chmod(0o644)

        return undo
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        subprocess.run([chattr, "+i", str(directory)], check=True)

        def undo() -> None:
            subprocess.run([chattr, "-i", str(directory), str(path)], check=True)

        return undo
    aside = path.with_name("audit.jsonl.aside")
    path.rename(aside)
    path.mkdir()

    def undo() -> None:
        path.rmdir()
        aside.rename(path)

    return undo


def test_an_unwritable_trail_refuses_uploads_and_a_restart_continues_it(
    start_proxy, upstream, tmp_path
):
    audit = tmp_path / "trail"
    proxy = start_proxy(audit_dir=audit)
    photo = corpus_file(PHOTO).read_bytes()
    assert upload(proxy, "https://chatgpt.com/backend-api/files", photo).status_code == 200
    upstream.clear()
    jsonl = audit / "audit.jsonl"
    before = jsonl.read_bytes()

    undo = make_unwritable(jsonl)
    try:
        with pytest.raises(OSError):  # the test is real: this user cannot write there now
            os.close(os.open(jsonl, os.O_WRONLY | os.O_APPEND))
        response = upload(proxy, "https://chatgpt.com/backend-api/files", photo)
    finally:
        undo()
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "audit_unavailable"
    assert upstream.received == []  # not released unrecorded
    assert jsonl.read_bytes() == before
    assert wait_for(lambda: "AUDIT WRITE FAILED" in proxy.log())

    # Writable again: uploads pass, and the chain has no gap.
    assert upload(proxy, "https://chatgpt.com/backend-api/files", photo).status_code == 200
    assert [r["seq"] for r in proxy.records()] == [1, 2]
    assert proxy.stop() == 0

    # A restart, now sealed and rotating small files, continues the same chain.
    seal = tmp_path / "seal.key"
    assert veil("audit", "keygen", "seal", str(seal)).returncode == 0
    proxy = start_proxy(
        audit_dir=audit, args=["--audit-rotate", "1KB", "--audit-seal-key", str(seal)]
    )
    for _ in range(3):
        assert upload(proxy, "https://chatgpt.com/backend-api/files", photo).status_code == 200
    assert proxy.stop() == 0
    files = [*sorted(audit.glob("audit.0*.jsonl")), jsonl]
    assert len(files) >= 3
    records = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[2]["prev_hash"] == records[1]["hash"]
    assert [bool(r.get("seal")) for r in records] == [False, False, True, True, True]
    result = veil("audit", "verify", "--audit", str(audit), "--seal-key", str(seal))
    assert result.returncode == 0, result.stdout
    assert f"5 record(s) in {len(files)} file(s)" in result.stdout
    assert veil("audit", "verify", "--audit", str(audit)).returncode == 2  # key not given
