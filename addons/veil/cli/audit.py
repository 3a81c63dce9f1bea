"""`veil audit ...`: read, search, check and summarise the audit trail.

tail     the latest decisions, one line each (-f: keep following)
query    search by time, service, user, verdict, rule, finding (--json for records)
find     was this image, or a resized / re-encoded copy of it, uploaded?
verify   is the hash chain intact in both stores, and do they agree?
report   one self-contained HTML page with charts
show     one decision in full; --extract decrypts its quarantined images
keygen   make a seal key or a quarantine key pair
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from veil.audit import describe
from veil.audit.files import Layout, follow, last_records
from veil.audit.record import VERDICTS
from veil.findings import FINDING_KINDS

DEFAULT_AUDIT = "audit"
IMAGE_SUFFIX = {"jpeg": ".jpg", "png": ".png", "gif": ".gif", "webp": ".webp", "heic": ".heic"}


def add_parser(commands) -> None:
    p = commands.add_parser(
        "audit",
        help="read, search, verify and summarise the audit trail",
        description=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    _add_tail(sub)
    _add_query(sub)
    _add_find(sub)
    _add_verify(sub)
    _add_report(sub)
    _add_show(sub)
    _add_keygen(sub)


def _audit_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--audit",
        default=DEFAULT_AUDIT,
        metavar="DIR",
        help="directory of the audit trail (default: audit/, as for veil run)",
    )


def _add_tail(sub) -> None:
    p = sub.add_parser("tail", help="the latest decisions, one line each")
    _audit_dir(p)
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many records (default 20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument("--json", action="store_true", help="the records as JSON lines")
    p.set_defaults(handler=handle_tail)


def _add_query(sub) -> None:
    p = sub.add_parser(
        "query",
        help="search the trail",
        description="Search the trail. Filters combine (all must hold); a filter given twice "
        "means either value. Times: 2025-03-01, 2025-03-01T14:00, today, yesterday, or an "
        "age such as 30m, 2h, 7d.",
    )
    _audit_dir(p)
    p.add_argument("--since", metavar="TIME", help="records at or after TIME")
    p.add_argument("--until", metavar="TIME", help="records before TIME")
    p.add_argument("--service", action="append", default=[], metavar="ID", help="e.g. chatgpt")
    p.add_argument("--user", action="append", default=[], metavar="NAME")
    p.add_argument("--verdict", action="append", default=[], choices=VERDICTS)
    p.add_argument("--rule", action="append", default=[], metavar="NAME")
    p.add_argument(
        "--finding",
        action="append",
        default=[],
        metavar="KIND",
        help="an image carried this: gps, faces, serial, person_names, thumbnail, ...",
    )
    p.add_argument("--client", action="append", default=[], metavar="ADDRESS")
    p.add_argument("--decision", metavar="ID", help="a decision id (or its first characters)")
    p.add_argument("--no-events", action="store_true", help="upload decisions only")
    p.add_argument("--limit", type=int, metavar="N", help="only the newest N")
    p.add_argument("--json", action="store_true", help="the records as JSON lines")
    p.set_defaults(handler=handle_query)


def _add_find(sub) -> None:
    p = sub.add_parser(
        "find",
        help="was this image (or a resized / re-encoded copy) uploaded?",
        description="Look for uploads of these images: the same file by sha256, or the same "
        "picture resized or re-encoded by perceptual hash. Exit 0 when found, 1 when not.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _audit_dir(p)
    p.add_argument(
        "--threshold",
        type=int,
        default=None,
        metavar="BITS",
        help="how many of the 64 perceptual-hash bits may differ (default 10)",
    )
    p.add_argument("--json", action="store_true", help="matches as JSON lines")
    p.set_defaults(handler=handle_find)


def _add_verify(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check the hash chain in both stores",
        description="Check the hash chain in the JSON-lines files and in the database, and "
        "that both hold the same records. Exit 0: intact; 1: a record was altered, removed "
        "or reordered (the first one is named); 2: sealed records could not be checked "
        "because their key was not given.",
    )
    _audit_dir(p)
    _seal_keys(p)
    p.set_defaults(handler=handle_verify)


def _seal_keys(p) -> None:
    p.add_argument(
        "--seal-key",
        action="append",
        default=[],
        metavar="FILE",
        help="the key the trail is sealed with (repeat for keys used earlier)",
    )


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page with charts")
    _audit_dir(p)
    p.add_argument("--html", required=True, metavar="OUT.html", help="where to write the page")
    p.add_argument("--since", metavar="TIME", help="from TIME (default: the whole trail)")
    p.add_argument("--until", metavar="TIME", help="until TIME")
    p.add_argument("--title", default="Veil: images sent to AI services", help="page title")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the integrity check shown on the page (it reads the whole trail)",
    )
    _seal_keys(p)
    p.set_defaults(handler=handle_report)


def _add_show(sub) -> None:
    p = sub.add_parser("show", help="one decision in full")
    p.add_argument("decision", metavar="DECISION_ID", help="the id (or its first characters)")
    _audit_dir(p)
    p.add_argument(
        "--extract", action="store_true", help="decrypt its quarantined images (needs --key)"
    )
    p.add_argument("--key", metavar="FILE", help="the quarantine private key")
    p.add_argument("--out", default=".", metavar="DIR", help="where --extract writes (default .)")
    p.set_defaults(handler=handle_show)


def _add_keygen(sub) -> None:
    p = sub.add_parser(
        "keygen",
        help="make a seal key or a quarantine key pair",
        description="seal: a random key for 'veil run --audit-seal-key' (keep a copy where "
        "the trail is verified). quarantine: OUT (private, for 'veil audit show --extract', "
        "keep it off the proxy) and OUT.pub (for 'veil run --quarantine-key').",
    )
    p.add_argument("kind", choices=("seal", "quarantine"))
    p.add_argument("out", metavar="OUT")
    p.set_defaults(handler=handle_keygen)


# Handlers.


def handle_tail(args: argparse.Namespace) -> int:
    layout = _existing(args.audit)
    if layout is None:
        return 2
    colour = sys.stdout.isatty() and not args.json
    for record in last_records(layout, args.n) if args.n > 0 else []:
        _print_record(record, args.json, colour)
    if not args.follow:
        return 0
    try:
        for record in follow(layout):
            _print_record(record, args.json, colour)
    except KeyboardInterrupt:
        pass
    return 0


def handle_query(args: argparse.Namespace) -> int:
    from veil.audit.query import Filters, QueryError, parse_when, query

    unknown = [k for k in args.finding if k not in FINDING_KINDS]
    if unknown:
        return _fail(f"unknown finding {unknown[0]!r}; one of: {', '.join(sorted(FINDING_KINDS))}")
    try:
        filters = Filters(
            since=parse_when(args.since) if args.since else None,
            until=parse_when(args.until) if args.until else None,
            services=args.service,
            users=args.user,
            verdicts=args.verdict,
            rules=args.rule,
            findings=args.finding,
            clients=args.client,
            decision=args.decision,
            events=not args.no_events,
            limit=args.limit,
        )
        records = query(Path(args.audit), filters)
    except QueryError as exc:
        return _fail(str(exc))
    colour = sys.stdout.isatty() and not args.json
    for record in records:
        _print_record(record, args.json, colour)
    if not args.json:
        print(f"{len(records)} record(s)", file=sys.stderr)
    return 0


def handle_find(args: argparse.Namespace) -> int:
    from veil.audit.phash import SIMILAR
    from veil.audit.query import QueryError, find

    found_any = False
    for name in args.images:
        try:
            data = Path(name).read_bytes()
            matches = find(Path(args.audit), data, args.threshold or SIMILAR)
        except OSError as exc:
            return _fail(f"cannot read {name}: {exc.strerror}")
        except QueryError as exc:
            return _fail(str(exc))
        found_any = found_any or bool(matches)
        for match in matches:
            if args.json:
                print(
                    json.dumps(
                        {
                            "image": name,
                            "how": match.how,
                            "distance": match.distance,
                            "image_index": match.image,
                            "record": match.record,
                        }
                    )
                )
            else:
                how = (
                    match.how
                    if match.how != "similar"
                    else (f"similar ({match.distance} of 64 bits differ)")
                )
                print(f"{name}: {how}\n  {describe.line(match.record)}")
        if not matches and not args.json:
            print(f"{name}: not found in the audit trail")
    return 0 if found_any else 1


def handle_verify(args: argparse.Namespace) -> int:
    from veil.audit.log import read_seal_key
    from veil.audit.verify import verify

    layout = _existing(args.audit)
    if layout is None:
        return 2
    try:
        keys = [read_seal_key(path) for path in args.seal_key]
    except ValueError as exc:
        return _fail(str(exc))
    result = verify(layout.directory, keys)
    for note in result.files.notes + result.database.notes:
        print(f"note: {note}")
    if not result.ok:
        problems = result.problems
        print(f"FAILED: {len(problems)} problem(s) in the audit trail in {layout.directory}")
        for problem in problems[:20]:
            print(f"  {problem}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        return 1
    files, db = result.files, result.database
    print(f"audit.jsonl: {files.count} record(s) in {result.file_count} file(s), chain intact")
    print(f"audit.sqlite3: {db.count} record(s), chain intact, every column matches its record")
    if files.head is not None:
        head = files.head.record
        print(f"head: record #{files.head.seq} {head.get('ts')} hash {head.get('hash')}")
    if result.unverifiable:
        print(
            f"NOT CHECKED: {result.unverifiable} sealed record(s); give their key with "
            "--seal-key FILE to check their contents"
        )
        return 2
    print("OK: both stores hold the same intact chain")
    return 0


def handle_report(args: argparse.Namespace) -> int:
    from veil.audit.log import read_seal_key
    from veil.audit.query import QueryError, parse_when
    from veil.audit.report import write_report

    try:
        keys = [read_seal_key(path) for path in args.seal_key]
        since = parse_when(args.since) if args.since else None
        until = parse_when(args.until) if args.until else None
        summary = write_report(
            Path(args.audit),
            Path(args.html),
            args.title,
            since,
            until,
            check_integrity=not args.no_verify,
            seal_keys=keys,
        )
    except (QueryError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write {args.html}: {exc.strerror}")
    print(f"wrote {args.html}: {summary}")
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from veil.audit.quarantine import QuarantineError, extract, load_private_key
    from veil.audit.query import QueryError, record_by_decision

    try:
        record = record_by_decision(Path(args.audit), args.decision)
    except QueryError as exc:
        return _fail(str(exc))
    if record is None:
        return _fail(f"no decision {args.decision!r} in {args.audit} (see 'veil audit query')")
    if not args.extract:
        print(json.dumps(record, indent=2, ensure_ascii=False))
        if record.get("quarantine"):
            count = len(record["quarantine"])
            print(
                f"\n{count} quarantined image(s): decrypt with --extract --key FILE",
                file=sys.stderr,
            )
        return 0
    if not args.key:
        return _fail("--extract needs the quarantine private key: --key FILE")
    if not record.get("quarantine"):
        return _fail(f"decision {record['decision_id']} has no quarantined images")
    try:
        images = extract(Layout(Path(args.audit)).quarantine, record, load_private_key(args.key))
    except QuarantineError as exc:
        return _fail(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    formats = [i.get("format") for i in record.get("images") or []]
    for index, (name, data) in enumerate(images):
        fmt = formats[index] if index < len(formats) else None
        path = out / f"{name}{IMAGE_SUFFIX.get(str(fmt), '.bin')}"
        try:
            with path.open("xb") as f:
                f.write(data)
        except FileExistsError:
            return _fail(f"{path} exists; choose another --out directory")
        print(f"{path}  ({len(data)} bytes, sha256 matches the record)")
    return 0


def handle_keygen(args: argparse.Namespace) -> int:
    from veil.audit.quarantine import generate_keypair

    out = Path(args.out)
    if args.kind == "seal":
        written = [_write_new(out, os.urandom(32).hex().encode() + b"\n", 0o600)]
    else:
        private, public = generate_keypair()
        written = [
            _write_new(out, private, 0o600),
            _write_new(out.with_name(out.name + ".pub"), public, 0o644),
        ]
    if None in written:
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


# Helpers.


def _write_new(path: Path, data: bytes, mode: int) -> Path | None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        _fail(f"{path} exists; keys are never overwritten (remove it or choose another name)")
        return None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _existing(directory: str) -> Layout | None:
    layout = Layout(Path(directory))
    if not layout.directory.is_dir():
        _fail(f"no audit trail at {directory} (give its directory with --audit DIR)")
        return None
    return layout


def _print_record(record: dict, as_json: bool, colour: bool) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
    else:
        print(describe.line(record, colour), flush=True)


def _fail(message: str) -> int:
    print(f"veil audit: {message}", file=sys.stderr)
    return 2
