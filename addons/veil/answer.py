"""Answers Veil gives in place of the AI service: refusals as JSON or a readable HTML page."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def wants_html(headers: Mapping[str, str]) -> bool:
    """A browser navigation gets a page; API clients, scripts and fetch/XHR get JSON."""
    mode = headers.get("sec-fetch-mode", "").lower()
    dest = headers.get("sec-fetch-dest", "").lower()
    if mode == "navigate" or dest == "document":
        return True
    if mode:
        return False
    accept = headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def refusal(
    status: int,
    error_type: str,
    message: str,
    decision_id: str,
    request_headers: Mapping[str, str],
    rule: str | None = None,
) -> Answer:
    if wants_html(request_headers):
        return Answer(status, _html_page(message, decision_id, rule), _headers("text/html"))
    error = {"type": error_type, "message": message, "rule": rule, "decision_id": decision_id}
    body = json.dumps({"error": error}, ensure_ascii=False).encode()
    return Answer(status, body, _headers("application/json"))


def _headers(content_type: str) -> dict[str, str]:
    return {
        "Content-Type": f"{content_type}; charset=utf-8",
        "Cache-Control": "no-store",
        "Server": "veil",
    }


def _html_page(message: str, decision_id: str, rule: str | None) -> bytes:
    rule_line = f"<p>Rule: <code>{html.escape(rule)}</code></p>" if rule else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upload stopped</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>Upload stopped</h1><p>{html.escape(message)}</p>{rule_line}
<p>Reference for your security team: <code>{html.escape(decision_id)}</code></p>
</body></html>
""".encode()
