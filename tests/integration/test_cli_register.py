"""The command line as a therapist or physicist would run it (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_support import ISO, ROOT, SAMPLES, TRUTH, run

pytestmark = pytest.mark.slow


def test_register_prints_one_json_object_with_the_known_correction() -> None:
    proc = run(
        "register",
        "--planning",
        str(SAMPLES / "planning"),
        "--mvct",
        str(SAMPLES / "mvct"),
        "--isocenter",
        ISO,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    expected = TRUTH["expected_couch_correction"]
    for key in ("lateral_mm", "longitudinal_mm", "vertical_mm"):
        assert result["couch_correction"][key] == pytest.approx(expected[key], abs=0.3), key
    for key in ("pitch_deg", "roll_deg", "yaw_deg"):
        assert result["couch_correction"][key] == pytest.approx(expected[key], abs=0.15), key
    assert result["trusted"] is True
    assert result["patient_position"] == "HFS"
    assert set(result) >= {
        "planning_to_daily_lps",
        "isocenter_lps_mm",
        "dof",
        "mode",
        "quality",
        "warnings",
        "couch_correction_6dof",
    }


def test_register_table_names_axes_with_units_and_dof4_zeroes_pitch_and_yaw() -> None:
    proc = run(
        "register",
        "--planning",
        str(SAMPLES / "planning"),
        "--mvct",
        str(SAMPLES / "mvct"),
        "--isocenter",
        ISO,
        "--dof",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    assert "lateral" in proc.stdout and " mm " in proc.stdout and " deg " in proc.stdout
    pitch_line = next(line for line in proc.stdout.splitlines() if "pitch" in line)
    assert pitch_line.split()[1] == "+0.00"


def test_register_with_the_planning_package_matches_on_the_ptv_and_prints_residuals() -> None:
    proc = run(
        "register",
        "--planning",
        str(SAMPLES / "planning"),
        "--mvct",
        str(SAMPLES / "mvct"),
        "--rtstruct",
        str(SAMPLES / "rtstruct.dcm"),
        "--rtplan",
        str(SAMPLES / "rtplan.dcm"),
        "--match-structure",
        "PTV",
        "--match-margin-mm",
        "20",
        "--dof",
        "4",
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    # registered on the PTV + 20 mm only, the known translation is still found
    expected = TRUTH["expected_couch_correction"]
    for axis in ("lateral", "longitudinal", "vertical"):
        line = next(line for line in lines if line.strip().startswith(axis))
        assert float(line.split()[1]) == pytest.approx(expected[f"{axis}_mm"], abs=0.5), line
    assert "Isocentre (LPS mm): 0.0, 60.0, -40.0" in lines
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("  ")}
    assert rows["PTV"][1] == "PTV" and rows["SpinalCord"][1] == "ORGAN"
    # 4 DOF leaves the 0.5° pitch and yaw: well under 1 mm at the 30 mm PTV edge
    assert 0.0 < float(rows["PTV"][2]) < 1.0
    assert float(rows["PTV"][3]) <= float(rows["PTV"][2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--planning", "missing-folder", "--mvct", "sample_images/mvct"], "not found"),
        (
            [
                "--planning",
                "sample_images/planning",
                "--mvct",
                "sample_images/mvct",
                "--isocenter",
                "1,2",
            ],
            "three comma-separated numbers",
        ),
        (["--planning", "sample_images/README.md", "--mvct", "sample_images/mvct"], "README.md"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(args: list[str], message: str) -> None:
    proc = run("register", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_shift_beyond_20mm_is_printed_but_exits_3_not_trusted(tmp_path: Path) -> None:
    out = tmp_path / "mvct"
    sim = run(
        "simulate",
        "--planning",
        str(SAMPLES / "planning"),
        "--out",
        str(out),
        "--isocenter",
        ISO,
        "--move-iec-mm",
        "0,22,0",
        "--pixel-mm",
        "1.5625",
    )
    assert sim.returncode == 0, sim.stderr
    assert "longitudinal -22.00 mm" in sim.stdout
    proc = run(
        "register",
        "--planning",
        str(SAMPLES / "planning"),
        "--mvct",
        str(out),
        "--isocenter",
        ISO,
        "--json",
    )
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["trusted"] is False
    assert result["couch_correction"]["longitudinal_mm"] == pytest.approx(-22.0, abs=0.5)
    assert any("exceeds 20 mm" in w for w in result["warnings"])


def test_the_pure_core_imports_no_shell_web_or_database_code() -> None:
    proc = subprocess.run(["lint-imports"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
