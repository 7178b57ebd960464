"""``mvct-guide report``: write a period's set-up error report to files (physicists).

Reads the database named by ``--database-url`` / ``--data-dir`` or the ``MVCT_GUIDE_*``
environment, like the other commands, but never creates or migrates it: a report of a database
that is not there would be a misleading empty report. Writes one file per format into ``--out``,
named after the period (``setup-errors_2026-W48_signed.pdf``), prints their paths on stdout and
its progress on stderr. Exit status: 0 written, 2 bad input (a message, never a traceback).

The progress indicator is a small stderr line, not a dependency such as tqdm: an export is at
most eight coarse steps (query, statistics, figures, one per file) whose slow ones are single
calls with nothing to tick inside, so a rate or an ETA would say nothing more. On a terminal the
line is redrawn in place; in a log it is one line per step.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from app.cli import EXIT_BAD_INPUT, EXIT_OK

ALL = "all"
#: :data:`app.services.reports.export.FORMATS`, spelled out so that building the parser imports
#: no renderer
FORMATS = ("json", "csv", "xlsx", "pdf", "html")


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    from registration.stats_records import ShiftSource

    report = sub.add_parser(
        "report",
        help="write a period's set-up error statistics (CSV, XLSX, PDF, HTML, JSON)",
        description="Set-up error statistics of a period for the physicists: per patient, "
        "population (M, Σ, σ, van Herk and Stroom margins), early warnings. Days are UTC.",
    )
    period = report.add_argument_group("period (give one)")
    period.add_argument("--week", help="ISO week YYYY-Www, e.g. 2026-W48")
    period.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (with --to)")
    period.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day (with --from)")
    period.add_argument("--since", metavar="YYYY-MM-DD", help="cumulative, up to today")
    report.add_argument("--out", required=True, type=Path, help="folder to write the files into")
    report.add_argument("--format", default=ALL, choices=[ALL, *FORMATS], help="default: all")
    report.add_argument("--site", help="only courses of this site (exact match)")
    report.add_argument(
        "--source",
        default=ShiftSource.SIGNED.value,
        choices=[s.value for s in ShiftSource],
        help="which shift counts (default: signed)",
    )
    report.add_argument(
        "--margin-mm", type=float, help="margin in use (default: the courses' PTV margin)"
    )
    report.add_argument("--quiet", action="store_true", help="no progress on stderr")
    report.add_argument(
        "--data-dir", help="the embedded database's folder (env MVCT_GUIDE_DATA_DIR)"
    )
    report.add_argument("--database-url", help="database URL (env MVCT_GUIDE_DATABASE_URL)")
    report.set_defaults(handler=_report)


class Progress:
    """``[###·····] 3/8 writing the PDF`` on stderr; silent when ``quiet``."""

    WIDTH = 20

    def __init__(self, total: int, quiet: bool, stream: TextIO | None = None) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        if self.quiet:
            return
        filled = round(self.WIDTH * self.done / self.total)
        bar = "#" * filled + "·" * (self.WIDTH - filled)
        line = f"mvct-guide report [{bar}] {self.done}/{self.total} {what}"
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write(f"\r\x1b[2K{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _fail(message: str) -> int:
    print(f"mvct-guide: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def _check_database(ctx: Any) -> str | None:
    """Why the database cannot be read, or None when it is there and at the latest revision."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db import migrate
    from app.db.engine import is_sqlite

    url = ctx.settings.resolved_database_url()
    shown = ctx.engine.url.render_as_string(hide_password=True)
    where = "check --data-dir / --database-url (or MVCT_GUIDE_DATA_DIR / MVCT_GUIDE_DATABASE_URL)"
    if is_sqlite(url):
        path = ctx.engine.url.database
        if not path or not Path(path).is_file():
            return f"there is no database at {path or shown}: {where}"
    try:
        current = migrate.current_revision(ctx.engine)
    except SQLAlchemyError as error:
        return f"cannot read the database {shown} ({type(error).__name__}): {where}"
    head = migrate.head_revision()
    if current is None:
        return f"{shown} is not an mvct-guide database (no schema): {where}"
    if current != head:
        return (
            f"the database is at revision {current}, this version reads {head}: run "
            "`mvct-guide db upgrade` first"
        )
    return None


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def _report(args: argparse.Namespace) -> int:
    from app.cli.service import settings_from
    from app.lifecycle import build_context
    from app.services.reports import ReportInputError, render_figures
    from app.services.reports.export import ParameterNames, file_name, parse_period
    from app.services.reports.export import render as render_format
    from app.services.reports.query import ReportRequest, build, select_rows
    from registration.stats import ShiftSource

    now = datetime.datetime.now(datetime.UTC)
    formats = list(FORMATS) if args.format == ALL else [args.format]
    margin_mm = args.margin_mm
    if margin_mm is not None and not (math.isfinite(margin_mm) and 0 < margin_mm <= 50):
        return _fail(f"--margin-mm {margin_mm:g}: give the PTV margin in mm, above 0 and up to 50")
    try:
        period = parse_period(
            week=args.week,
            start=args.start,
            end=args.end,
            since=args.since,
            today=now.date(),
            names=ParameterNames("--week", "--from", "--to", "--since", " "),
        )
    except ReportInputError as error:
        return _fail(str(error))
    request = ReportRequest(period, args.site or None, ShiftSource(args.source), margin_mm)
    if args.out.exists() and not args.out.is_dir():
        return _fail(f"--out {args.out} is a file: give a folder")
    ctx = build_context(settings_from(args))
    try:
        problem = _check_database(ctx)
        if problem:
            return _fail(problem)
        drawn = [f for f in formats if f in ("pdf", "html")]
        progress = Progress(2 + bool(drawn) + len(formats), args.quiet)
        with ctx.sessions() as session:
            selection = select_rows(session, request)
        progress.step(f"read {len(selection.rows)} fractions")
        report = build(
            request,
            selection,
            generated_at=now,
            generated_by=_actor(),
            default_margin_mm=ctx.settings.default_ptv_margin_mm,
        )
        progress.step("statistics")
        figures = None
        if drawn:
            figures = render_figures(report)
            progress.step("figures")
        args.out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = args.out / file_name(report, fmt)
            _write(path, render_format(report, fmt, figures))
            progress.step(f"wrote {path.name}")
            print(path)
    except ReportInputError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write into {args.out}: {error.strerror or error}")
    finally:
        ctx.engine.dispose()
    stats = report.statistics
    print(
        f"mvct-guide: {report.context.period.description}: {stats.n_fractions} fraction(s) of "
        f"{stats.n_patients} patient(s) counted, {len(report.rows)} listed; "
        f"{len(formats)} file(s) in {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK
