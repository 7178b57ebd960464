"""``mvct-guide demo``: the service on embedded defaults, demo users, the sample fraction.

Serves with uvicorn in the main thread; a helper thread waits until the workers are warm, posts
the sample fraction through the real HTTP API (as a console would), prints the couch correction
and the review URL, and — with ``--exit-after-demo`` — stops the server again.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import Settings, is_loopback, plain_http_refusal
from app.db import repository as repo
from app.db.models import Role
from app.services.accounts import add_user, create_api_key, revoke_api_key, set_password
from app.services.security import new_password

DEMO_DATA_DIR = "mvct-guide-demo"  #: unless --data-dir or MVCT_GUIDE_DATA_DIR says otherwise
DEMO_PATIENT_ID = "DEMO-001"
DEMO_USERS = (
    ("demo-physician", Role.PHYSICIAN, "Dr Demo Physician"),
    ("demo-therapist", Role.THERAPIST, "Demo Therapist"),
    ("demo-physicist", Role.PHYSICIST, "Demo Physicist"),
    ("demo-admin", Role.ADMIN, "Demo Administrator"),
)
DEMO_KEY_NAME = "demo-console"
ACTOR = "cli:demo"


@dataclass
class DemoOutcome:
    exit_code: int = 1
    lines: list[str] = field(default_factory=list)


def default_samples_dir() -> Path | None:
    for candidate in (
        Path.cwd() / "sample_images",
        Path(__file__).resolve().parents[1] / "sample_images",
    ):
        if (candidate / "planning").is_dir() and (candidate / "mvct").is_dir():
            return candidate
    return None


def create_demo_accounts(settings: Settings) -> tuple[dict[str, str], str]:
    """(username → fresh password, console API key); reruns reset both."""
    from app.lifecycle import build_context, prepare_storage

    ctx = build_context(settings)
    prepare_storage(ctx)
    passwords: dict[str, str] = {}
    with ctx.writer.begin() as session:
        for username, role, full_name in DEMO_USERS:
            password = new_password()
            if repo.user_by_username(session, username) is None:
                add_user(session, username, role, full_name, password, ACTOR)
            else:
                set_password(session, username, password, ACTOR)
            passwords[username] = password
        if repo.api_key_by_name(session, DEMO_KEY_NAME) is not None:
            revoke_api_key(session, DEMO_KEY_NAME, ACTOR)
        key = create_api_key(session, DEMO_KEY_NAME, Role.CONSOLE, ACTOR)
    ctx.engine.dispose()
    return passwords, key


def run_demo(
    settings: Settings, host: str, port: int, samples: str | None, exit_after: bool
) -> int:
    import uvicorn

    from app.main import create_app

    samples_dir = Path(samples) if samples else default_samples_dir()
    if samples_dir is None or not (samples_dir / "mvct").is_dir():
        print(
            "mvct-guide: no sample images found (a folder with planning/ and mvct/); "
            "give --samples",
            file=sys.stderr,
        )
        return 2
    if is_loopback(host) and "MVCT_GUIDE_COOKIE_SECURE" not in os.environ:
        settings = settings.model_copy(update={"cookie_secure": False})  # plain HTTP, said here
    if "MVCT_GUIDE_PUBLIC_DOCS" not in os.environ:
        settings = settings.model_copy(update={"public_docs": True})
    refusal = plain_http_refusal(settings, host)
    if refusal is not None:
        print(f"mvct-guide: {refusal}", file=sys.stderr)
        return 2
    passwords, key = create_demo_accounts(settings)
    print(f"mvct-guide demo: data in {settings.data_dir.resolve()}")
    print(f"  console API key ({DEMO_KEY_NAME}): {key}")
    for username, role, _ in DEMO_USERS:
        print(f"  user {username:<16} password {passwords[username]:<20} role {role.value}")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host=host, port=port, log_level="warning", proxy_headers=False
        )
    )
    outcome = DemoOutcome()
    helper = threading.Thread(
        target=_post_sample, args=(server, key, samples_dir, exit_after, outcome), daemon=True
    )
    helper.start()
    server.run()
    helper.join(timeout=5)
    return outcome.exit_code


def _post_sample(
    server: Any, key: str, samples: Path, exit_after: bool, outcome: DemoOutcome
) -> None:
    try:
        base = _wait_started(server)
        print(f"mvct-guide demo: serving on {base} (API docs at {base}/docs); warming workers…")
        _wait_ready(base)
        status, body = _post_fraction(base, key, samples)
        if status >= 400:
            print(
                f"mvct-guide demo: the sample fraction was refused ({status}): {body.get('detail')}"
            )
            outcome.exit_code = 1
        else:
            print(format_correction(body, _truth(samples).get("expected_couch_correction")))
            print(
                f"Review and sign in the browser: {body.get('review_url')} (sign in as "
                "demo-physician with the password printed above; worklist at "
                f"{base}/worklist)"
            )
            outcome.exit_code = 0 if body.get("status") == "done" else 1
        if not exit_after:
            print("mvct-guide demo: still serving; press Ctrl-C to stop")
    except Exception as exc:  # report and stop; never leave a silent hung demo
        print(f"mvct-guide demo: failed: {exc}", file=sys.stderr)
        outcome.exit_code = 1
        exit_after = True
    if exit_after:
        server.should_exit = True


def _wait_started(server: Any, timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or server.should_exit:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://{host}:{port}"


def _wait_ready(base: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the registration workers did not become ready")


def _post_fraction(base: str, key: str, samples: Path) -> tuple[int, dict[str, Any]]:
    mvct_files = sorted(p for p in (samples / "mvct").rglob("*") if p.is_file())
    fields: list[tuple[str, str | tuple[str, bytes]]] = [
        ("patient_id", _patient_id(mvct_files) or DEMO_PATIENT_ID)
    ]
    # the planning package of the samples: the RT Plan gives the isocentre, the structures show
    # on the review page (the sample objects are UNAPPROVED: synthetic, never clinically approved)
    package = [(name, samples / f"{name}.dcm") for name in ("rtstruct", "rtplan")]
    for name, path in package:
        if path.is_file():
            fields.append((name, (path.name, path.read_bytes())))
    isocenter = _sample_isocenter(samples)
    if isocenter and not (samples / "rtplan.dcm").is_file():
        fields.append(("isocenter", isocenter))
    for name in ("planning", "mvct"):
        for path in sorted(p for p in (samples / name).rglob("*") if p.is_file()):
            if path.name.lower() in ("readme.md", "readme.txt", "motion.json"):
                continue
            fields.append((name, (path.name, path.read_bytes())))
    body, content_type = encode_multipart(fields)
    request = urllib.request.Request(
        f"{base}/api/v1/fractions",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "X-API-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"detail": body.decode("utf-8", "replace")[:500]}
    return value if isinstance(value, dict) else {"detail": str(value)}


def _patient_id(files: list[Path]) -> str | None:
    from pydicom import dcmread

    for path in files:
        try:
            return str(dcmread(path, stop_before_pixels=True).get("PatientID", "")) or None
        except Exception:
            continue
    return None


def _sample_isocenter(samples: Path) -> str | None:
    """The plan isocentre from ``isocenter.txt`` or ``truth.json`` beside the samples."""
    text_file = samples / "isocenter.txt"
    if text_file.is_file():
        return text_file.read_text().strip() or None
    iso = _truth(samples).get("isocenter_lps_mm")
    if isinstance(iso, list) and len(iso) == 3:
        return ",".join(str(float(v)) for v in iso)
    return None


def _truth(samples: Path) -> dict[str, Any]:
    """``truth.json`` of the sample images: the known motion and the expected correction."""
    path = samples / "truth.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def encode_multipart(fields: list[tuple[str, str | tuple[str, bytes]]]) -> tuple[bytes, str]:
    boundary = f"mvct-guide-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields:
        if isinstance(value, str):
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            parts.append(f"--{boundary}\r\n{head}".encode() + value.encode() + b"\r\n")
        else:
            filename, data = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/dicom\r\n\r\n"
            )
            parts.append(f"--{boundary}\r\n{head}".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def format_correction(fraction: dict[str, Any], expected: Any = None) -> str:
    """The couch correction as a table; ``expected`` (same keys) adds the known answer."""
    couch = fraction.get("couch_correction") or {}
    rows = [
        ("lateral (X)", couch.get("lateral_mm"), "mm"),
        ("longitudinal (Y)", couch.get("longitudinal_mm"), "mm"),
        ("vertical (Z)", couch.get("vertical_mm"), "mm"),
        ("pitch", couch.get("pitch_deg"), "°"),
        ("roll", couch.get("roll_deg"), "°"),
        ("yaw", couch.get("yaw_deg"), "°"),
    ]
    lines = [
        f"Fraction {fraction.get('id')} (number {fraction.get('fraction_number')}) of patient "
        f"{fraction.get('patient_id')}: {fraction.get('status')}",
        f"Couch correction, IEC 61217 table axes, dof {fraction.get('dof')}, "
        f"mode {fraction.get('mode')}:",
    ]
    known = expected if isinstance(expected, dict) else {}
    keys = ("lateral_mm", "longitudinal_mm", "vertical_mm", "pitch_deg", "roll_deg", "yaw_deg")
    if known:
        lines.append(f"  {'':<17}{'found':>10}   {'known motion':>12}")
    for (label, value, unit), key in zip(rows, keys, strict=True):
        shown = "—" if value is None else f"{value:+8.2f} {unit}"
        if known.get(key) is not None:
            shown += f"   {float(known[key]):+8.2f} {unit}"
        lines.append(f"  {label:<17}{shown}")
    trusted = {True: "yes", False: "NO — look before moving the couch", None: "—"}
    lines.append(f"  trusted          {trusted[fraction.get('trusted')]}")
    lines.append(
        f"  beyond the {fraction.get('margin_mm')} mm PTV margin: "
        f"{'YES' if fraction.get('exceeds_margin') else 'no'}"
    )
    if fraction.get("isocenter_source"):
        iso = fraction.get("isocenter_lps_mm") or []
        lines.append(
            f"  isocentre        {', '.join(f'{v:.1f}' for v in iso)} mm LPS, "
            f"from {fraction['isocenter_source']}"
        )
    for residual in fraction.get("residuals") or []:
        lines.append(
            f"  left at {residual['structure']:<16} max {residual['max_mm']:.1f} mm, "
            f"95 % {residual['p95_mm']:.1f} mm"
        )
    for warning in fraction.get("warnings") or []:
        lines.append(f"  warning: {warning}")
    lines.append(f"Review: {fraction.get('review_url')}")
    return "\n".join(lines)
