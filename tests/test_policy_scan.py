"""`veil scan --policy P --service S --user U` explains the decision offline."""

from __future__ import annotations

import json
import textwrap

import pytest
from veil.cli import main

from tests.conftest import corpus_file

POLICY = textwrap.dedent(
    """\
    version: 1
    groups: {interns: [alice]}
    rules:
      - name: interns-no-gps
        match: {groups: [interns], has: [gps]}
        action: block
        message: Interns may not upload photos with a location.
      - name: png-to-claude
        match: {services: [claude], formats: [png]}
        action: warn
      - name: anthropic
        match: {services: [anthropic]}
        action: [strip, warn]
        message: Metadata was removed.
    """
)


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return str(path)


@pytest.fixture
def photo() -> str:
    return str(corpus_file("es_nikon_p6000_gps_DSCN0010.jpg"))


def scan(capsys, *args: str) -> str:
    assert main(["scan", *args]) == 0
    return capsys.readouterr().out


def test_the_matching_rule_and_why(capsys, policy, photo):
    out = scan(capsys, photo, "--policy", policy, "--service", "claude", "--user", "alice")
    assert "rule: interns-no-gps (line 4) -> block" in out
    assert "because groups: user alice is in group [interns]" in out
    assert "because has: found [gps]" in out
    assert "would block the upload: Interns may not upload photos with a location." in out


def test_skipped_rules_say_which_condition_failed_and_what_would_be_removed(capsys, policy, photo):
    out = scan(capsys, photo, "--policy", policy, "--service", "claude", "--user", "bob")
    assert "skipped interns-no-gps (line 4): user bob is in none of the groups [interns]" in out
    assert "skipped png-to-claude (line 8): jpeg is not in [png]" in out
    assert "rule: anthropic (line 11) -> strip, warn" in out
    assert "because services: claude (vendor anthropic) is in [anthropic]" in out
    assert "would remove: " in out and "gps" in out.split("would remove: ")[1].split("\n")[0]
    assert "would tell the user (Veil-Notice): Metadata was removed." in out


def test_unauthenticated_and_the_built_in_default_as_json(capsys, policy, photo):
    out = scan(capsys, photo, "--policy", policy, "--service", "gemini", "--json")
    (result,) = json.loads(out)
    explanation = result["explanation"]
    assert explanation["rule"] == "built-in default"
    assert explanation["line"] is None
    assert explanation["skipped"][0] == {
        "rule": "interns-no-gps",
        "line": 4,
        "failed": ["groups: the upload is not authenticated (no proxy-auth user)"],
    }
    assert "gps" in explanation["removed"]
    assert explanation["refused"] is False
