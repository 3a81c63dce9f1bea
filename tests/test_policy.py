"""The policy file: strict validation with locations (every error kind), and what valid files
mean."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest
from veil.cli import main
from veil.policy import PolicyError, Settings, load_policy, parse_duration, parse_policy, parse_size

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str) -> list[str]:
    try:
        parse_policy(textwrap.dedent(text), "policy.yaml")
    except PolicyError as exc:
        return exc.problems
    return []


def rules(body: str) -> str:
    """A policy whose rules are `body` (indented as under `rules:`)."""
    return "version: 1\ngroups: {interns: [alice, bob]}\nrules:\n" + textwrap.dedent(body)


# (what, policy text, "line:column", the bad value as printed, words of the message)
ERROR_CASES = [
    ("empty file", "", "1:1", None, "empty"),
    ("yaml syntax", "version: 1\nrules: [\n", "3:1", None, "not valid YAML"),
    (
        "unquoted comparison",
        rules("- name: a\n  match:\n    faces: >=1\n  action: warn\n"),
        "6:13",
        None,
        'quoted comparison, e.g. faces: ">=1"',
    ),
    ("top level not a mapping", "- strip\n", "1:1", "[strip]", "the policy must be a mapping"),
    ("unknown top-level key", "version: 1\nrulez: []\n", "2:1", "'rulez'", "rules? (one of"),
    ("missing version", "rules: []\n", "1:1", "none", "no version"),
    ("unsupported version", "version: 2\n", "1:10", "2", "unsupported policy version"),
    ("duplicate key", "version: 1\nversion: 1\n", "2:1", "'version'", "given twice"),
    (
        "settings not a mapping",
        "version: 1\nsettings: strict\n",
        "2:11",
        "'strict'",
        "settings must be a mapping",
    ),
    (
        "unknown setting",
        "version: 1\nsettings: {max_uplaod: 1MiB}\n",
        "2:12",
        "'max_uplaod'",
        "max_upload? (one of",
    ),
    (
        "bad on_error",
        "version: 1\nsettings: {on_error: ignore}\n",
        "2:22",
        "'ignore'",
        "one of block, allow",
    ),
    (
        "bad size",
        "version: 1\nsettings: {max_upload: 64 parsecs}\n",
        "2:24",
        "'64 parsecs'",
        "a size such as 64MiB",
    ),
    ("zero size", "version: 1\nsettings: {max_upload: 0}\n", "2:24", "0", "a size"),
    (
        "bad duration",
        "version: 1\nsettings: {coach_ttl: soon}\n",
        "2:23",
        "'soon'",
        "a duration such as 30m",
    ),
    (
        "bool as text",
        "version: 1\nsettings: {keep_icc: maybe}\n",
        "2:22",
        "'maybe'",
        "true or false",
    ),
    (
        "number out of range",
        "version: 1\nsettings: {face_threshold: 2}\n",
        "2:28",
        "2",
        "a number from 0 to 1",
    ),
    (
        "int as text",
        "version: 1\nsettings: {max_images: many}\n",
        "2:24",
        "'many'",
        "a whole number above 0",
    ),
    (
        "unknown blur style",
        "version: 1\nsettings: {blur_style: swirl}\n",
        "2:24",
        "'swirl'",
        "one of blur, pixelate, solid",
    ),
    (
        "groups not a mapping",
        "version: 1\ngroups: [alice]\n",
        "2:9",
        "[alice]",
        "groups must be a mapping",
    ),
    (
        "group member not text",
        "version: 1\ngroups: {a: [alice, 007]}\n",
        "2:21",
        "007",
        'a quoted string, e.g. "007"',
    ),
    (
        "group member not a user name",
        'version: 1\ngroups: {a: ["x:y"]}\n',
        "2:14",
        "'x:y'",
        "no spaces, no ':'",
    ),
    ("rules not a list", "version: 1\nrules: {a: 1}\n", "2:8", "a mapping", "rules must be a list"),
    (
        "rule not a mapping",
        "version: 1\nrules: [strip]\n",
        "2:9",
        "'strip'",
        "rule 1 must be a mapping",
    ),
    (
        "unknown rule key",
        rules("- name: a\n  action: strip\n  colour: red\n"),
        "6:3",
        "'colour'",
        "unknown key in rule 1",
    ),
    ("rule without name", rules("- action: strip\n"), "4:3", "none", "has no name"),
    ("rule without action", rules("- name: a\n"), "4:3", "none", "rule 'a' has no action"),
    (
        "rule name not text",
        rules("- name: [a]\n  action: strip\n"),
        "4:9",
        "[a]",
        "a rule name must be text",
    ),
    (
        "duplicate rule name",
        rules(
            "- name: a\n  match: {services: [claude]}\n  action: strip\n"
            "- name: a\n  action: strip\n"
        ),
        "7:9",
        "'a'",
        "two rules are named 'a' (the first on line 4)",
    ),
    (
        "unknown action",
        rules("- name: a\n  action: blokc\n"),
        "5:11",
        "'blokc'",
        "block? (one of allow, strip, blur, warn, coach, block)",
    ),
    (
        "unknown action in a list",
        rules("- name: a\n  action: [strip, wran]\n"),
        "5:19",
        "'wran'",
        "warn? (one of",
    ),
    (
        "action twice",
        rules("- name: a\n  action: [strip, strip]\n"),
        "5:19",
        "'strip'",
        "listed twice",
    ),
    ("empty action list", rules("- name: a\n  action: []\n"), "5:11", "[]", "an empty list"),
    (
        "block with allow",
        rules("- name: a\n  action: [block, allow]\n"),
        "5:11",
        "[block, allow]",
        "contradictory actions: block refuses the upload, so allow",
    ),
    (
        "block with strip",
        rules("- name: a\n  action: [strip, block]\n"),
        "5:11",
        "[strip, block]",
        "contradictory actions",
    ),
    (
        "allow with strip",
        rules("- name: a\n  action: [allow, strip]\n"),
        "5:11",
        "[allow, strip]",
        "allow sends the image unchanged, but strip changes it",
    ),
    (
        "allow with blur",
        rules("- name: a\n  action: [allow, blur]\n"),
        "5:11",
        "[allow, blur]",
        "but blur changes it",
    ),
    (
        "message never shown",
        rules("- name: a\n  action: strip\n  message: Hello\n"),
        "6:3",
        "action strip",
        "never shows its message",
    ),
    (
        "message not text",
        rules("- name: a\n  action: warn\n  message: [a, b]\n"),
        "6:12",
        "[a, b]",
        "a message must be text",
    ),
    (
        "match not a mapping",
        rules("- name: a\n  match: [chatgpt]\n  action: strip\n"),
        "5:10",
        "[chatgpt]",
        "match must be a mapping",
    ),
    (
        "unknown match key",
        rules("- name: a\n  match: {service: [claude]}\n  action: strip\n"),
        "5:11",
        "'service'",
        "services? (one of",
    ),
    (
        "unknown service",
        rules("- name: a\n  match: {services: [chatgtp]}\n  action: strip\n"),
        "5:22",
        "'chatgtp'",
        "chatgpt? (one of",
    ),
    (
        "empty condition list",
        rules("- name: a\n  match: {services: []}\n  action: strip\n"),
        "5:21",
        "[]",
        "matches nothing",
    ),
    (
        "condition is a mapping",
        rules("- name: a\n  match: {services: {a: b}}\n  action: strip\n"),
        "5:21",
        "a mapping",
        "services must be a list",
    ),
    (
        "host given as URL",
        rules("- name: a\n  match: {hosts: ['https://chatgpt.com/']}\n  action: strip\n"),
        "5:19",
        "'https://chatgpt.com/'",
        "no scheme, port or path",
    ),
    (
        "host Veil never sees",
        rules("- name: a\n  match: {hosts: [example.org]}\n  action: strip\n"),
        "5:19",
        "'example.org'",
        "no service in the catalogue covers it",
    ),
    (
        "malformed network",
        rules("- name: a\n  match: {clients: [10.0.0/8]}\n  action: strip\n"),
        "5:21",
        "'10.0.0/8'",
        "a network such as 10.0.0.0/8",
    ),
    (
        "network with host bits",
        rules("- name: a\n  match: {clients: [10.1.2.3/8]}\n  action: strip\n"),
        "5:21",
        "'10.1.2.3/8'",
        "the network address: 10.0.0.0/8",
    ),
    (
        "unknown group",
        rules("- name: a\n  match: {groups: [intern]}\n  action: strip\n"),
        "5:20",
        "'intern'",
        "interns? (one of interns)",
    ),
    (
        "user name with a space",
        rules('- name: a\n  match: {users: ["alice smith"]}\n  action: strip\n'),
        "5:19",
        "'alice smith'",
        "a proxy-auth user name",
    ),
    (
        "user name not text",
        rules("- name: a\n  match: {users: [1234]}\n  action: strip\n"),
        "5:19",
        "1234",
        'a quoted string, e.g. "1234"',
    ),
    (
        "unknown format",
        rules("- name: a\n  match: {formats: [svg]}\n  action: strip\n"),
        "5:21",
        "'svg'",
        "one of avif, bmp",
    ),
    (
        "unknown finding",
        rules("- name: a\n  match: {has: [location]}\n  action: strip\n"),
        "5:17",
        "'location'",
        "one of c2pa",
    ),
    (
        "face count without operator",
        rules("- name: a\n  match: {faces: 1}\n  action: warn\n"),
        "5:18",
        "1",
        'a quoted comparison such as ">=1"',
    ),
    (
        "malformed comparison",
        rules("- name: a\n  match: {faces: 'about 3'}\n  action: warn\n"),
        "5:18",
        "'about 3'",
        "a quoted comparison",
    ),
    (
        "rule after a catch-all",
        rules(
            "- name: everything\n  action: strip\n- name: late\n  match: {services: [claude]}\n"
            "  action: block\n"
        ),
        "6:3",
        "rule 'late' after 'everything'",
        "can never match: rule 'everything' (line 4)",
    ),
    (
        "rule shadowed by a broader one",
        rules(
            "- name: anthropic\n  match: {services: [anthropic]}\n  action: strip\n"
            "- name: claude-gps\n  match: {services: [claude]}\n  action: block\n"
        ),
        "7:3",
        "rule 'claude-gps' after 'anthropic'",
        "already matches every upload this one",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "got", "words"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_every_error_kind_is_reported_with_its_location(text, where, got, words):
    found = problems(text)
    prefix = f"policy.yaml:{where}: "
    located = [p for p in found if p.startswith(prefix)]
    assert located, f"no problem at {where}; got:\n" + "\n".join(found)
    assert any(words in p for p in located), "\n".join(found)
    if got is not None:
        shown = (f"(got {got};", f"(got {got})")
        assert any(s in p for p in located for s in shown), "\n".join(found)


def test_all_errors_are_reported_at_once():
    text = rules(
        """\
        - name: a
          match: {services: [chatgtp], clients: [10.0.0.1/8]}
          action: [strip, blokc]
        - name: b
          action: strip
          message: never shown
        """
    )
    found = problems(text)
    assert len(found) == 4
    assert [p.split(":")[1] for p in found] == ["5", "5", "6", "9"]


def test_a_valid_policy_with_every_key():
    policy = parse_policy(
        textwrap.dedent(
            """\
            version: 1
            settings:
              on_error: allow
              max_upload: 10MiB
              max_images: 8
              max_pixels: 50_000_000
              keep_icc: false
              face_threshold: 0.5
              face_canvas: 960
              face_scale: 1.5
              face_rotations: true
              blur_style: solid
              coach_ttl: 15m
            groups:
              interns: [alice, bob]
              empty: []
            rules:
              - name: interns-gps
                match:
                  services: [google, chatgpt]
                  hosts: [chatgpt.com, "*.oaiusercontent.com"]
                  groups: [interns]
                  users: carol
                  clients: [10.0.0.0/8, "2001:db8::/32", 192.168.1.7]
                  formats: [jpg, heic]
                  has: [gps, faces]
                  faces: ">= 2"
                action: [blur, warn]
                message: |
                  Faces were covered.
                  Ask the security team if you need them.
              - name: rest
                match:
                action: allow
            """
        ),
        "policy.yaml",
    )
    assert policy.settings == Settings(
        on_error="allow",
        max_upload=10 * 2**20,
        max_images=8,
        max_pixels=50_000_000,
        keep_icc=False,
        face_threshold=0.5,
        face_canvas=960,
        face_scale=1.5,
        face_rotations=True,
        blur_style="solid",
        coach_ttl=900,
    )
    assert policy.groups == {"interns": {"alice", "bob"}, "empty": frozenset()}
    first, rest = policy.rules
    c = first.conditions
    assert c.services == {"google", "chatgpt"}
    assert c.hosts == ("chatgpt.com", "*.oaiusercontent.com")
    assert c.users == {"carol"}
    assert c.clients == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert c.formats == {"jpeg", "heif"}
    assert c.has == {"gps", "faces"}
    assert c.faces == (">=", 2)
    assert first.actions == ("blur", "warn")
    assert first.message == "Faces were covered. Ask the security team if you need them."
    assert first.line == 18
    assert rest.is_catch_all
    assert policy.needs_faces()


def test_anchors_and_merges_are_plain_yaml():
    policy = parse_policy(
        textwrap.dedent(
            """\
            version: 1
            rules:
              - name: chat-interns
                match: &chat {services: [chatgpt, claude], users: [alice]}
                action: block
              - name: chat-everyone
                match: {<<: *chat, users: [bob]}
                action: warn
            """
        ),
        "policy.yaml",
    )
    assert policy.rules[1].conditions.services == {"chatgpt", "claude"}
    assert policy.rules[1].conditions.users == {"bob"}


def test_narrower_rules_first_are_not_flagged():
    assert (
        problems(
            rules(
                """\
                - name: alice-claude
                  match: {services: [claude], users: [alice]}
                  action: block
                - name: claude
                  match: {services: [claude]}
                  action: warn
                - name: few-faces
                  match: {faces: ">=3"}
                  action: warn
                - name: one-face
                  match: {faces: ">=1"}
                  action: warn
                - name: office
                  match: {clients: [10.1.0.0/16]}
                  action: strip
                - name: lan
                  match: {clients: [10.0.0.0/8]}
                  action: strip
                - name: rest
                  action: strip
                """
            )
        )
        == []
    )


def test_shadowing_understands_networks_and_counts():
    found = problems(
        rules(
            """\
            - name: lan
              match: {clients: [10.0.0.0/8]}
              action: strip
            - name: office
              match: {clients: [10.1.0.0/16]}
              action: block
            - name: some-faces
              match: {faces: ">0"}
              action: warn
            - name: two-faces
              match: {faces: "==2"}
              action: block
            """
        )
    )
    assert len(found) == 2
    assert "rule 'office' can never match: rule 'lan'" in found[0]
    assert "rule 'two-faces' can never match: rule 'some-faces'" in found[1]


@pytest.mark.parametrize("name", ["default.yaml", "strict.yaml", "audit-only.yaml"])
def test_shipped_policies_are_valid(name):
    policy = load_policy(ROOT / "policies" / name)
    assert policy.rules and policy.rules[-1].is_catch_all


def test_shipped_policies_say_what_they_promise():
    default = load_policy(ROOT / "policies" / "default.yaml")
    assert [r.actions for r in default.rules] == [("strip", "warn"), ("strip",)]
    assert default.rules[0].conditions.has == {"faces"}
    strict = load_policy(ROOT / "policies" / "strict.yaml")
    block, rest = strict.rules
    assert block.actions == ("block",) and block.conditions.has == {"gps"}
    assert {"chatgpt", "claude", "gemini"} <= block.conditions.services
    assert not {"openai-api", "anthropic-api", "gemini-api"} & block.conditions.services
    assert set(rest.actions) == {"blur", "strip"}
    audit_only = load_policy(ROOT / "policies" / "audit-only.yaml")
    assert [r.actions for r in audit_only.rules] == [("allow",)]
    assert audit_only.settings.on_error == "allow"


def test_sizes_and_durations():
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("500 KB") == 500_000
    assert parse_size(1024) == 1024
    assert parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("1h") == 3600
    assert parse_duration("1d") == 86400
    assert parse_duration(60) == 60
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_unreadable_file_names_the_path(tmp_path):
    with pytest.raises(PolicyError, match=r"missing\.yaml: cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_veil_policy_check_reports_file_line_and_value(tmp_path, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: gps\n    match: {has: [gps]}\n    action: blokc\n"
    )
    assert main(["policy", "check", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out.strip() == (
        f"{path}:5:13: unknown action (got 'blokc'; expected block? "
        "(one of allow, strip, blur, warn, coach, block))"
    )
    assert "1 problem" in out.err


def test_veil_policy_check_summarises_a_valid_file(capsys):
    assert main(["policy", "check", str(ROOT / "policies" / "strict.yaml")]) == 0
    out = capsys.readouterr().out
    assert "OK, 2 rules" in out
    assert "no-location-to-chat-apps: block (services, has)" in out
