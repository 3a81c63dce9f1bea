"""`veil scan`: the inventory as a table with what stripping removes, JSON, cleaned files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from veil.formats import StripOptions, open_image

from tests.conftest import corpus_file

VEIL = Path(sys.executable).with_name("veil")


def scan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VEIL), "scan", *args], capture_output=True, text=True, timeout=120)


def test_table_shows_each_finding_as_kept_or_removed(tmp_path):
    photo = corpus_file("dn_canon_7d_serial_owner_iptc_adobergb.jpg")
    result = scan(str(photo), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("by-line 'Peter Bemmann' (IPTC)" in line and "removed" in line for line in lines)
    assert any("Adobe RGB (1998)" in line and "kept" in line for line in lines)
    assert any(line.strip().startswith("removes (losslessly): APP1 EXIF") for line in lines)
    written = (tmp_path / photo.name).read_bytes()
    assert written == open_image(photo.read_bytes()).strip(StripOptions()).data


def test_json_lists_findings_removals_and_what_remains():
    photo = corpus_file("es_orientation6_rot90.jpg")
    result = scan(str(photo), "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert {f["kind"] for f in entry["findings"]} == {"exif", "icc_profile"}
    assert entry["removed"] == ["APP1 EXIF"]
    assert "EXIF block holding only the orientation (6)" in entry["remaining"]


def test_a_broken_file_is_reported_not_crashed(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(corpus_file("es_canon_ixus_owner.jpg").read_bytes()[:5000])
    result = scan(str(broken))
    assert result.returncode == 1
    assert "cannot be inspected" in result.stdout
