"""Subcommands of the service: ``serve``, ``worker``, ``demo``, ``users``, ``api-keys``, ``db``.

Every command reads the ``MVCT_GUIDE_*`` environment (see :class:`app.config.Settings`); the
flags ``--data-dir``, ``--database-url`` (and ``--workers`` for servers) override it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from app.db.models import Role

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    serve = sub.add_parser("serve", help="run the HTTP service (console API)")
    _storage_flags(serve)
    _server_flags(serve, default_port=8000)
    serve.add_argument(
        "--dicom-port", type=int, help="start the DICOM C-STORE SCP (env MVCT_GUIDE_DICOM_PORT)"
    )
    serve.add_argument("--dicom-host", help="its address (env MVCT_GUIDE_DICOM_HOST, 127.0.0.1)")
    serve.add_argument("--dicom-ae-title", help="its AE title (env MVCT_GUIDE_DICOM_AE_TITLE)")
    serve.set_defaults(handler=_serve)

    worker = sub.add_parser(
        "worker",
        help="run registration workers for the queue (MVCT_GUIDE_QUEUE=celery, scale-out mode)",
    )
    _storage_flags(worker)
    worker.add_argument(
        "--broker-url", help="e.g. redis://127.0.0.1:6379/0 (env MVCT_GUIDE_BROKER_URL)"
    )
    worker.add_argument(
        "--workers", type=int, help="registration processes on this host (env MVCT_GUIDE_WORKERS)"
    )
    worker.set_defaults(handler=_worker)

    demo = sub.add_parser(
        "demo",
        help="serve on embedded defaults with demo users and register the sample fraction",
    )
    _storage_flags(demo)
    _server_flags(demo, default_port=8000)
    demo.add_argument(
        "--samples",
        help="folder with planning/ and mvct/ series (default: sample_images/ of the project)",
    )
    demo.add_argument(
        "--exit-after-demo",
        "--no-serve",
        dest="exit_after_demo",
        action="store_true",
        help="stop once the sample fraction is registered and printed",
    )
    demo.set_defaults(handler=_demo)

    users = sub.add_parser("users", help="manage people who use the service").add_subparsers(
        dest="users_command", required=True, metavar="ACTION"
    )
    add = users.add_parser("add", help="add a user (password read from standard input)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--full-name", required=True)
    _storage_flags(add)
    add.set_defaults(handler=_users_add)
    passwd = users.add_parser("set-password", help="set a user's password (from stdin)")
    passwd.add_argument("username")
    _storage_flags(passwd)
    passwd.set_defaults(handler=_users_set_password)
    for name, text in (
        ("deactivate", "stop a user signing in or signing, and end their open sessions"),
        ("reactivate", "let a deactivated user sign in again"),
    ):
        switch = users.add_parser(name, help=text)
        switch.add_argument("username")
        _storage_flags(switch)
        switch.set_defaults(handler=_users_set_active, active=name == "reactivate")
    listing = users.add_parser("list", help="list users (and who is locked out of sign-in)")
    _storage_flags(listing)
    listing.set_defaults(handler=_users_list)

    keys = sub.add_parser("api-keys", help="manage API keys (consoles)").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.add_argument("--role", default=Role.CONSOLE.value, choices=[r.value for r in Role])
    _storage_flags(create)
    create.set_defaults(handler=_keys_create)
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("name")
    _storage_flags(revoke)
    revoke.set_defaults(handler=_keys_revoke)
    klist = keys.add_parser("list", help="list keys (never the keys themselves)")
    _storage_flags(klist)
    klist.set_defaults(handler=_keys_list)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    upgrade = db.add_parser("upgrade", help="create or migrate the database to the latest schema")
    _storage_flags(upgrade)
    upgrade.set_defaults(handler=_db_upgrade)


def _storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="images and the embedded database (env MVCT_GUIDE_DATA_DIR)",
    )
    parser.add_argument(
        "--database-url", help="e.g. postgresql+psycopg://... (env MVCT_GUIDE_DATABASE_URL)"
    )


def _server_flags(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument(
        "--workers", type=int, help="registration worker processes (env MVCT_GUIDE_WORKERS)"
    )


def settings_from(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from app.config import Settings

    overrides: dict[str, Any] = {}
    names = ("data_dir", "database_url", "workers", "broker_url")
    for name in (*names, "dicom_port", "dicom_host", "dicom_ae_title"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(  # noqa: B904 - the message is all the user needs
            _fail(f"invalid setting: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        )


def _fail(message: str) -> int:
    print(f"mvct-guide: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.config import plain_http_refusal
    from app.dicom import DicomError
    from app.main import create_app

    settings = settings_from(args)
    refusal = plain_http_refusal(settings, args.host)
    if refusal is not None:
        return _fail(refusal)
    try:
        app = create_app(settings)
    except DicomError as exc:
        return _fail(str(exc))
    print(f"mvct-guide: serving on http://{args.host}:{args.port} (data in {settings.data_dir})")
    if settings.dicom_port:
        print(
            f"mvct-guide: DICOM SCP {settings.dicom_ae_title} on "
            f"{settings.dicom_host}:{settings.dicom_port}"
        )
    # X-Forwarded-For is read by the app, from MVCT_GUIDE_TRUSTED_PROXIES only (app/proxies.py)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.broker_url:
        return _fail("a worker needs a broker: set MVCT_GUIDE_BROKER_URL or --broker-url")
    settings = settings.model_copy(update={"queue": "celery"})
    from app.jobs.celery_app import run_worker

    print(
        f"mvct-guide: {settings.workers} registration worker(s) on the queue "
        f"(data in {settings.data_dir})",
        flush=True,
    )
    run_worker(settings, settings.workers)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from app.cli.demo import DEMO_DATA_DIR, run_demo

    if args.data_dir is None and not os.environ.get("MVCT_GUIDE_DATA_DIR"):
        args.data_dir = DEMO_DATA_DIR
    return run_demo(settings_from(args), args.host, args.port, args.samples, args.exit_after_demo)


def _session(args: argparse.Namespace) -> Any:
    from app.db import migrate, record_chain
    from app.lifecycle import build_context

    ctx = build_context(settings_from(args))
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(ctx.engine)
    record_chain.link_unlinked_rows(ctx.writer)
    return ctx


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _users_add(args: argparse.Namespace) -> int:
    from app.services.accounts import AccountError, add_user

    ctx = _session(args)
    try:
        password = _read_password()
        with ctx.writer.begin() as session:
            add_user(session, args.username, Role(args.role), args.full_name, password, _actor())
    except (AccountError, ValueError) as exc:
        return _fail(str(exc))
    print(f"user {args.username} added ({args.role})")
    return EXIT_OK


def _users_set_password(args: argparse.Namespace) -> int:
    from app.services.accounts import AccountError, set_password

    ctx = _session(args)
    try:
        password = _read_password()
        with ctx.writer.begin() as session:
            ended = set_password(session, args.username, password, _actor())
    except (AccountError, ValueError) as exc:
        return _fail(str(exc))
    print(f"password of {args.username} set; {ended} open session(s) ended")
    return EXIT_OK


def _users_set_active(args: argparse.Namespace) -> int:
    from app.services.accounts import AccountError, set_active

    ctx = _session(args)
    try:
        with ctx.writer.begin() as session:
            ended = set_active(session, args.username, args.active, _actor())
    except AccountError as exc:
        return _fail(str(exc))
    if args.active:
        print(f"user {args.username} reactivated")
    else:
        print(f"user {args.username} deactivated; {ended} open session(s) ended")
    return EXIT_OK


def _users_list(args: argparse.Namespace) -> int:
    from app.services.accounts import flush_sign_in_audit, list_users
    from app.services.ratelimit import locked_out_users

    ctx = _session(args)
    flush_sign_in_audit(ctx)  # refused sign-ins of past minutes, under the lock a service takes
    with ctx.sessions() as session:
        locked = locked_out_users(session, ctx.settings)
        for user in list_users(session):
            state = "" if user.active else "  (inactive)"
            if user.username in locked:
                state += f"  (sign-in locked out until {locked[user.username]:%H:%M} UTC)"
            print(f"{user.username:<24} {user.role:<10} {user.full_name}{state}")
    return EXIT_OK


def _keys_create(args: argparse.Namespace) -> int:
    from app.services.accounts import AccountError, create_api_key

    ctx = _session(args)
    try:
        with ctx.writer.begin() as session:
            key = create_api_key(session, args.name, Role(args.role), _actor())
    except AccountError as exc:
        return _fail(str(exc))
    print(key)
    print(
        f"API key {args.name!r} ({args.role}) created; it is shown only now. Send it in the "
        "X-API-Key header.",
        file=sys.stderr,
    )
    return EXIT_OK


def _keys_revoke(args: argparse.Namespace) -> int:
    from app.services.accounts import AccountError, revoke_api_key

    ctx = _session(args)
    try:
        with ctx.writer.begin() as session:
            revoke_api_key(session, args.name, _actor())
    except AccountError as exc:
        return _fail(str(exc))
    print(f"API key {args.name!r} revoked")
    return EXIT_OK


def _keys_list(args: argparse.Namespace) -> int:
    from app.services.accounts import list_api_keys

    with _session(args).sessions() as session:
        for key in list_api_keys(session):
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.name:<32} {key.role:<10} mvg_{key.key_prefix}_…  {state}")
    return EXIT_OK


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.db import migrate

    ctx = _session(args)
    print(f"database at revision {migrate.current_revision(ctx.engine)}")
    return EXIT_OK
