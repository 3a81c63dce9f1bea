"""Answers Veil gives in place of the AI service: refusals, coaching notices and the
`Veil-Notice` header, as JSON for API clients and scripts or as a readable HTML page for
browser navigations."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

NOTICE_HEADER = "Veil-Notice"
NOTICE_MAX = 512  # characters of the message kept in the header
_RFC8187_PREFIX = "UTF-8''"
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 8187 attr-char besides letters and digits


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def wants_html(headers: Mapping[str, str]) -> bool:
    """A browser navigation gets a page; API clients, scripts and fetch/XHR get JSON.

    Browsers say what a request is for in Sec-Fetch-Mode / Sec-Fetch-Dest: only a navigation
    (a form post, a typed URL) shows a page. Without those headers (older browsers, tools),
    an Accept that prefers text/html over JSON decides.
    """
    mode = headers.get("sec-fetch-mode", "").lower()
    dest = headers.get("sec-fetch-dest", "").lower()
    if mode == "navigate" or dest in ("document", "iframe", "frame"):
        return True
    if mode:
        return False
    accept = headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def refusal(
    status: int,
    error_type: str,
    message: str,
    decision_id: str | None,
    request_headers: Mapping[str, str],
    rule: str | None = None,
) -> Answer:
    """The upload did not leave: say why."""
    if wants_html(request_headers):
        page = _page("Upload stopped", [_p(message)], rule, decision_id)
        return Answer(status, page, _headers("text/html"))
    return _json(status, error_type, message, decision_id, rule)


def coaching(
    message: str,
    decision_id: str,
    request_headers: Mapping[str, str],
    *,
    rule: str,
    service: str,
    continue_url: str,
    ttl: int,
) -> Answer:
    """The upload was held back with an explanation and a link that lets the user continue."""
    after = (
        f"If you still need to send it, continue: for the next {duration(ttl)} your uploads "
        f"to {service} are let through. Continuing is recorded."
    )
    if wants_html(request_headers):
        body = [
            _p(message),
            _p(after),
            f'<p><a class="go" href="{html.escape(continue_url)}">I understand, continue</a>'
            "</p><p>Then upload again.</p>",
        ]
        page = _page("Before you upload this", body, rule, decision_id)
        return Answer(403, page, _headers("text/html"))
    text = f"{message} {after} Open {continue_url} then upload again."
    return _json(403, "upload_coached", text, decision_id, rule, continue_url=continue_url)


def acknowledged(
    service: str, until: float, decision_id: str, request_headers: Mapping[str, str]
) -> Answer:
    """The user followed a continue link."""
    when = datetime.fromtimestamp(until, UTC).strftime("%H:%M UTC")
    message = f"Thank you. Your uploads to {service} are let through until {when}."
    if wants_html(request_headers):
        body = [_p(message), _p("Go back and upload again.")]
        page = _page("Continuing", body, None, decision_id)
        return Answer(200, page, _headers("text/html"))
    ack = {
        "service": service,
        "until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds"),
        "message": message,
        "decision_id": decision_id,
    }
    body = json.dumps({"acknowledged": ack}, ensure_ascii=False).encode()
    return Answer(200, body, _headers("application/json"))


def notice_header(message: str) -> str:
    """A `Veil-Notice` value that survives as a valid header whatever the message's script.

    Printable ASCII is sent as is. Anything else is sent as an RFC 8187 ext-value,
    `UTF-8''` followed by the percent-encoded UTF-8 bytes (as in `filename*=`), which
    `decode_notice` (or any RFC 8187 decoder) turns back into the message.
    """
    text = " ".join(message.split())[:NOTICE_MAX]
    if text.isascii() and text.isprintable() and not text.upper().startswith(_RFC8187_PREFIX):
        return text
    return _RFC8187_PREFIX + quote(text, safe=_ATTR_CHARS, encoding="utf-8")


def decode_notice(value: str) -> str:
    if value[: len(_RFC8187_PREFIX)].upper() == _RFC8187_PREFIX:
        return unquote(value[len(_RFC8187_PREFIX) :], encoding="utf-8", errors="replace")
    return value


def duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _json(
    status: int,
    error_type: str,
    message: str,
    decision_id: str | None,
    rule: str | None,
    **extra: str,
) -> Answer:
    error = {"type": error_type, "message": message, "rule": rule, "decision_id": decision_id}
    body = json.dumps({"error": {**error, **extra}}, ensure_ascii=False).encode()
    return Answer(status, body, _headers("application/json"))


def _headers(content_type: str) -> dict[str, str]:
    return {
        "Content-Type": f"{content_type}; charset=utf-8",
        "Cache-Control": "no-store",
        "Server": "veil",
    }


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _page(title: str, body: list[str], rule: str | None, decision_id: str | None) -> bytes:
    rule_line = _p(f"Rule: {rule}") if rule else ""
    reference = (
        f"<p class=ref>Reference for your security team: <code>{html.escape(decision_id)}</code>"
        "</p>"
        if decision_id
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}.ref{{color:#555;font-size:.9em}}
.go{{display:inline-block;padding:.5em 1em;background:#1a5fb4;color:#fff;border-radius:.3em;
text-decoration:none}}</style></head>
<body><h1>{html.escape(title)}</h1>{"".join(body)}{rule_line}{reference}
</body></html>
""".encode()
