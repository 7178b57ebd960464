"""STOW-RS under the receivers' limits (issue 11, item 13): a part larger than
MVCT_GUIDE_DICOM_MAX_DATASET_MB, or one that would pass the inbox quota or leave less free disk
than MVCT_GUIDE_DICOM_MIN_FREE_MB, fails with Out of Resources (0xA700) and is not kept; it stops
being written the moment it crosses the limit. The limits do not depend on the database: SQLite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import service_fixtures as sf
from service_fixtures import TestClient
from test_dicomweb import FAILED_SOP_SEQUENCE, FAILURE_REASON, count, files_of, post

from app.db.models_dicom import DicomInstance
from app.main import create_app

OUT_OF_RESOURCES = 0xA700


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url


def failure_reasons(response: Any) -> list[int]:
    return [
        item[FAILURE_REASON]["Value"][0] for item in response.json()[FAILED_SOP_SEQUENCE]["Value"]
    ]


def leftovers(client: TestClient) -> list[Path]:
    root = Path(client.app.state.dicom.inbox.root)
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "limit",
    [{"dicom_max_dataset_mb": 0.02}, {"dicom_inbox_quota_mb": 0.02}, {"dicom_min_free_mb": 1e12}],
)
def test_a_part_beyond_a_limit_fails_with_out_of_resources_and_nothing_is_kept(
    tmp_path: Path, database_url: str, series: sf.Samples, limit: dict[str, float]
) -> None:
    settings = sf.make_settings(tmp_path, database_url, dicom_quiet_s=0.2, **limit)
    with TestClient(create_app(settings)) as client:
        key = sf.add_api_key(client, "console-stow")
        response = post(client, key, files_of(series.mvcts[0])[:2])
        assert response.status_code == 409, response.text
        assert failure_reasons(response) == [OUT_OF_RESOURCES] * 2
        assert count(client, DicomInstance) == 0
        assert leftovers(client) == []


def test_parts_within_the_quota_are_kept_and_the_one_beyond_it_fails(
    tmp_path: Path, database_url: str, series: sf.Samples
) -> None:
    parts = files_of(series.mvcts[0])[:3]
    quota_mb = (len(parts[0]) + len(parts[1]) + 1000) / 1024**2
    settings = sf.make_settings(tmp_path, database_url, dicom_inbox_quota_mb=quota_mb)
    with TestClient(create_app(settings)) as client:
        response = post(client, sf.add_api_key(client, "console-stow"), parts)
        assert response.status_code == 202, response.text
        assert failure_reasons(response) == [OUT_OF_RESOURCES]
        assert count(client, DicomInstance) == 2
