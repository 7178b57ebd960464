"""No secret reaches the logs: passwords and API keys, right or wrong, are never logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient

from app.db.models import Role
from app.main import create_app

PASSWORD = "Tr0ub4dor&3-horse"
WRONG_PASSWORD = "wr0ng-batt3ry-staple"


@pytest.fixture
def logged(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    settings = sf.make_settings(tmp_path, sqlite_url, sign_in_max_failures_per_user=2)
    with TestClient(create_app(settings)) as client:
        yield client


def test_passwords_and_api_keys_never_appear_in_any_log_record(
    logged: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    sf.add_person(logged, "ana", Role.THERAPIST, PASSWORD)
    key = sf.add_api_key(logged, "console-1")["X-API-Key"]
    forged = key[:-6] + "AAAAAA"
    answers = [
        logged.get("/api/v1/courses", auth=("ana", PASSWORD)).status_code,
        logged.get("/api/v1/courses", auth=("ana", WRONG_PASSWORD)).status_code,
        logged.get("/api/v1/courses", auth=(PASSWORD, PASSWORD)).status_code,  # name field!
        logged.get("/api/v1/courses", auth=("ana", WRONG_PASSWORD)).status_code,
        logged.get("/api/v1/courses", auth=("ana", PASSWORD)).status_code,  # rate limited
        logged.get("/api/v1/courses", headers={"X-API-Key": key}).status_code,
        logged.get("/api/v1/courses", headers={"X-API-Key": forged}).status_code,
    ]
    assert answers == [200, 401, 401, 401, 429, 200, 401]
    assert caplog.records, "nothing was logged: the test would prove nothing"
    secret_part = key.rsplit("_", 1)[1]
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for secret in (PASSWORD, WRONG_PASSWORD, key, forged, secret_part, forged[-20:]):
            assert secret not in text, (record.name, text)
