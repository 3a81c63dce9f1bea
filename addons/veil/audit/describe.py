"""One readable line per record, for `tail`, `query` and `find`, e.g. (wrapped here):

2025-03-01 14:02:11Z  BLOCKED  gemini  alice  10.0.0.7  1 image: jpeg 4032x3024 gps
    serial  rule no-location  e3b0c442  "Photos with a location may not go to Gemini."
2025-03-01 14:05:40Z  EVENT  policy_reload_failed: org.yaml line 7: unknown action
"""

from __future__ import annotations

VERDICT_COLOURS = {
    "allowed": "32",  # green
    "transformed": "36",  # cyan
    "warned": "33",  # yellow
    "coached": "35",  # magenta
    "blocked": "31;1",  # bold red
    "error": "31",  # red
}


def line(record: dict, colour: bool = False) -> str:
    when = _when(record.get("ts"))
    if record.get("event"):
        label = _paint("EVENT".ljust(11), "34", colour)
        message = record.get("message") or ""
        return f"{when}  {label}  {record['event']}{': ' + message if message else ''}"
    verdict = str(record.get("verdict") or "?")
    label = _paint(verdict.upper().ljust(11), VERDICT_COLOURS.get(verdict, "0"), colour)
    parts = [
        when,
        label,
        str(record.get("service") or "-").ljust(12),
        str(record.get("user") or "-").ljust(9),
        str(record.get("client") or "-").ljust(15),
        images(record.get("images") or []),
    ]
    if record.get("rule"):
        parts.append(f"rule {record['rule']}")
    parts.append(str(record.get("decision_id") or "")[:8])
    text = "  ".join(parts)
    if record.get("verdict") in ("blocked", "coached", "error") and record.get("message"):
        text += f'  "{record["message"]}"'
    return text


def images(entries: list) -> str:
    if not entries:
        return "no image"
    first = entries[0] if isinstance(entries[0], dict) else {}
    size = f"{first.get('width')}x{first.get('height')}" if first.get("width") else ""
    kinds = sorted({f.get("kind") for e in entries for f in _findings(e) if f.get("kind")})
    if any(isinstance(e, dict) and e.get("faces") for e in entries):
        kinds.append("faces")
    count = f"{len(entries)} image{'s' if len(entries) != 1 else ''}"
    what = " ".join(filter(None, [str(first.get("format") or ""), size, *kinds]))
    return f"{count}: {what}"


def _findings(entry) -> list[dict]:
    if not isinstance(entry, dict):
        return []
    return [f for f in entry.get("findings") or () if isinstance(f, dict)]


def _when(ts) -> str:
    if not isinstance(ts, str) or len(ts) < 19:
        return str(ts).ljust(20)
    return ts[:10] + " " + ts[11:19] + "Z"


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text
