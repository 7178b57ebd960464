"""The database briefly unavailable: a clear 503 in JSON, nothing half-stored, then recovery.

The service runs on its own PostgreSQL database. "Unavailable" is made real, and undone, with
``ALTER DATABASE … ALLOW_CONNECTIONS false`` plus terminating the database's sessions: the
service's pooled connections die and new ones are refused, as when the server restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from sqlalchemy import func, select, text

from app.api.faults import DATABASE_UNAVAILABLE
from app.db import repository
from app.db.models import AuditEvent, Course, Fraction, ImageSeries, Job
from app.main import create_app

pytestmark = pytest.mark.postgres


class Outage:
    def __init__(self, url: str) -> None:
        self.name = url.rsplit("/", 1)[1]
        self.admin = sf.postgres().admin

    def terminate_sessions(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            )

    def begin(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false'))
        self.terminate_sessions()

    def end(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true'))


@pytest.fixture
def outage_client(tmp_path: Path) -> Iterator[tuple[TestClient, Outage]]:
    if not sf.postgres_reachable():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    url = sf.postgres().new_database()
    outage = Outage(url)
    try:
        with TestClient(create_app(sf.make_settings(tmp_path, url))) as client:
            yield client, outage
    finally:
        outage.end()
        sf.postgres().drop(url)


def post(client: TestClient, headers: dict[str, str], series: sf.Samples, index: int) -> Any:
    return client.post(
        "/api/v1/fractions",
        params={"wait": "false"},
        headers=headers,
        data={"patient_id": sf.PATIENT_ID},
        files=sf.upload("mvct", series.mvcts[index]) + sf.upload("planning", series.planning),
    )


def rows(client: TestClient) -> dict[str, int]:
    ctx = client.app.state.context  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        return {
            table.__name__: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (ImageSeries, Course, Fraction, Job, AuditEvent)
        }


def stored_series(client: TestClient) -> set[str]:
    images = client.app.state.context.settings.images_dir  # type: ignore[attr-defined]
    return {p.name for p in images.glob("??/*") if p.is_dir()}


def test_an_unreachable_database_gives_503_with_words_and_the_service_recovers(
    outage_client: tuple[TestClient, Outage], series: sf.Samples
) -> None:
    client, outage = outage_client
    headers = sf.add_api_key(client, "console-1")
    assert post(client, headers, series, 0).status_code == 202
    before = rows(client)

    outage.begin()
    try:
        for response in (
            client.get("/api/v1/fractions/1", headers=headers),
            post(client, headers, series, 1),
        ):
            assert response.status_code == 503
            assert response.json() == {"detail": DATABASE_UNAVAILABLE}
            assert int(response.headers["retry-after"]) > 0
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("unreachable")
        assert client.get("/healthz").status_code == 200  # the process itself is alive
    finally:
        outage.end()

    assert client.get("/api/v1/fractions/1", headers=headers).status_code == 200
    assert post(client, headers, series, 1).status_code == 202
    after = rows(client)
    assert after["Fraction"] == before["Fraction"] + 1
    assert after["Job"] == before["Job"] + 1


def test_a_database_lost_mid_transaction_stores_no_partial_fraction(
    outage_client: tuple[TestClient, Outage],
    series: sf.Samples,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection dies after the fraction's rows were sent, before the commit."""
    client, outage = outage_client
    headers = sf.add_api_key(client, "console-1")
    assert post(client, headers, series, 0).status_code == 202
    before, series_before = rows(client), stored_series(client)
    original: Callable[..., None] = repository.record_audit
    cut: list[bool] = []

    def record_audit_then_lose_the_connection(session: Any, **kwargs: Any) -> None:
        original(session, **kwargs)
        if kwargs.get("action") == "received" and not cut:
            session.flush()  # the fraction, its job and its MVCT series are now on the server
            cut.append(True)
            outage.terminate_sessions()

    monkeypatch.setattr(repository, "record_audit", record_audit_then_lose_the_connection)
    response = post(client, headers, series, 1)
    assert cut, "the connection was never cut: the test proved nothing"
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": DATABASE_UNAVAILABLE}
    assert rows(client) == before
    assert stored_series(client) == series_before, "the MVCT's files outlived the rollback"
    tmp = client.app.state.context.settings.tmp_dir  # type: ignore[attr-defined]
    assert list(tmp.iterdir()) == []

    monkeypatch.undo()
    assert post(client, headers, series, 1).status_code == 202  # the console's retry
    assert rows(client)["Fraction"] == before["Fraction"] + 1
