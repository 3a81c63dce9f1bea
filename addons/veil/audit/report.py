"""`veil audit report --html OUT.html`: the trail at a glance, as one self-contained page.

Numbers come from SQL aggregates over the database (cheap on large trails); the charts are
inline SVG (charts.py); the page has no scripts and loads nothing from anywhere.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path

from veil.audit import charts
from veil.audit.describe import images as describe_images
from veil.audit.query import Filters, open_database, sql_conditions
from veil.audit.record import VERDICTS

COLOURS = {
    "allowed": "#2e9e5b",
    "transformed": "#2f7ed8",
    "warned": "#e8a33d",
    "coached": "#8e5cd9",
    "blocked": "#d64545",
    "error": "#8a94a0",
}
LABELS = {
    "allowed": "allowed as is",
    "transformed": "cleaned",
    "warned": "warned",
    "coached": "coached",
    "blocked": "blocked",
    "error": "error",
}
# The findings a security team asks about first, in this order, then the rest.
HEADLINE_FINDINGS = {
    "gps": ("GPS location", "#d64545"),
    "faces": ("faces", "#8e5cd9"),
    "serial": ("serial numbers", "#e8a33d"),
    "person_names": ("names of people", "#c2571a"),
    "thumbnail": ("hidden thumbnails", "#2f7ed8"),
    "c2pa": ("C2PA provenance", "#16a2a8"),
    "device": ("camera model", "#6b7a8a"),
    "datetime": ("capture time", "#8a94a0"),
}
TOP = 10


@dataclass
class Summary:
    since: str | None = None
    until: str | None = None
    decisions: int = 0
    images: int = 0
    verdicts: Counter = field(default_factory=Counter)
    over_time: tuple[list[str], dict[str, list[int]]] = ((), {})  # type: ignore[assignment]
    by_service: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    by_rule: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    by_user: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    sensitive_by_user: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    findings: Counter = field(default_factory=Counter)
    faces: int = 0
    users: int = 0
    blocked: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    integrity: str = ""
    integrity_ok: bool | None = None

    def __str__(self) -> str:
        return f"{self.decisions} decisions, {self.images} images"


def write_report(
    directory: Path,
    out: Path,
    title: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    check_integrity: bool = True,
    seal_keys: Sequence[bytes] = (),
) -> Summary:
    summary = summarise(directory, since, until)
    if check_integrity:
        summary.integrity, summary.integrity_ok = _integrity(directory, seal_keys)
    else:
        summary.integrity = "Integrity not checked for this report (veil audit verify)"
    out.write_text(render(summary, title), encoding="utf-8")
    return summary


# Gathering.


def summarise(directory: Path, since: datetime | None, until: datetime | None) -> Summary:
    db = open_database(directory)
    try:
        where, params = _window(since, until)
        s = Summary()
        _totals(db, where, params, s)
        s.over_time = _over_time(db, where, params, s)
        s.by_service = _grouped(db, "coalesce(service, '?')", where, params)
        s.by_rule = _grouped(db, "coalesce(rule, '(none)')", where, params)
        s.by_user = _grouped(db, "coalesce(user, client, '?')", where, params)
        s.sensitive_by_user = _sensitive_by_user(db, where, params)
        s.users = db.execute(
            f"SELECT count(DISTINCT coalesce(user, client)) FROM records WHERE {where}", params
        ).fetchone()[0]
        _findings(db, where, params, s)
        s.blocked = _records(db, f"{where} AND verdict = 'blocked'", params, 12)
        s.events = _records(db, where.replace("event IS NULL", "event IS NOT NULL"), params, 8)
        return s
    finally:
        db.close()


def _window(since: datetime | None, until: datetime | None) -> tuple[str, list]:
    where, params = sql_conditions(Filters(since=since, until=until, events=False))
    return " AND ".join(where), params


def _totals(db: sqlite3.Connection, where: str, params: list, s: Summary) -> None:
    row = db.execute(f"SELECT count(*), min(ts), max(ts) FROM records WHERE {where}", params)
    s.decisions, s.since, s.until = row.fetchone()
    for verdict, count in db.execute(
        f"SELECT verdict, count(*) FROM records WHERE {where} GROUP BY verdict", params
    ):
        s.verdicts[verdict or "error"] += count


def _over_time(
    db: sqlite3.Connection, where: str, params: list, s: Summary
) -> tuple[list[str], dict[str, list[int]]]:
    if not s.since or not s.until:
        return [], {}
    first, last = _day(s.since), _day(s.until)
    span = (last - first).days
    if span < 2:
        bucket, step, fmt = "substr(ts, 1, 13)", timedelta(hours=1), "%Y-%m-%dT%H"
        start = datetime.fromisoformat(s.since[:13] + ":00:00")
        end = datetime.fromisoformat(s.until[:13] + ":00:00")
    elif span <= 120:
        bucket, step, fmt = "substr(ts, 1, 10)", timedelta(days=1), "%Y-%m-%d"
        start, end = (
            datetime.combine(first, datetime.min.time()),
            datetime.combine(last, datetime.min.time()),
        )
    else:
        bucket, step, fmt = (
            "date(substr(ts, 1, 10), 'weekday 1', '-7 days')",
            timedelta(weeks=1),
            "%Y-%m-%d",
        )
        monday = first - timedelta(days=first.weekday())
        start, end = (
            datetime.combine(monday, datetime.min.time()),
            datetime.combine(last, datetime.min.time()),
        )
    keys = []
    t = start
    while t <= end:
        keys.append(t.strftime(fmt))
        t += step
    index = {k: i for i, k in enumerate(keys)}
    series = {v: [0] * len(keys) for v in VERDICTS}
    for key, verdict, count in db.execute(
        f"SELECT {bucket} AS b, verdict, count(*) FROM records WHERE {where} GROUP BY b, verdict",
        params,
    ):
        if key in index:
            series[verdict if verdict in series else "error"][index[key]] += count
    labels = [_bucket_label(k, step) for k in keys]
    return labels, {v: values for v, values in series.items() if any(values)}


def _day(ts: str) -> date:
    return date.fromisoformat(ts[:10])


def _bucket_label(key: str, step: timedelta) -> str:
    if step == timedelta(hours=1):
        return key[11:13] + ":00"
    return date.fromisoformat(key).strftime("%d %b")


def _grouped(
    db: sqlite3.Connection, column: str, where: str, params: list
) -> list[tuple[str, dict[str, int]]]:
    groups: dict[str, Counter] = {}
    for key, verdict, count in db.execute(
        f"SELECT {column} AS k, verdict, count(*) FROM records WHERE {where} GROUP BY k, verdict",
        params,
    ):
        groups.setdefault(str(key), Counter())[verdict or "error"] += count
    ranked = sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    top = [(k, dict(v)) for k, v in ranked[:TOP]]
    rest = Counter()
    for _, parts in ranked[TOP:]:
        rest.update(parts)
    if rest:
        top.append((f"{len(ranked) - TOP} more", dict(rest)))
    return top


SENSITIVE = ("gps", "faces", "serial")


def _sensitive_by_user(
    db: sqlite3.Connection, where: str, params: list
) -> list[tuple[str, dict[str, int]]]:
    """Per person: how many of their images carried a location, faces or serial numbers."""
    groups: dict[str, Counter] = {}
    for who, kinds, count in db.execute(
        "SELECT coalesce(r.user, r.client, '?'), i.kinds, count(*) FROM images i "
        f"JOIN records r ON r.seq = i.seq WHERE {where} GROUP BY 1, 2",
        params,
    ):
        for kind in set((kinds or "").split()) & set(SENSITIVE):
            groups.setdefault(str(who), Counter())[kind] += count
    ranked = sorted(groups.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    return [(k, dict(v)) for k, v in ranked[:TOP]]


def _findings(db: sqlite3.Connection, where: str, params: list, s: Summary) -> None:
    for kinds, faces, count in db.execute(
        "SELECT i.kinds, sum(coalesce(i.faces, 0)), count(*) FROM images i "
        f"JOIN records r ON r.seq = i.seq WHERE {where} "
        "GROUP BY i.kinds",
        params,
    ):
        s.images += count
        s.faces += faces or 0
        for kind in (kinds or "").split():
            s.findings[kind] += count


def _records(db: sqlite3.Connection, where: str, params: list, limit: int) -> list[dict]:
    rows = db.execute(
        f"SELECT record FROM records WHERE {where} ORDER BY seq DESC LIMIT {limit}", params
    )
    return [json.loads(r[0]) for r in rows]


def _integrity(directory: Path, seal_keys: Sequence[bytes]) -> tuple[str, bool | None]:
    from veil.audit.verify import verify

    result = verify(directory, seal_keys)
    if not result.ok:
        return f"Integrity check FAILED: {result.problems[0]}", False
    head = result.files.head
    if result.unverifiable:
        return (
            f"Chain links intact; {result.unverifiable} sealed records need the seal key "
            "to be checked (--seal-key FILE)",
            None,
        )
    if head is None:
        return "The trail is empty.", None
    return (
        f"Hash chain verified in both stores: {result.files.count} records, head "
        f"#{head.seq} {str(head.record.get('hash'))[:16]}…",
        True,
    )


# Rendering.


def render(s: Summary, title: str) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    period = f"{_date(s.since)} to {_date(s.until)}" if s.since else "no decisions yet"
    body = [
        f"<header><div><h1>{escape(title)}</h1><p class=sub>{escape(period)} · generated "
        f"{generated}</p></div>{_integrity_badge(s)}</header>",
        _kpis(s),
    ]
    if s.decisions:
        body += [
            '<section class="grid wide">',
            _card("Uploads over time", _legend(s.over_time[1]) + _timeline(s), "wide"),
            "</section>",
            '<section class="grid">',
            _card("Verdicts", _verdict_donut(s)),
            _card("What the photos carried", _findings_chart(s)),
            _card("By service", _bars(s.by_service)),
            _card("By rule", _bars(s.by_rule)),
            _card("By user", _bars(s.by_user)),
            _card("Who sent location, faces or serials", _sensitive_chart(s)),
            _card("Latest blocked uploads", _blocked_table(s), "wide"),
            "</section>",
        ]
    else:
        body.append('<p class="empty">No upload decisions in this period.</p>')
    if s.events:
        body.append(
            f'<section class="grid">{_card("System events", _events_table(s), "wide")}</section>'
        )
    body.append(
        "<footer>Veil audit report · image bytes, request bodies and credentials are never "
        "recorded · check the trail yourself with <code>veil audit verify</code></footer>"
    )
    return PAGE.format(title=escape(title), csp=CSP, css=CSS, body="\n".join(body))


def _date(ts: str | None) -> str:
    return ts[:16].replace("T", " ") + " UTC" if ts else "?"


def _integrity_badge(s: Summary) -> str:
    state = {True: "ok", False: "bad", None: "unknown"}[s.integrity_ok]
    icon = {"ok": "✓", "bad": "✗", "unknown": "•"}[state]
    return f'<div class="badge {state}"><b>{icon}</b> {escape(s.integrity)}</div>'


def _kpis(s: Summary) -> str:
    blocked = s.verdicts.get("blocked", 0)
    cleaned = s.verdicts.get("transformed", 0)
    gps = s.findings.get("gps", 0)
    faces = s.findings.get("faces", 0)
    tiles = [
        ("uploads decided", s.decisions, "#1f2933"),
        ("images inspected", s.images, "#1f2933"),
        ("cleaned before sending", cleaned, COLOURS["transformed"]),
        ("blocked", blocked, COLOURS["blocked"]),
        ("photos with a GPS location", gps, COLOURS["blocked"] if gps else "#1f2933"),
        ("photos with faces", faces, COLOURS["coached"] if faces else "#1f2933"),
        ("people and machines", s.users, "#1f2933"),
    ]
    cells = "".join(
        f'<div class="kpi"><span class="n" style="color:{colour}">{value:,}</span>'
        f"<span class=l>{escape(label)}</span></div>"
        for label, value, colour in tiles
    )
    return f'<section class="kpis">{cells}</section>'


def _card(title: str, content: str, cls: str = "") -> str:
    return f'<article class="card {cls}"><h2>{escape(title)}</h2>{content}</article>'


def _legend(series: dict) -> str:
    items = "".join(
        f'<span><i style="background:{COLOURS[v]}"></i>{escape(LABELS[v])}</span>'
        for v in VERDICTS
        if v in series
    )
    return f'<div class="legend">{items}</div>'


def _timeline(s: Summary) -> str:
    labels, series = s.over_time
    return charts.stacked_columns(labels, series, COLOURS, width=1040, height=250)


def _verdict_donut(s: Summary) -> str:
    parts = [(LABELS[v], s.verdicts.get(v, 0), COLOURS[v]) for v in VERDICTS]
    rows = "".join(
        f'<li><i style="background:{colour}"></i>{escape(name)}<b>{value:,}</b>'
        f"<span>{value / s.decisions:.0%}</span></li>"
        for name, value, colour in parts
        if value
    )
    ring = charts.donut(parts, label="uploads")
    return f'<div class="split">{ring}<ul class="keys">{rows}</ul></div>'


def _findings_chart(s: Summary) -> str:
    rows = []
    for kind, (label, colour) in HEADLINE_FINDINGS.items():
        if kind in SENSITIVE or s.findings.get(kind):
            rows.append((label, s.findings.get(kind, 0), colour))
    others = [(k, n) for k, n in s.findings.most_common() if k not in HEADLINE_FINDINGS]
    rows += [(k.replace("_", " "), n, "#9aa5b1") for k, n in others[:4]]
    return charts.share_bars(rows, s.images) + (
        f'<p class="note">of {s.images:,} images inspected</p>'
    )


def _bars(rows: list[tuple[str, dict[str, int]]]) -> str:
    return charts.stacked_bars(rows, COLOURS, VERDICTS)


def _sensitive_chart(s: Summary) -> str:
    if not s.sensitive_by_user:
        return '<p class="empty">No photo carried a location, faces or serial numbers.</p>'
    colours = {k: HEADLINE_FINDINGS[k][1] for k in SENSITIVE}
    legend = "".join(
        f'<span><i style="background:{colours[k]}"></i>{escape(HEADLINE_FINDINGS[k][0])}</span>'
        for k in SENSITIVE
    )
    chart = charts.stacked_bars(s.sensitive_by_user, colours, SENSITIVE)
    return f'<div class="legend">{legend}</div>{chart}'


def _blocked_table(s: Summary) -> str:
    if not s.blocked:
        return '<p class="empty">Nothing was blocked in this period.</p>'
    lines = []
    for r in s.blocked:
        lines.append(
            "<tr>"
            f"<td class=t>{escape(_date(r.get('ts')).removesuffix(' UTC'))}</td>"
            f"<td>{escape(str(r.get('user') or r.get('client') or '?'))}</td>"
            f"<td><span class=svc>{escape(str(r.get('service') or '?'))}</span></td>"
            f"<td>{escape(describe_images(r.get('images') or []))}</td>"
            f"<td><code>{escape(str(r.get('rule') or ''))}</code></td>"
            f"<td class=msg>{escape(str(r.get('message') or ''))}</td>"
            f"<td><code>{escape(str(r.get('decision_id') or '')[:8])}</code></td>"
            "</tr>"
        )
    head = "<tr><th>when</th><th>who</th><th>service</th><th>images</th><th>rule</th>"
    head += "<th>message</th><th>decision</th></tr>"
    return f"<table>{head}{''.join(lines)}</table>"


def _events_table(s: Summary) -> str:
    lines = "".join(
        f"<tr><td class=t>{escape(_date(r.get('ts')).removesuffix(' UTC'))}</td>"
        f"<td><code>{escape(str(r.get('event')))}</code></td>"
        f"<td class=msg>{escape(str(r.get('message') or ''))}</td></tr>"
        for r in s.events
    )
    return f"<table><tr><th>when</th><th>event</th><th>message</th></tr>{lines}</table>"


# Nothing may load from anywhere, and no script may run: the page is data only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
:root{--ink:#1f2933;--muted:#5b6470;--line:#e6e8eb;--bg:#f5f6f8}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 40px}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;
 margin-bottom:18px}
h1{font-size:24px;margin:0 0 2px}
.sub{margin:0;color:var(--muted)}
.badge{max-width:430px;padding:10px 14px;border-radius:10px;font-size:13px;
 background:#fff;border:1px solid var(--line)}
.badge b{font-size:15px;margin-right:4px}
.badge.ok{border-color:#b7e1c7;background:#eefaf2;color:#1d6b3f}
.badge.bad{border-color:#f0b8b8;background:#fdeeee;color:#9b2323}
.kpis{display:grid;grid-template-columns:repeat(7,1fr);gap:12px;margin-bottom:16px}
.kpi{background:#fff;border:1px solid var(--line);border-radius:12px;padding:14px 14px 12px}
.kpi .n{display:block;font-size:28px;font-weight:700;letter-spacing:-.5px}
.kpi .l{color:var(--muted);font-size:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px;margin-bottom:16px}
.card{background:#fff;border:1px solid var(--line);border-radius:14px;padding:16px 18px;
 min-width:0}
.card.wide,.grid.wide .card{grid-column:1/-1}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.6px;color:var(--muted);
 margin:0 0 12px}
.legend{display:flex;gap:16px;flex-wrap:wrap;margin:-4px 0 8px;color:var(--muted);
 font-size:12px}
.legend i,.keys i{display:inline-block;width:10px;height:10px;border-radius:3px;
 margin-right:6px}
.split{display:flex;align-items:center;gap:22px}
.split svg{flex:0 0 180px}
.keys{list-style:none;margin:0;padding:0;flex:1}
.keys li{display:flex;align-items:center;padding:5px 0;border-bottom:1px solid var(--line)}
.keys b{margin-left:auto;margin-right:10px}
.keys span{color:var(--muted);width:40px;text-align:right}
.note{color:var(--muted);font-size:12px;margin:6px 0 0}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;font-size:12px;
 border-bottom:1px solid var(--line);padding:6px 8px}
td{border-bottom:1px solid var(--line);padding:7px 8px;vertical-align:top}
td.t{white-space:nowrap;color:var(--muted)}
td.msg{color:#9b2323}
.svc{background:#eef0f3;border-radius:6px;padding:1px 7px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.empty{color:var(--muted)}
footer{color:var(--muted);font-size:12px;margin-top:8px}
@media (max-width:900px){.grid{grid-template-columns:1fr}.kpis{grid-template-columns:repeat(3,1fr)}}
@media print{body{background:#fff}.card,.kpi{break-inside:avoid}}
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>{title}</title>
<style>{css}</style>
</head>
<body><main>
{body}
</main></body>
</html>
"""
