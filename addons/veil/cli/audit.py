"""`veil audit ...`: read and check the audit trail."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veil.audit.record import GENESIS, chain_hash


def add_parser(commands) -> None:
    p = commands.add_parser("audit", help="read, search and verify the audit trail")
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    tail = sub.add_parser("tail", help="the latest decisions, one line each")
    tail.add_argument("--audit", default="audit", help="directory of the audit trail")
    tail.add_argument("-n", type=int, default=20, help="how many records")
    tail.set_defaults(handler=handle_tail)
    verify = sub.add_parser("verify", help="check the hash chain")
    verify.add_argument("--audit", default="audit", help="directory of the audit trail")
    verify.set_defaults(handler=handle_verify)


def _records(directory: Path) -> list[dict]:
    path = directory / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def handle_tail(args: argparse.Namespace) -> int:
    for r in _records(Path(args.audit))[-args.n :]:
        images = len(r.get("images") or [])
        print(
            f"{r['ts']} {r['verdict']:<11} {r.get('service')} {r.get('user') or '-'} "
            f"{r['method']} {r['host']}{r['path']} rule={r.get('rule')} images={images}"
        )
    return 0


def handle_verify(args: argparse.Namespace) -> int:
    prev = GENESIS
    records = _records(Path(args.audit))
    for n, record in enumerate(records, 1):
        if record.get("prev_hash") != prev or chain_hash(prev, record) != record.get("hash"):
            print(
                f"audit.jsonl record {n} ({record.get('decision_id')}) was altered, removed "
                "or reordered",
                file=sys.stderr,
            )
            return 1
        prev = record["hash"]
    print(f"OK: {len(records)} records, chain intact")
    return 0
