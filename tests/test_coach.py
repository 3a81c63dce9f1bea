"""Coaching: signed continue links bound to who was coached; acknowledgements that expire."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from veil.audit import AuditLog
from veil.coach import CONTINUE_PATH, CoachLedger, CoachLinkError, identity, is_control_path
from veil.pipeline import Pipeline, UploadRequest
from veil.policy import parse_policy


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(clock) -> CoachLedger:
    return CoachLedger(clock=clock)


def issue(ledger: CoachLedger, who: str = "user:alice") -> str:
    url = ledger.issue("claude.ai", who=who, service="claude", rule="think", decision_id="d1")
    assert url.startswith(f"https://claude.ai{CONTINUE_PATH}?t=")
    return "/" + url.split("/", 3)[3]


def test_identity_prefers_the_user_and_falls_back_to_the_address():
    assert identity("alice", "10.0.0.1") == "user:alice"
    assert identity(None, "10.0.0.1") == "client:10.0.0.1"
    assert identity("", "10.0.0.1") == "client:10.0.0.1"


def test_control_paths():
    assert is_control_path("/__veil/coach/continue?t=x")
    assert not is_control_path("/api/__veil/")


def test_following_the_link_grants_passage_for_the_ttl(ledger, clock):
    path = issue(ledger)
    assert ledger.grant_for("user:alice", "claude") is None
    ticket = ledger.read(path, "user:alice")
    assert (ticket.service, ticket.rule, ticket.decision_id) == ("claude", "think", "d1")
    grant = ledger.acknowledge(ticket, ttl=600, decision_id="ack1")
    assert ledger.grant_for("user:alice", "claude") == grant
    assert ledger.grant_for("user:alice", "chatgpt") is None  # only that service
    assert ledger.grant_for("user:bob", "claude") is None  # only that user
    clock.now += 601
    assert ledger.grant_for("user:alice", "claude") is None


def test_a_link_works_only_for_whom_it_was_issued(ledger):
    path = issue(ledger, "client:10.0.0.1")
    with pytest.raises(CoachLinkError, match="someone else"):
        ledger.read(path, "client:10.0.0.2")
    assert ledger.read(path, "client:10.0.0.1").identity == "client:10.0.0.1"


def test_forged_tampered_and_expired_links_are_refused(ledger, clock):
    path = issue(ledger)
    payload = path.split("t=", 1)[1].split(".")[0]
    other = CoachLedger(clock=clock)  # another proxy process: another key
    with pytest.raises(CoachLinkError, match="not issued by this proxy"):
        other.read(path, "user:alice")
    tampered = path.replace(payload, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"))
    with pytest.raises(CoachLinkError):
        ledger.read(tampered, "user:alice")
    for bad in (
        "/__veil/coach/continue",
        "/__veil/coach/continue?t=",
        "/__veil/coach/continue?t=x.y",
    ):
        with pytest.raises(CoachLinkError, match="malformed"):
            ledger.read(bad, "user:alice")
    clock.now += 2 * 24 * 3600
    with pytest.raises(CoachLinkError, match="expired"):
        ledger.read(path, "user:alice")


def test_expired_grants_are_forgotten(ledger, clock):
    ticket = ledger.read(issue(ledger, "user:a"), "user:a")
    ledger.acknowledge(ticket, ttl=10, decision_id="x")
    clock.now += 11
    ticket_b = ledger.read(issue(ledger, "user:b"), "user:b")
    ledger.acknowledge(ticket_b, ttl=10, decision_id="y")
    assert list(ledger._grants) == [("user:b", "claude")]


# Through the pipeline (no proxy): unauthenticated users are told apart by client address.


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 100, 50)).save(out, "JPEG")
    return out.getvalue()


def upload(
    client: str, body: bytes, path: str = "/c/api/attachments", method: str = "POST"
) -> UploadRequest:
    return UploadRequest(
        method=method,
        host="copilot.microsoft.com",
        path=path,
        headers={"content-type": "image/jpeg"},
        body=body,
        client=client,
        service="copilot",
        vendor="microsoft",
    )


@contextlib.contextmanager
def pipeline_for(policy_text: str, audit_dir: Path) -> Iterator[Pipeline]:
    """The proxy's pipeline without the proxy: this policy, an audit trail in `audit_dir`."""
    policy = parse_policy(policy_text, "policy.yaml")
    audit = AuditLog(audit_dir)
    audit.open()
    try:
        yield Pipeline(policy=lambda: policy, audit=audit)
    finally:
        audit.close()


def test_unauthenticated_acknowledgements_are_per_client_address(tmp_path):
    with pipeline_for(
        "version: 1\nsettings: {coach_ttl: 5m}\nrules:\n"
        "  - {name: think, match: {services: [microsoft]}, action: coach, message: Think.}\n",
        tmp_path,
    ) as pipeline:
        image = jpeg()

        first = pipeline.process(upload("10.0.0.1", image))
        assert first.verdict == "coached" and first.answer is not None
        error = json.loads(first.answer.body)["error"]
        link = "/" + error["continue_url"].split("/", 3)[3]

        elsewhere = pipeline.continue_after_coaching(upload("10.0.0.2", b"", link, "GET"))
        assert elsewhere.answer is not None and elsewhere.answer.status == 403
        ack = pipeline.continue_after_coaching(upload("10.0.0.1", b"", link, "GET"))
        assert ack.answer is not None and ack.answer.status == 200
        assert ack.record["event"] == "coach_acknowledged"
        assert ack.record["client"] == "10.0.0.1" and ack.record["user"] is None

        again = pipeline.process(upload("10.0.0.1", image))
        assert again.forwards and again.verdict == "allowed"  # `coach` alone: sent unchanged
        assert again.record["acknowledged"] == ack.decision_id
        neighbour = pipeline.process(upload("10.0.0.2", image))
        assert neighbour.verdict == "coached"
