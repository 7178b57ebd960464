"""The record chain: a signature edited in the database file is found by ``audit verify``.

The attack of the report: with the database file and the ``sqlite3`` shell, drop the guard,
rewrite an approved −2.57 mm signature as +9.00 mm adjusted and recompute its SHA-256. The
SHA-256 then matches, so only a MAC keyed outside the database can tell.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import review_data
import service_fixtures as sf
from service_fixtures import TestClient, create_app
from sqlalchemy import func, select

from app.cli import main as cli_main
from app.db import record_chain, repository, signoff_repo
from app.db.models import AuditEvent, Fraction, Role
from app.db.models_chain import RecordLink
from app.db.models_signoff import Signoff

PASSWORD = "correct horse"


@pytest.fixture
def local(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sf.make_settings(tmp_path, sqlite_url))) as client:
        sf.add_person(client, "dr-who", Role.PHYSICIAN, PASSWORD)
        yield client


def ctx_of(client: TestClient) -> Any:
    return client.app.state.context  # type: ignore[attr-defined]


def database_file(client: TestClient) -> Path:
    return Path(ctx_of(client).engine.url.database)


def sqlite3(client: TestClient, sql: str) -> None:
    """What a person with the file does: the sqlite3 shell, none of the service's settings."""
    subprocess.run(["sqlite3", str(database_file(client))], input=sql, text=True, check=True)


def audit_verify(client: TestClient, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    settings = ctx_of(client).settings
    capsys.readouterr()
    code = cli_main(
        ["audit", "verify", "--data-dir", str(settings.data_dir), "--database-url",
         settings.database_url]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def signed_fraction(client: TestClient, series: sf.Samples) -> tuple[int, int]:
    ctx = ctx_of(client)
    body = review_data.post_fraction(
        client,
        review_data.console_key(ctx, "console-1"),
        series.mvcts[0],
        planning=series.planning,
        patient_id=sf.PATIENT_ID,
        isocenter=f"{series.isocenter.x_mm},{series.isocenter.y_mm},{series.isocenter.z_mm}",
    )
    result = review_data.known_result(
        series.motions[0], series.isocenter, review_data.PatientPosition.HFS
    )
    review_data.store_result(ctx, body["id"], result)
    signed = client.post(
        f"/api/v1/fractions/{body['id']}/signoff",
        json={"username": "dr-who", "password": PASSWORD, "decision": "approved"},
    )
    assert signed.status_code == 201, signed.text
    return int(body["id"]), int(signed.json()["id"])


def review_page(client: TestClient, fraction_id: int) -> str:
    form = client.get("/login")
    token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post(
        "/login",
        data={"username": "dr-who", "password": PASSWORD, "csrf_token": token, "next": "/"},
    )
    page = client.get(f"/review/{fraction_id}")
    assert page.status_code == 200, page.text
    return page.text


def test_a_signature_rewritten_in_the_database_file_fails_audit_verify_and_the_review_page(
    local: TestClient, series: sf.Samples, capsys: pytest.CaptureFixture[str]
) -> None:
    fraction_id, signoff_id = signed_fraction(local, series)
    assert audit_verify(local, capsys)[0] == 0
    assert "record verified" in review_page(local, fraction_id)

    sqlite3(
        local,
        "DROP TRIGGER signoffs_no_update;"
        "UPDATE signoffs SET decision = 'approved_adjusted', lateral_mm = 9.0,"
        " meaning = 'Approved adjusted couch correction', reason = 'edited'"
        f" WHERE id = {signoff_id};",
    )
    ctx = ctx_of(local)
    with ctx.sessions() as session:  # the forger recomputes the SHA-256 of the edited record
        row = session.get(Signoff, signoff_id)
        fraction = session.get(Fraction, fraction_id)
        record = signoff_repo.signed_record(row, fraction, signoff_repo.signer_of(session, row))
    assert record["couch_correction"]["lateral_mm"] == 9.0
    sqlite3(
        local,
        f"UPDATE signoffs SET record_sha256 = '{signoff_repo.record_sha256(record)}'"
        f" WHERE id = {signoff_id};",
    )

    code, output = audit_verify(local, capsys)
    assert code == 1, output
    assert f"(signoffs row {signoff_id}): the row was changed" in output
    page = review_page(local, fraction_id)
    assert "record verified" not in page
    assert "does NOT match" in page
    with ctx.sessions() as session:
        assert not signoff_repo.verify(session, session.get(Signoff, signoff_id))


def test_a_deleted_audit_event_breaks_the_chain_at_its_link(
    local: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    with ctx_of(local).sessions() as session:
        first = session.scalar(select(func.min(AuditEvent.id)))
    sqlite3(
        local, f"DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE id = {first};"
    )
    code, output = audit_verify(local, capsys)
    assert code == 1
    assert f"(audit_events row {first}): the row was deleted" in output


def test_a_row_and_its_link_rewritten_together_fail_on_the_mac_without_the_key(
    local: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = ctx_of(local)
    with ctx.sessions() as session:
        link = session.scalars(select(RecordLink).order_by(RecordLink.seq)).first()
        assert link is not None and link.table_name == "audit_events"
    sqlite3(
        local,
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER record_chain_no_update;"
        f"UPDATE audit_events SET actor = 'someone-else' WHERE id = {link.row_id};",
    )
    with ctx.sessions() as session:
        digest = record_chain.row_digest(session, "audit_events", link.row_id)
    sqlite3(local, f"UPDATE record_chain SET row_sha256 = '{digest}' WHERE seq = {link.seq};")
    code, output = audit_verify(local, capsys)
    assert code == 1
    assert f"link {link.seq} (audit_events row {link.row_id}): its MAC does not match" in output


def test_a_row_inserted_behind_the_service_has_no_link(
    local: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite3(
        local,
        "INSERT INTO audit_events (at, actor, action, entity, entity_id, detail) VALUES"
        " ('2026-11-29 10:00:00.000000', 'dr-who', 'signed_off', 'fraction', '1', '{}');",
    )
    code, output = audit_verify(local, capsys)
    assert code == 1
    assert "1 row(s) have no link" in output and "audit_events row" in output


def test_the_key_file_is_created_private_and_another_key_fails_every_link(
    local: TestClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = ctx_of(local).settings.data_dir / "record.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert audit_verify(local, capsys)[0] == 0
    monkeypatch.setenv("MVCT_GUIDE_RECORD_KEY", "x" * 40)
    code, output = audit_verify(local, capsys)
    assert code == 1 and "link 1 " in output and "MAC does not match" in output
    monkeypatch.setenv("MVCT_GUIDE_RECORD_KEY", "short")
    code, output = audit_verify(local, capsys)
    assert code == 2 and "at least 32" in output


def test_concurrent_writers_keep_one_unbroken_chain(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Eight threads appending audit events at once (PostgreSQL: an advisory lock orders them)."""
    with TestClient(create_app(sf.make_settings(tmp_path, database_url))) as client:
        ctx = ctx_of(client)
        errors: list[BaseException] = []

        def append(index: int) -> None:
            try:
                for step in range(10):
                    with ctx.writer.begin() as session:
                        repository.record_audit(
                            session, actor=f"t{index}", action="test", entity="x", entity_id=step
                        )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=append, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        with ctx.sessions() as session:
            report = record_chain.verify_chain(session, record_chain.key_of(session) or b"")
            events = session.scalar(select(func.count()).select_from(AuditEvent))
        assert report.intact, report
        assert report.links == events >= 80
        assert os.path.exists(ctx.settings.data_dir / "record.key")
