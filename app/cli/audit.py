"""``mvct-guide audit verify``: check the record chain of signatures and audit events.

Exit status 0 when every link holds and every row has one, 1 when the chain is broken (the first
broken link is named on stderr), 2 on bad input (no database, no key).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_BROKEN = 1


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    from app.cli.service import _storage_flags

    audit = sub.add_parser("audit", help="check the audit trail").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    verify = audit.add_parser(
        "verify",
        help="check the record chain (MACs of every signature and audit event) end to end",
    )
    _storage_flags(verify)
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from app.cli.service import _fail, settings_from
    from app.db import migrate, record_chain
    from app.db.engine import make_engine, make_session_factory
    from app.record_key import RecordKeyError, record_key_for

    settings = settings_from(args)
    url = settings.resolved_database_url()
    if not settings.database_url and not (settings.data_dir / "mvct-guide.sqlite3").exists():
        return _fail(f"no database in {settings.data_dir}")
    try:
        key = record_key_for(settings)
    except (RecordKeyError, OSError) as exc:
        return _fail(f"cannot read the record key: {exc}")
    engine = make_engine(url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:
        if migrate.current_revision(engine) != migrate.head_revision():
            return _fail("the database is not at the latest schema: run `mvct-guide db upgrade`")
        with make_session_factory(engine)() as session:
            report = record_chain.verify_chain(session, key)
    finally:
        engine.dispose()
    if report.first_broken is not None:
        print(f"audit verify: BROKEN at {report.first_broken}", file=sys.stderr)
        print(f"{report.head_seq} link(s) before it hold", file=sys.stderr)
        return EXIT_BROKEN
    if report.unlinked:
        shown = ", ".join(report.unlinked[:10])
        more = f" and {len(report.unlinked) - 10} more" if len(report.unlinked) > 10 else ""
        print(
            f"audit verify: BROKEN: {len(report.unlinked)} row(s) have no link (written outside "
            f"the service): {shown}{more}",
            file=sys.stderr,
        )
        return EXIT_BROKEN
    print(f"audit verify: intact, {report.links} link(s); head {report.head_seq} {report.head_mac}")
    return EXIT_OK
