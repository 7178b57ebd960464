"""Many MVCTs in one ``mvct-guide register``: ITK loaded once, one JSON line per MVCT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import ISO, SAMPLES, TRUTH, run

from app.cli.batch import MvctSource, expand_mvct_sources, worst_status


def test_the_worst_status_wins_with_refused_worse_than_untrusted() -> None:
    assert worst_status([0, 3, 0]) == 3
    assert worst_status([3, 2, 0]) == 2
    assert worst_status([0, 0]) == 0


def test_a_csv_of_fractions_names_mvcts_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    (tmp_path / "fractions.csv").write_text("mvct,mvct_series\nday1,\nday2,1.2.3\n")
    sources = expand_mvct_sources([tmp_path / "fractions.csv"], None)
    assert sources == [MvctSource(tmp_path / "day1"), MvctSource(tmp_path / "day2", "1.2.3")]


def test_a_csv_row_naming_a_missing_mvct_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "fractions.csv").write_text("mvct\nnowhere\n")
    with pytest.raises(ValueError, match="line 2: MVCT not found"):
        expand_mvct_sources([tmp_path / "fractions.csv"], None)


def test_a_folder_holding_the_planning_ct_and_an_mvct_yields_only_the_mvct(
    tmp_path: Path,
) -> None:
    both = tmp_path / "both"
    both.mkdir()
    for folder in ("planning", "mvct"):
        for file in (SAMPLES / folder).glob("*.dcm"):
            (both / f"{folder}-{file.name}").write_bytes(file.read_bytes())
    planning_uid = expand_mvct_sources([SAMPLES / "planning"], None)
    assert planning_uid == [MvctSource(SAMPLES / "planning")]
    sources = expand_mvct_sources([both], None, skip_series=_uid(SAMPLES / "planning"))
    assert sources == [MvctSource(both, _uid(SAMPLES / "mvct"))]


def _uid(folder: Path) -> str:
    from registration.dicom_series import list_ct_series

    (summary,) = list_ct_series(folder)
    return summary.series_instance_uid


@pytest.mark.slow
def test_two_mvcts_in_one_process_print_two_json_lines_and_the_second_pays_no_load(
    tmp_path: Path,
) -> None:
    second = tmp_path / "mvct2"
    sim = run(
        "simulate",
        "--planning",
        str(SAMPLES / "planning"),
        "--out",
        str(second),
        "--isocenter",
        ISO,
        "--move-iec-mm",
        "3,-2,1",
        "--rotate-iec-deg",
        "0,1,0",
        "--pixel-mm",
        "1.5625",
        "--length-mm",
        "100",
    )
    assert sim.returncode == 0, sim.stderr
    proc = run(
        "register",
        "--planning",
        str(SAMPLES / "planning"),
        "--mvct",
        str(SAMPLES / "mvct"),
        "--mvct",
        str(second),
        "--isocenter",
        ISO,
        "--json",
        "--verbose",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    first, other = (json.loads(line) for line in lines)
    assert first["mvct"] == str(SAMPLES / "mvct")
    assert other["mvct"] == str(second)
    truths = [TRUTH, json.loads((tmp_path / "mvct2.truth.json").read_text())]
    for result, truth in zip((first, other), truths, strict=True):
        expected = truth["expected_couch_correction"]
        for key in ("lateral_mm", "longitudinal_mm", "vertical_mm"):
            assert result["couch_correction"][key] == pytest.approx(expected[key], abs=0.3), key
        assert result["trusted"] is True
    # the load is its own step, paid once; neither registration paid it
    assert proc.stderr.count("loading ITK and elastix (once)") == 1
    progress = [line for line in proc.stderr.splitlines() if "MVCT 2/2" in line]
    assert len(progress) == 1
    assert "without the ITK load (ITK loads in this process: 1)" in progress[0]


def test_progress_stays_off_stderr_unless_it_is_a_terminal_or_verbose_is_asked() -> None:
    from app.cli.progress import LineProgress, Progress, RichProgress, progress_for

    quiet = progress_for(verbose=False)  # pytest's captured stderr is not a terminal
    assert type(quiet) is Progress
    assert isinstance(progress_for(verbose=True), LineProgress)
    assert not isinstance(quiet, RichProgress)
