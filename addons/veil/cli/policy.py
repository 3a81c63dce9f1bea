"""`veil policy check FILE`: validate a policy file; problems name the file, line and value."""

from __future__ import annotations

import argparse
import sys

from veil.answer import duration
from veil.catalogue import Catalogue, CatalogueError
from veil.policy import Policy, PolicyError, load_policy


def add_parser(commands) -> None:
    p = commands.add_parser("policy", help="work with policy files")
    sub = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    check = sub.add_parser(
        "check",
        help="validate a policy file",
        description="Validate a policy file. Every problem is printed as FILE:LINE:COLUMN: what "
        "is wrong (got VALUE; expected ...); the exit status is 1 when there is any.",
    )
    check.add_argument("file", help="the policy file")
    check.add_argument("--services", help="service catalogue (default: the built-in catalogue)")
    check.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    check.set_defaults(handler=check_file)


def check_file(args: argparse.Namespace) -> int:
    try:
        catalogue = Catalogue.load(args.services)
        policy = load_policy(args.file, catalogue)
    except CatalogueError as exc:
        print(f"veil policy check: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem)
        count = len(exc.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(summary(policy, args.file))
    return 0


def summary(policy: Policy, path: str) -> str:
    lines = [f"{path}: OK, {len(policy.rules)} rule{'s' if len(policy.rules) != 1 else ''}"]
    for rule in policy.rules:
        given = rule.conditions.given()
        scope = ", ".join(given) if given else "everything"
        lines.append(f"  {rule.line:>4}  {rule.name}: {'+'.join(rule.actions)} ({scope})")
    if not policy.rules or not policy.rules[-1].is_catch_all:
        lines.append("        anything else: strip (the built-in default)")
    settings = policy.settings
    lines.append(
        f"  on_error {settings.on_error}, max_upload {_size(settings.max_upload)}, "
        f"coach_ttl {duration(settings.coach_ttl)}"
    )
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"
