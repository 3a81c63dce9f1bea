"""`veil policy check FILE`: validate a policy file; errors name the file, line and value."""

from __future__ import annotations

import argparse
import sys

from veil.policy import PolicyError, load_policy


def add_parser(commands) -> None:
    p = commands.add_parser("policy", help="work with policy files")
    sub = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("file", help="the policy file")
    check.set_defaults(handler=check_file)


def check_file(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.file}: OK ({len(policy.rules)} rules)")
    return 0
