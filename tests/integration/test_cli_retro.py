"""``mvct-guide retro``: an archive of courses re-registered into a CSV, one row per MVCT."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from cli_support import ISO, SAMPLES, TRUTH, run

from app.cli.archive import ArchiveSeries, _choose_planning


def _series(uid: str, extent_mm: float) -> ArchiveSeries:
    return ArchiveSeries(uid, "", "", (), extent_mm, 2.0)


def test_of_several_planning_candidates_the_longest_is_chosen_and_the_choice_is_stated() -> None:
    planning, choice, refusal = _choose_planning([_series("a", 100), _series("b", 300)], False)
    assert planning is not None and planning.series_instance_uid == "b"
    assert "longest (300 mm) of 2" in choice and "not chosen: a" in choice
    assert refusal == ""


def test_two_planning_candidates_of_equal_length_are_refused_not_guessed() -> None:
    planning, choice, refusal = _choose_planning([_series("a", 300), _series("b", 299)], False)
    assert planning is None and choice == ""
    assert "equal length" in refusal and "a" in refusal and "b" in refusal


def test_a_course_without_a_planning_candidate_is_refused() -> None:
    planning, _, refusal = _choose_planning([], False)
    assert planning is None and "no planning CT" in refusal


@pytest.mark.slow
def test_retro_writes_one_row_per_mvct_with_the_known_corrections(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(SAMPLES / "planning", archive / "p1" / "planning")
    shutil.copytree(SAMPLES / "mvct", archive / "p1" / "day1")
    shutil.copy(SAMPLES / "rtplan.dcm", archive / "p1" / "rtplan.dcm")
    (archive / "notes.txt").write_text("not DICOM")
    planning_id = _patient_id(SAMPLES / "planning")
    # day2 belongs to the planning CT's patient; the orphan is another patient's MVCT in the
    # same Frame of Reference with no planning CT of its own
    for name, (move, patient) in {
        "day2": ("4,-3,2", planning_id),
        "orphan": ("0,0,0", "NOPLAN"),
    }.items():
        sim = run(
            "simulate",
            "--planning",
            str(SAMPLES / "planning"),
            "--out",
            str(archive / "p1" / name),
            "--isocenter",
            ISO,
            "--move-iec-mm",
            move,
            "--pixel-mm",
            "1.5625",
            "--length-mm",
            "80",
            "--patient-id",
            patient,
        )
        assert sim.returncode == 0, sim.stderr
    out = tmp_path / "results.csv"
    proc = run("retro", str(archive), "--out", str(out), "--dof", "4")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 3 files" in proc.stderr  # notes.txt and the two simulations' truth.json
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    orphan = [r for r in rows if r["patient_id"] == "NOPLAN"]
    assert len(orphan) == 1 and "no planning CT" in orphan[0]["error"]
    course = [r for r in rows if r["patient_id"] == planning_id]
    assert len(course) == 2
    assert {r["planning_series_uid"] for r in course} == {_uid(SAMPLES / "planning")}
    assert all(r["planning_choice"] == "" and r["error"] == "" for r in course)
    assert all(r["isocenter_source"].startswith("RT Plan") for r in course)
    by_uid = {r["mvct_series_uid"]: r for r in course}
    day1 = by_uid[_uid(SAMPLES / "mvct")]
    expected = TRUTH["expected_couch_correction"]
    for axis in ("lateral_mm", "longitudinal_mm", "vertical_mm", "roll_deg"):
        assert float(day1[f"{axis}_6dof"]) == pytest.approx(expected[axis], abs=0.3), axis
        assert float(day1[axis]) == pytest.approx(expected[axis], abs=0.3), axis
    assert float(day1["pitch_deg"]) == 0.0 and float(day1["yaw_deg"]) == 0.0  # 4 DOF
    assert day1["dof"] == "4" and day1["trusted"] == "yes"
    day2 = by_uid[_uid(archive / "p1" / "day2")]
    day2_truth = json.loads((archive / "p1" / "day2.truth.json").read_text())
    for axis in ("lateral_mm", "longitudinal_mm", "vertical_mm"):
        want = day2_truth["expected_couch_correction"][axis]
        assert float(day2[f"{axis}_6dof"]) == pytest.approx(want, abs=0.3), axis


def _uid(folder: Path) -> str:
    from registration.dicom_series import list_ct_series

    (summary,) = list_ct_series(folder)
    return summary.series_instance_uid


def _patient_id(folder: Path) -> str:
    from registration.dicom_series import list_ct_series

    (summary,) = list_ct_series(folder)
    return summary.patient_id
