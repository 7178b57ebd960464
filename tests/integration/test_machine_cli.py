"""`mvct-guide machine-profiles`: list, show and set on a migrated SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cli import main
from app.db import migrate
from app.db.engine import make_engine, make_session_factory
from app.db.models import AuditEvent
from app.services.machines import profile_name_for_machine
from registration.machine import GENERIC_6DOF_COUCH


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'mvct.sqlite3'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def test_a_physicist_lists_shows_and_sets_a_profile_from_a_file(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["machine-profiles", "list", "--database-url", database]) == 0
    listed = capsys.readouterr().out
    assert "TomoTherapy Hi·Art\tdof 4\tmachines: Hi-Art" in listed
    assert "3-DOF couch\tdof 3" in listed
    assert main(["machine-profiles", "show", "6-DOF couch", "--database-url", database]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == GENERIC_6DOF_COUCH.to_dict()
    shown["name"] = "Room 3 HexaPOD"
    shown["machine_names"] = ["LINAC3"]
    shown["axes"]["pitch"]["limit_deg"] = 2.0
    file = tmp_path / "room3.json"
    file.write_text(json.dumps(shown), encoding="utf-8")
    assert main(["machine-profiles", "set", str(file), "--database-url", database]) == 0
    assert "added machine profile 'Room 3 HexaPOD'" in capsys.readouterr().out
    engine = make_engine(database)
    with make_session_factory(engine)() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "machine_profile_set")
        ).one()
    engine.dispose()
    assert event.actor.startswith("cli:")
    assert event.detail["after"]["axes"]["pitch"]["limit_deg"] == 2.0


def test_a_bad_profile_file_or_an_unknown_name_is_a_message_not_a_traceback(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "axes": {}}), encoding="utf-8")
    assert main(["machine-profiles", "set", str(bad), "--database-url", database]) == 2
    assert "cannot be read: KeyError" in capsys.readouterr().err
    assert main(["machine-profiles", "show", "Nope", "--database-url", database]) == 2
    assert "no machine profile 'Nope'" in capsys.readouterr().err


def test_a_plans_treatment_machine_name_finds_its_stored_profile(database: str) -> None:
    engine = make_engine(database)
    with make_session_factory(engine)() as session:
        assert profile_name_for_machine(session, treatment_machine_name=" RADIXACT ") == "Radixact"
        assert profile_name_for_machine(session, "HiArt", "Radixact") == "TomoTherapy Hi·Art"
        assert profile_name_for_machine(session, treatment_machine_name="TrueBeam") is None
    engine.dispose()
