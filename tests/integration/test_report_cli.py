"""`mvct-guide report`: files named after the period, the MVCT_GUIDE_* environment, refusals.

A small hand-made week is inserted through the ORM into a migrated SQLite database; expected
numbers are computed here with numpy.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pypdf
import pytest
import report_data

from app.cli import main
from app.db import migrate
from app.db.engine import make_engine, make_writer_factory
from app.db.models import Fraction, Job, RegistrationResult, User
from app.db.models_signoff import Signoff

WEEK = "2026-W46"  # 9–15 November 2026
MONDAY = datetime.date(2026, 11, 9)
#: lateral shifts (mm) per patient; None: awaiting a sign-off (listed, not counted)
LATERAL_MM: dict[str, list[float | None]] = {"PA": [1.0, 2.5, 3.0], "PB": [-1.0, 0.5, None]}
STEM = "setup-errors_2026-W46_signed"


def populate(url: str) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    n = 0
    with make_writer_factory(engine).begin() as session:
        signer = User(username="dr-a", full_name="Dr A", role="physician", password_hash="x")
        session.add(signer)
        for patient, shifts in LATERAL_MM.items():
            n += 1
            course = report_data.course(patient, report_data.image_series(n))
            session.add(course)
            for number, lateral_mm in enumerate(shifts, start=1):
                n += 1
                moment = datetime.datetime.combine(
                    MONDAY + datetime.timedelta(days=number), datetime.time(9), datetime.UTC
                )
                fraction = Fraction(
                    course=course,
                    patient_id=patient,
                    mvct_series=report_data.image_series(n),
                    fraction_number=number,
                    dof=6,
                    mode="tissue",
                    created_at=moment,
                    created_by="test",
                )
                session.add(fraction)
                session.flush()
                values = {
                    "lateral_mm": lateral_mm if lateral_mm is not None else 7.0,
                    "longitudinal_mm": 0.5,
                    "vertical_mm": -0.5,
                    "pitch_deg": 0.0,
                    "roll_deg": 0.2,
                    "yaw_deg": 0.0,
                }
                session.add(Job(fraction_id=fraction.id, status="done"))
                session.add(
                    RegistrationResult(fraction_id=fraction.id, result={}, trusted=True, **values)
                )
                if lateral_mm is not None:
                    session.add(
                        Signoff(
                            fraction_id=fraction.id,
                            decision="approved",
                            override_large_shift=False,
                            signer_user_id=signer.id,
                            printed_name="Dr A",
                            meaning="Approved couch correction",
                            signed_at=moment + datetime.timedelta(minutes=3),
                            record_sha256="0" * 64,
                            **values,
                        )
                    )
    engine.dispose()


@pytest.fixture
def database(sqlite_url: str) -> str:
    populate(sqlite_url)
    return sqlite_url


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MVCT_GUIDE_DATABASE_URL", "MVCT_GUIDE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_report_writes_every_format_named_after_the_week(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports" / "w46"
    code = main(["report", "--week", WEEK, "--out", str(out), "--database-url", database])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{STEM}.{ext}" for ext in ("json", "csv", "xlsx", "pdf", "html"))
    assert sorted(Path(line).name for line in captured.out.splitlines()) == names
    assert "8/8" in captured.err and "5 file(s)" in captured.err

    report = json.loads((out / f"{STEM}.json").read_text(encoding="utf-8"))
    counted = {p: [x for x in v if x is not None] for p, v in LATERAL_MM.items()}
    means = np.array([np.mean(v) for v in counted.values()])
    sds = np.array([np.std(v, ddof=1) for v in counted.values()])
    lateral = report["statistics"]["population"]["lateral"]
    assert lateral["mean_mm"] == pytest.approx(means.mean())
    assert lateral["systematic_sd_mm"] == pytest.approx(np.std(means, ddof=1))
    assert lateral["random_rms_mm"] == pytest.approx(np.sqrt(np.mean(sds**2)))
    assert report["statistics"]["n_fractions"] == 5 and len(report["rows"]) == 6

    rows = list(csv.DictReader(io.StringIO((out / f"{STEM}.csv").read_text(encoding="utf-8"))))
    assert [r["decision"] for r in rows].count("awaiting") == 1
    assert openpyxl.load_workbook(out / f"{STEM}.xlsx")["Fractions"].max_row == 7
    pages = pypdf.PdfReader(out / f"{STEM}.pdf").pages
    assert all("2026-W46 (9–15 Nov 2026)" in page.extract_text() for page in pages)
    assert "<!doctype html>" in (out / f"{STEM}.html").read_text(encoding="utf-8")


def test_the_database_url_is_read_from_the_environment_by_the_installed_command(
    database: str, tmp_path: Path
) -> None:
    env = {**os.environ, "MVCT_GUIDE_DATABASE_URL": database}
    command = [sys.executable, "-m", "app.cli", "report", "--week", WEEK, "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--format", "csv", "--source", "registration", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = tmp_path / "setup-errors_2026-W46_registration.csv"
    assert done.stdout.strip() == str(written)
    assert "mvct-guide report [" not in done.stderr  # --quiet: no progress
    assert len(written.read_text(encoding="utf-8").splitlines()) == 1 + 6


@pytest.mark.parametrize(
    ("period", "name"),
    [
        (["--from", "2026-11-09", "--to", "2026-11-15"], "setup-errors_2026-11-09_2026-11-15"),
        (["--since", "2026-11-01"], "setup-errors_since-2026-11-01_"),
    ],
)
def test_ranges_and_cumulative_views_name_their_files_by_their_dates(
    database: str, tmp_path: Path, period: list[str], name: str
) -> None:
    out = tmp_path / "out"
    argv = ["report", *period, "--out", str(out), "--format", "csv", "--quiet"]
    assert main([*argv, "--database-url", database]) == 0
    (written,) = out.iterdir()
    assert written.name.startswith(name) and written.name.endswith("_signed.csv")
    assert len(written.read_text(encoding="utf-8").splitlines()) == 1 + 6


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--week", "2026-W60"], "--week 2026-W60: give an ISO week as YYYY-Www"),
        (["--from", "2026-11-09"], "--to is missing"),
        (["--week", WEEK, "--since", "2026-11-01"], "give one period, not --week and --since"),
        (["--week", WEEK, "--sal-alpha-mm", "4"], "SAL needs both --sal-alpha-mm and --sal-n-max"),
        (["--week", WEEK, "--margin-mm", "-3"], "--margin-mm -3: give the PTV margin in mm"),
        ([], "say which period"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: str,
) -> None:
    out = tmp_path / "out"
    assert main(["report", *argv, "--out", str(out), "--database-url", database]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_a_missing_database_is_reported_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "no-such-data"
    argv = ["report", "--week", WEEK, "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)]
    assert main(argv) == 2
    assert "there is no database at" in capsys.readouterr().err
    assert not data_dir.exists() and not (tmp_path / "out").exists()


def test_an_older_schema_asks_for_db_upgrade(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine, "0001")
    engine.dispose()
    argv = ["report", "--week", WEEK, "--out", str(tmp_path / "out"), "--database-url", sqlite_url]
    assert main(argv) == 2
    assert "mvct-guide db upgrade" in capsys.readouterr().err


def test_an_out_path_that_is_a_file_is_refused(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    assert main(["report", "--week", WEEK, "--out", str(target), "--database-url", database]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
