"""``mvct-guide machine-profiles list|show NAME|set FILE``: the treatment machine profiles.

``list`` prints one line per profile (name, dof, machine names); ``show`` prints one profile as
JSON (the form of ``GET /api/v1/machine-profiles/{name}``'s ``profile``); ``set`` stores the
profile in a JSON file under its name (new or replacing), audited like the API's PUT. Reads the
database like ``mvct-guide report`` (``--data-dir`` / ``--database-url`` or the environment) and
never creates or migrates it. Exit status: 0 done, 2 bad input (a message, never a traceback).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from app.cli import EXIT_OK


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    command = sub.add_parser(
        "machine-profiles",
        help="list, show or set the treatment machine profiles (physicists)",
        description="What each treatment machine applies: axes, limits, tolerances, the "
        "StationName values it is matched by.",
    )
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = actions.add_parser("list", help="one line per profile")
    show = actions.add_parser("show", help="one profile as JSON")
    show.add_argument("name", help="the profile's name, e.g. 'TomoTherapy Hi·Art'")
    put = actions.add_parser("set", help="store the profile in FILE (JSON) under its name")
    put.add_argument("file", type=Path, help="a JSON file in the form `show` prints")
    for parser in (listed, show, put):
        parser.add_argument(
            "--data-dir", help="the embedded database's folder (env MVCT_GUIDE_DATA_DIR)"
        )
        parser.add_argument("--database-url", help="database URL (env MVCT_GUIDE_DATABASE_URL)")
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from app.cli.report import _actor, _check_database, _fail
    from app.cli.service import settings_from
    from app.errors import ServiceError
    from app.lifecycle import build_context
    from app.services.machines import all_profiles, get_profile, read_profile, set_profile

    profile_data: Any = None
    if args.action == "set":
        try:
            profile_data = json.loads(args.file.read_text(encoding="utf-8"))
        except OSError as exc:
            return _fail(f"cannot read {args.file}: {exc.strerror or exc}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _fail(f"{args.file} is not JSON: {exc}")
    ctx = build_context(settings_from(args))
    try:
        problem = _check_database(ctx)
        if problem:
            return _fail(problem)
        if args.action == "list":
            with ctx.sessions() as session:
                for row in all_profiles(session):
                    profile = row.machine_profile
                    names = ", ".join(profile.machine_names) or "-"
                    print(f"{profile.name}\tdof {int(profile.dof)}\tmachines: {names}")
        elif args.action == "show":
            with ctx.sessions() as session:
                profile = get_profile(session, args.name)
            print(json.dumps(profile.to_dict(), indent=2, ensure_ascii=False))
        else:
            profile = read_profile(profile_data)
            created = set_profile(ctx, profile, _actor())
            print(f"{'added' if created else 'stored'} machine profile {profile.name!r}")
    except ServiceError as exc:
        return _fail(exc.detail)
    finally:
        ctx.engine.dispose()
    return EXIT_OK
