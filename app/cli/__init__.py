"""The ``mvct-guide`` command line: one entry point, one module per group of subcommands.

Exit status: 0 success, 2 bad input (message on stderr, never a traceback), 3 result not trusted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_TRUSTED = 3


def build_parser() -> argparse.ArgumentParser:
    from app.cli import register as cli_register
    from app.cli import report as cli_report
    from app.cli import service as cli_service

    parser = argparse.ArgumentParser(
        prog="mvct-guide",
        description="Daily MVCT image guidance: register MVCT to the planning CT, "
        "compute the couch correction, serve the console API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_register.add_commands(sub)
    cli_service.add_commands(sub)
    cli_report.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
