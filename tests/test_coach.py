"""Coaching: signed continue links bound to who was coached; acknowledgements that expire."""

from __future__ import annotations

import pytest
from veil.coach import CONTINUE_PATH, CoachLedger, CoachLinkError, identity, is_control_path


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
