"""`mvct-guide users`, `api-keys`, `db` and `demo`: the MVCT_GUIDE_* environment is honoured."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import service_fixtures as sf
from service_fixtures import TestClient

from app.cli import main
from app.config import Settings


@pytest.fixture
def env_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings come from MVCT_GUIDE_* only: no flag names the data directory."""
    data_dir = tmp_path / "from-env"
    monkeypatch.setenv("MVCT_GUIDE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MVCT_GUIDE_DATABASE_URL", raising=False)
    return data_dir


def test_users_add_reads_the_password_from_stdin_and_it_logs_in(
    env_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    code = main(["users", "add", "ana", "--role", "physician", "--full-name", "Dr Ana"])
    assert code == 0 and "user ana added" in capsys.readouterr().out
    assert (env_data_dir / "mvct-guide.sqlite3").is_file()
    with TestClient(sf.create_app(Settings(start_workers=False))) as client:
        assert client.get("/api/v1/courses", auth=("ana", "a long password")).status_code == 200
        assert client.get("/api/v1/courses", auth=("ana", "a long passwor")).status_code == 401
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert main(["users", "add", "ana", "--role", "therapist", "--full-name", "X"]) == 2
    assert "exists already" in capsys.readouterr().err


def test_a_short_password_or_an_unknown_role_is_refused(
    env_data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["users", "add", "bob", "--role", "therapist", "--full-name", "Bob"]) == 2
    assert "too short" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["users", "add", "bob", "--role", "nurse", "--full-name", "Bob"])
    assert exit_info.value.code == 2


def test_api_keys_are_printed_once_work_and_can_be_revoked(
    env_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["api-keys", "create", "console-a"]) == 0
    key = capsys.readouterr().out.strip()
    assert re.fullmatch(r"mvg_[0-9a-f]{8}_[\w-]{43}", key)
    assert main(["api-keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "console-a" in listing and key not in listing
    with TestClient(sf.create_app(Settings(start_workers=False))) as client:
        assert client.get("/api/v1/courses", headers={"X-API-Key": key}).status_code == 200
        assert main(["api-keys", "revoke", "console-a"]) == 0
        assert client.get("/api/v1/courses", headers={"X-API-Key": key}).status_code == 401
    assert main(["api-keys", "create", "therapy-tablet", "--role", "therapist"]) == 0


def test_flags_override_the_environment(
    env_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "from-flag"
    assert main(["db", "upgrade", "--data-dir", str(other)]) == 0
    assert re.search(r"database at revision \d{4}", capsys.readouterr().out)
    assert (other / "mvct-guide.sqlite3").is_file()
    assert not env_data_dir.exists()


@pytest.mark.slow
def test_the_demo_registers_the_sample_fraction_and_prints_the_correction(tmp_path: Path) -> None:
    samples = sf.PROJECT_ROOT / "sample_images"
    if not (samples / "mvct").is_dir():
        pytest.skip("sample_images/ is not there")
    env = {**os.environ, "MVCT_GUIDE_WORKERS": "1"}
    env.pop("MVCT_GUIDE_DATABASE_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--exit-after-demo", "--port", "0",
         "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=300, env=env, cwd=sf.PROJECT_ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert re.search(r"user demo-physician\s+password \S+", out)
    assert re.search(r"Review: http://127\.0\.0\.1:\d+/review/1", out)
    assert "isocentre        0.0, 60.0, -40.0 mm LPS, from rtplan" in out  # the sample RT Plan
    assert re.search(r"left at PTV\s+max \d+\.\d mm", out), out
    expected = json.loads((samples / "truth.json").read_text())["expected_couch_correction"]
    for label, key in (("lateral", "lateral_mm"), ("longitudinal", "longitudinal_mm")):
        found = float(re.search(rf"{label} \(\w\)\s+([-+]\d+\.\d+) mm", out).group(1))  # type: ignore[union-attr]
        assert found == pytest.approx(expected[key], abs=1.0), out
