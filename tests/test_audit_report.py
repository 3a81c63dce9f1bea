"""`veil audit report`: one self-contained page whose charts render in a real browser."""

from __future__ import annotations

import json
import random
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from veil.audit import AuditLog
from veil.audit.report import COLOURS, HEADLINE_FINDINGS
from veil.cli import main

from tests.conftest import require_tool

SERVICES = ["chatgpt"] * 5 + ["claude"] * 3 + ["gemini"] * 3 + ["copilot", "openai-api"]
USERS = ["alice", "bob", "carol", "dave", "erin", None]


def busy_fortnight(directory: Path, uploads: int = 300) -> None:
    """Two weeks of varied decisions, as a mid-sized team would leave them."""
    rng = random.Random(7)
    start = datetime(2025, 3, 1, 8, tzinfo=UTC)
    log = AuditLog(directory)
    log.open()
    stamps = sorted(start + timedelta(minutes=rng.randint(0, 14 * 24 * 60)) for _ in range(uploads))
    for ts in stamps:
        service, user = rng.choice(SERVICES), rng.choice(USERS)
        kinds = [
            k for k, p in (("gps", 0.35), ("serial", 0.2), ("device", 0.6)) if rng.random() < p
        ]
        faces = [[10, 10, 50, 50, 0.9]] * rng.choice([0, 0, 0, 1, 2])
        if "gps" in kinds and service == "gemini":
            verdict, rule = "blocked", "no-location-to-gemini"
        elif faces and rng.random() < 0.4:
            verdict, rule = "warned", "faces-warn"
        elif rng.random() < 0.04:
            verdict, rule = "error", "on_error"
        elif rng.random() < 0.03:
            verdict, rule = "coached", "coach-interns"
        else:
            verdict, rule = ("transformed" if kinds else "allowed"), "strip-everywhere"
        log.write(
            {
                "ts": ts.isoformat(),
                "client": f"10.0.0.{rng.randint(2, 9)}",
                "user": user,
                "service": service,
                "host": f"{service}.example",
                "method": "POST",
                "path": "/upload",
                "rule": rule,
                "actions": ["strip"],
                "verdict": verdict,
                "message": "Photos with a location may not go to Gemini."
                if verdict == "blocked"
                else None,
                "images": [
                    {
                        "format": "jpeg",
                        "width": 4032,
                        "height": 3024,
                        "sha256_in": f"{rng.getrandbits(256):064x}",
                        "findings": [{"kind": k, "summary": k} for k in kinds],
                        "faces": faces,
                    }
                ],
                "duration_ms": 20.0,
            }
        )
    log.write({"event": "policy_reload_failed", "verdict": "error", "message": "line 7: <bad>"})
    log.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    busy_fortnight(directory / "audit")
    out = directory / "report.html"
    assert main(["audit", "report", "--audit", str(directory / "audit"), "--html", str(out)]) == 0
    return out


def test_the_page_is_self_contained(report):
    html = report.read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", html)
    # The only URL is SVG's XML namespace, which names and loads nothing.
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in html
    assert "&lt;bad&gt;" in html  # text from the trail is escaped


def test_the_page_holds_every_section(report):
    html = report.read_text()
    for title in (
        "Uploads over time",
        "Verdicts",
        "What the photos carried",
        "By service",
        "By rule",
        "By user",
        "Latest blocked uploads",
        "System events",
    ):
        assert f"<h2>{title}</h2>" in html
    assert html.count("<svg") >= 7
    assert "Hash chain verified in both stores" in html
    assert "Photos with a location may not go to Gemini." in html


def test_the_charts_render_in_chromium(report, tmp_path):
    chromium = require_tool("chromium")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1200,1900",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.is_file(), result.stderr.decode(errors="replace")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1900)
    counts = colour_counts(image)
    # Every verdict colour and the headline findings' colours are drawn, in real areas.
    for name, colour in {**COLOURS, "faces": HEADLINE_FINDINGS["faces"][1]}.items():
        assert counts[colour] > 150, f"{name} ({colour}): {counts[colour]} pixels"
    assert counts[COLOURS["transformed"]] > 20_000  # the dominant series fills its bars


def colour_counts(image: Image.Image) -> dict[str, int]:
    wanted = {c for c in COLOURS.values()} | {HEADLINE_FINDINGS["faces"][1]}
    targets = {c: tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in wanted}
    counts = dict.fromkeys(wanted, 0)
    for count, pixel in image.getcolors(maxcolors=1 << 20) or ():
        for name, rgb in targets.items():
            if all(abs(a - b) <= 6 for a, b in zip(pixel, rgb, strict=True)):
                counts[name] += count
    return counts


def test_an_empty_trail_gives_a_page_too(tmp_path):
    log = AuditLog(tmp_path / "audit")
    log.open()
    log.close()
    out = tmp_path / "empty.html"
    assert main(["audit", "report", "--audit", str(tmp_path / "audit"), "--html", str(out)]) == 0
    assert "No upload decisions in this period." in out.read_text()


def test_a_time_window_limits_the_report(tmp_path, capsys):
    busy_fortnight(tmp_path / "audit", uploads=60)
    out = tmp_path / "window.html"
    args = ["audit", "report", "--audit", str(tmp_path / "audit"), "--html", str(out)]
    assert main([*args, "--since", "2025-03-05", "--until", "2025-03-06"]) == 0
    assert re.search(r"wrote .*: \d+ decisions", capsys.readouterr().out)
    html = out.read_text()
    assert "2025-03-05" in html and "2025-03-08" not in html


def test_the_page_says_when_the_trail_was_tampered_with(tmp_path):
    busy_fortnight(tmp_path / "audit", uploads=5)
    path = tmp_path / "audit" / "audit.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["user"] = "eve"
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.html"
    assert main(["audit", "report", "--audit", str(tmp_path / "audit"), "--html", str(out)]) == 0
    html = out.read_text()
    assert 'class="badge bad"' in html and "Integrity check FAILED" in html


def test_a_sealed_trail_is_checked_with_its_key(tmp_path):
    key = tmp_path / "seal.key"
    assert main(["audit", "keygen", "seal", str(key)]) == 0
    log = AuditLog.from_options(tmp_path / "audit", seal_key_file=str(key))
    log.open()
    log.write({"verdict": "allowed", "service": "chatgpt", "images": []})
    log.close()
    out = tmp_path / "r.html"
    args = ["audit", "report", "--audit", str(tmp_path / "audit"), "--html", str(out)]
    assert main(args) == 0
    assert "need the seal key" in out.read_text()
    assert main([*args, "--seal-key", str(key)]) == 0
    assert "Hash chain verified in both stores" in out.read_text()
