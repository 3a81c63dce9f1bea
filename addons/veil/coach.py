"""Coaching: an upload is refused with an explanation and a continue link; once the user
follows it, that user's uploads to that service pass for `coach_ttl` seconds.

The continue link is served by the proxy itself on the AI host the upload went to
(`https://chatgpt.com/__veil/coach/continue?t=...`): that host is already routed through and
intercepted by Veil, so the link works wherever the upload did, without a PAC change. The
token in it is signed with a key that lives only in this process and names who it was issued
to, so a link cannot be used by anyone else (or forged by a web page to switch coaching off
for a victim). Acknowledgements are kept in memory: a restart asks users again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

CONTROL_PREFIX = "/__veil/"
CONTINUE_PATH = "/__veil/coach/continue"
LINK_TTL = 24 * 3600  # how long a continue link can be followed (not how long it lets through)


class CoachLinkError(ValueError):
    """The continue link is malformed, expired, forged or someone else's."""


def identity(user: str | None, client: str) -> str:
    """Whom an acknowledgement belongs to: the proxy-auth user, else the client address."""
    return f"user:{user}" if user else f"client:{client}"


def is_control_path(path: str) -> bool:
    return path.startswith(CONTROL_PREFIX)


@dataclass(frozen=True)
class Ticket:
    """What a continue link stands for."""

    identity: str
    service: str
    rule: str
    decision_id: str  # the coached upload
    expires: float


@dataclass(frozen=True)
class Grant:
    """An acknowledgement in force: uploads by `identity` to `service` pass until `until`."""

    identity: str
    service: str
    rule: str
    decision_id: str  # the acknowledgement's own audit record
    until: float


class CoachLedger:
    """Issues continue links and remembers acknowledgements. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time, key: bytes | None = None) -> None:
        self._clock = clock
        self._key = key or secrets.token_bytes(32)
        self._grants: dict[tuple[str, str], Grant] = {}
        self._lock = threading.Lock()

    def issue(self, host: str, *, who: str, service: str, rule: str, decision_id: str) -> str:
        """A continue link for a coached upload, served on the upload's own host."""
        ticket = Ticket(who, service, rule, decision_id, self._clock() + LINK_TTL)
        return f"https://{host}{CONTINUE_PATH}?t={self.sign(ticket)}"

    def sign(self, ticket: Ticket) -> str:
        payload = json.dumps(
            [ticket.identity, ticket.service, ticket.rule, ticket.decision_id, ticket.expires],
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def read(self, path: str, who: str) -> Ticket:
        """The ticket in a continue link followed by `who`; raises CoachLinkError."""
        token = parse_qs(urlsplit(path).query).get("t", [""])[0]
        payload_text, _, mac_text = token.partition(".")
        try:
            payload, mac = _unb64(payload_text), _unb64(mac_text)
            fields = json.loads(payload)
            ticket = Ticket(*fields)
        except (ValueError, TypeError) as exc:
            raise CoachLinkError("this continue link is malformed") from exc
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise CoachLinkError("this continue link was not issued by this proxy")
        if ticket.expires < self._clock():
            raise CoachLinkError("this continue link has expired; upload again for a new one")
        if ticket.identity != who:
            raise CoachLinkError("this continue link was issued to someone else")
        return ticket

    def acknowledge(self, ticket: Ticket, ttl: int, decision_id: str) -> Grant:
        grant = Grant(
            ticket.identity, ticket.service, ticket.rule, decision_id, self._clock() + ttl
        )
        with self._lock:
            self._forget_expired()
            self._grants[(grant.identity, grant.service)] = grant
        return grant

    def grant_for(self, who: str, service: str) -> Grant | None:
        with self._lock:
            grant = self._grants.get((who, service))
            if grant is None or grant.until < self._clock():
                return None
            return grant

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [k for k, g in self._grants.items() if g.until < now]:
            del self._grants[key]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
