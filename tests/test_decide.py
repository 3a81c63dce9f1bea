"""Deciding: first match wins, each condition, identity, the built-in default, explanations."""

from __future__ import annotations

import textwrap

import pytest
from veil.decide import RequestContext, decide, effective_actions, explain, needs_faces
from veil.findings import Face, Finding, ImageReport
from veil.policy import parse_policy

POLICY = parse_policy(
    textwrap.dedent(
        """\
        version: 1
        groups:
          interns: [alice, bob]
          legal: [carol]
        rules:
          - name: interns-no-gps
            match: {groups: [interns], has: [gps]}
            action: block
            message: Interns may not upload photos with a location.
          - name: dave-coached
            match: {users: [dave]}
            action: [strip, coach]
          - name: office-claude
            match: {services: [claude], clients: [10.1.0.0/16]}
            action: allow
          - name: many-faces
            match: {faces: ">=3"}
            action: [blur, warn]
          - name: png-to-openai
            match: {services: [openai], formats: [png]}
            action: warn
          - name: upload-hosts
            match: {hosts: ["*.oaiusercontent.com"]}
            action: [strip, warn]
            message: Raw upload noticed.
        """
    ),
    "test.yaml",
)


def ctx(service="chatgpt", vendor="openai", host="chatgpt.com", client="127.0.0.1", user=None):
    return RequestContext(service, vendor, host, client, user)


def report(fmt="jpeg", kinds=(), faces=None):
    findings = [Finding(k, k) for k in kinds]
    boxes = None if faces is None else [Face(0, 0, 10, 10, 0.9)] * faces
    return ImageReport(fmt, 100, 100, findings, boxes)


@pytest.mark.parametrize(
    ("context", "image", "rule"),
    [
        (ctx(user="alice"), report(kinds=["gps"]), "interns-no-gps"),
        (ctx(user="bob"), report(kinds=["gps", "serial"]), "interns-no-gps"),
        (ctx(user="carol"), report(kinds=["gps"]), "built-in default"),  # not an intern
        (ctx(), report(kinds=["gps"]), "built-in default"),  # unauthenticated: no group rule
        (ctx(user="alice"), report(kinds=["serial"]), "built-in default"),
        (ctx(user="dave"), report(), "dave-coached"),
        (ctx(), report(), "built-in default"),
        (ctx("claude", "anthropic", "claude.ai", "10.1.2.3"), report(), "office-claude"),
        (ctx("claude", "anthropic", "claude.ai", "::ffff:10.1.2.3"), report(), "office-claude"),
        (ctx("claude", "anthropic", "claude.ai", "10.2.0.1"), report(), "built-in default"),
        (ctx("chatgpt", client="10.1.2.3"), report(), "built-in default"),
        (ctx(), report(faces=3), "many-faces"),
        (ctx(), report(faces=2), "built-in default"),
        (ctx("openai-api", host="api.openai.com"), report("png"), "png-to-openai"),
        (ctx("chatgpt"), report("png"), "png-to-openai"),  # vendor openai covers chatgpt
        (ctx("openai-api", host="api.openai.com"), report("jpeg"), "built-in default"),
        (ctx(host="files.oaiusercontent.com"), report(), "upload-hosts"),
        (ctx(host="FILES.oaiusercontent.com."), report(), "upload-hosts"),
        (ctx(host="oaiusercontent.com"), report(), "built-in default"),
    ],
)
def test_first_matching_rule_wins(context, image, rule):
    assert decide(POLICY, context, image).rule.name == rule


def test_no_rule_matching_means_the_safe_default():
    decision = decide(POLICY, ctx(), report())
    assert decision.rule.name == "built-in default"
    assert decision.actions == ("strip",)


def test_rules_naming_users_never_match_unauthenticated_traffic():
    for user in (None, ""):
        assert decide(POLICY, ctx(user=user), report()).rule.name == "built-in default"


def test_blur_implies_strip():
    assert effective_actions(("blur",)) == ("blur", "strip")
    assert effective_actions(("blur", "warn")) == ("blur", "warn", "strip")
    assert decide(POLICY, ctx(), report(faces=4)).actions == ("blur", "warn", "strip")


def test_severity_orders_decisions():
    block = decide(POLICY, ctx(user="alice"), report(kinds=["gps"]))
    coach = decide(POLICY, ctx(user="dave"), report())
    warn = decide(POLICY, ctx(host="files.oaiusercontent.com"), report())
    strip = decide(POLICY, ctx(), report())
    assert block.severity() < coach.severity() < warn.severity() < strip.severity()
    assert block.refuses() and coach.refuses() and not warn.refuses()


def test_acknowledged_coaching_keeps_the_other_actions():
    coach = decide(POLICY, ctx(user="dave"), report())
    passed = coach.after_acknowledgement("ack-1")
    assert passed.actions == ("strip",)
    assert passed.acknowledged == "ack-1"
    assert not passed.refuses()
    only_coach = parse_policy("version: 1\nrules:\n  - {name: c, action: coach}\n", "t.yaml").rules[
        0
    ]
    from veil.decide import ImageDecision

    assert ImageDecision(only_coach, ("coach",)).after_acknowledgement("a").actions == ("allow",)


def test_unknown_faces_never_satisfy_a_face_condition():
    assert decide(POLICY, ctx(), report(faces=None)).rule.name == "built-in default"


def test_only_boxes_the_detector_is_sure_of_count_as_faces():
    policy = parse_policy(
        "version: 1\nsettings: {face_match_threshold: 0.4}\nrules:\n"
        "  - {name: crowd, match: {faces: '>=2'}, action: block}\n"
        "  - {name: any-face, match: {has: [faces]}, action: warn}\n",
        "p.yaml",
    )
    image = ImageReport("jpeg", 100, 100, [], [Face(0, 0, 10, 10, 0.9), Face(50, 50, 9, 9, 0.15)])
    image.face_match_threshold = policy.settings.face_match_threshold
    assert decide(policy, ctx(), image).rule.name == "any-face"  # one face, one unsure box
    assert image.to_record()["faces"] == [[0, 0, 10, 10, 0.9]]
    assert image.to_record()["unsure_face_boxes"] == [[50, 50, 9, 9, 0.15]]
    image.faces = [Face(50, 50, 9, 9, 0.15)]
    assert decide(policy, ctx(), image).rule.name == "built-in default"


def test_explain_says_why_each_rule_did_or_did_not_match():
    decision, traces = explain(
        POLICY, ctx("claude", "anthropic", "claude.ai", "10.1.9.9", "bob"), report(kinds=["serial"])
    )
    assert decision.rule.name == "office-claude"
    assert [t.rule.name for t in traces] == ["interns-no-gps", "dave-coached", "office-claude"]
    first, second, third = traces
    assert not first.matched
    assert [(c.key, c.held) for c in first.checks] == [("groups", True), ("has", False)]
    assert first.checks[0].why == "user bob is in group [interns]"
    assert first.checks[1].why == "none of [gps] found (found: [serial])"
    assert second.checks[0].why == "user bob is not in [dave]"
    assert third.matched
    assert [c.why for c in third.checks] == [
        "claude (vendor anthropic) is in [claude]",
        "client 10.1.9.9 is in 10.1.0.0/16",
    ]


def test_explain_unauthenticated_and_default():
    decision, traces = explain(POLICY, ctx(), report())
    assert decision.rule.name == "built-in default"
    assert len(traces) == len(POLICY.rules)
    assert traces[0].checks[0].why == "the upload is not authenticated (no proxy-auth user)"
    assert traces[3].checks[0].why == "faces were not detected (needs >=3)"


def test_faces_are_detected_only_when_a_rule_that_can_apply_needs_them():
    policy = parse_policy(
        textwrap.dedent(
            """\
            version: 1
            groups: {designers: [erin]}
            rules:
              - name: designers-anything
                match: {groups: [designers]}
                action: strip
              - name: blur-for-chatgpt
                match: {services: [chatgpt]}
                action: blur
              - name: png-to-claude
                match: {services: [claude], formats: [png]}
                action: strip
              - name: faces-to-claude
                match: {services: [claude], faces: ">=1"}
                action: warn
              - name: rest
                action: strip
            """
        ),
        "t.yaml",
    )
    claude = ctx("claude", "anthropic", "claude.ai")
    assert needs_faces(policy, ctx())  # blur for chatgpt
    assert not needs_faces(policy, ctx(user="erin"))  # erin's rule takes every image first
    assert needs_faces(policy, claude)  # a jpeg falls past png-to-claude to faces-to-claude
    assert not needs_faces(policy, ctx("gemini", "google", "gemini.google.com"))
    assert not needs_faces(POLICY, ctx(user="dave"))  # coached before any face rule
