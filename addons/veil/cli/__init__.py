"""`veil`: the command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from veil import __version__
from veil.cli import audit, ca, pac, policy, run, scan

COMMANDS = (run, scan, policy, audit, ca, pac)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors say what to type instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        hint = f"Try '{self.prog} --help' for the options."
        self.exit(2, f"{self.prog}: error: {message}\n{hint}\n")


def build_parser() -> Parser:
    parser = Parser(
        prog="veil",
        description="Veil: decides what an image reveals before it reaches an AI service.",
    )
    parser.add_argument("--version", action="version", version=f"veil {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    args.passthrough = passthrough
    if passthrough and args.command != "run":
        build_parser().error("only 'veil run' takes arguments after '--' (for mitmproxy)")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
