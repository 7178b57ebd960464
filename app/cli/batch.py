"""Many MVCTs against one planning CT in one process: ITK loaded and the planning prepared once.

Used by ``mvct-guide register`` (several ``--mvct``, a folder of MVCT series, a CSV of fractions)
and ``mvct-guide retro`` (an archive of courses).

Sources of MVCTs (:func:`expand_mvct_sources`), in the order given:

* a ``.csv`` file: one fraction per row, column ``mvct`` (a path, relative to the CSV's folder)
  and optionally ``mvct_series`` (a SeriesInstanceUID in that path);
* a folder or ``.zip`` holding several CT series: each CT series is one MVCT, in the order its
  first file is found (the planning CT's own series, if it is there too, is skipped);
* anything else (a folder or archive of one series, a DICOM file, a research format): one MVCT.

Exit status of a batch: the worst per-MVCT status, ordered ok (0) < not trusted (3) < could not
be registered (2): a batch in which one MVCT was refused exits 2 even if others were not trusted.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli import EXIT_BAD_INPUT, EXIT_NOT_TRUSTED, EXIT_OK
from app.cli.progress import Progress, Registered

if TYPE_CHECKING:
    from registration.result import RegistrationOptions, RegistrationResult
    from registration.rigid import PreparedPlanning
    from registration.volume import CtVolume

#: Adds the planning package's warnings to a result, and gives its residuals per structure.
Judge = Callable[
    ["RegistrationResult", "CtVolume"], tuple["RegistrationResult", tuple[dict[str, Any], ...]]
]

#: Worst first: the batch exits with the first of these that any MVCT had.
_SEVERITY = (EXIT_BAD_INPUT, EXIT_NOT_TRUSTED, EXIT_OK)


@dataclass(frozen=True)
class MvctSource:
    """One daily MVCT to read: a path and, when the path holds several series, which one."""

    path: Path
    series_uid: str | None = None

    @property
    def label(self) -> str:
        return str(self.path) if self.series_uid is None else f"{self.path} [{self.series_uid}]"


@dataclass(frozen=True)
class MvctOutcome:
    """What became of one MVCT: a result, or the reason it could not be registered."""

    source: MvctSource
    result: RegistrationResult | None
    error: str = ""
    series_uid: str = ""
    #: per structure, what is left after the couch's correction (``register --rtstruct``);
    #: None: not judged (``retro``)
    residuals: tuple[dict[str, Any], ...] | None = None

    @property
    def exit_status(self) -> int:
        if self.result is None:
            return EXIT_BAD_INPUT
        return EXIT_OK if self.result.trusted else EXIT_NOT_TRUSTED

    def to_dict(self) -> dict[str, Any]:
        """The JSON line: which MVCT, then the result's own JSON form (or the error)."""
        head: dict[str, Any] = {
            "mvct": self.source.label,
            "mvct_series_instance_uid": self.series_uid,
        }
        if self.result is None:
            return {**head, "error": self.error}
        body = {**head, **self.result.to_dict()}
        if self.residuals is not None:
            body["residuals"] = list(self.residuals)
        return body


def worst_status(statuses: Sequence[int]) -> int:
    """The batch's exit status: the worst per-MVCT status (module docstring); 0 when empty."""
    for status in _SEVERITY:
        if status in statuses:
            return status
    return EXIT_OK


def expand_mvct_sources(
    paths: Sequence[Path], series_uid: str | None, skip_series: str = ""
) -> list[MvctSource]:
    """The MVCTs named by ``paths`` (module docstring); ``series_uid`` only with one path."""
    from registration.dicom_series import list_ct_series

    if series_uid is not None and len(paths) != 1:
        raise ValueError(
            f"--mvct-series names a series in one --mvct, but {len(paths)} were given; "
            "use a CSV with an mvct_series column instead"
        )
    sources: list[MvctSource] = []
    for path in paths:
        if not path.exists():
            raise ValueError(f"MVCT not found: {path}")
        if path.is_file() and path.suffix.lower() == ".csv":
            sources += _csv_sources(path)
        elif series_uid is not None:
            sources.append(MvctSource(path, series_uid))
        elif path.is_dir() or (path.is_file() and path.suffix.lower() == ".zip"):
            found = [s.series_instance_uid for s in list_ct_series(path)]
            uids = [u for u in found if u != skip_series]
            if len(found) == 1 and uids:
                sources.append(MvctSource(path))
            else:  # several series (or none: reading it says so)
                sources += [MvctSource(path, uid) for uid in uids] or [MvctSource(path)]
        else:  # one DICOM file or a research format (RESEARCH_FORMAT_SUFFIXES)
            sources.append(MvctSource(path))
    return sources


def _csv_sources(path: Path) -> list[MvctSource]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "mvct" not in reader.fieldnames:
            raise ValueError(
                f"{path}: a CSV of fractions needs a header row with an 'mvct' column "
                f"(and optionally 'mvct_series'); found {reader.fieldnames}"
            )
        sources = []
        for line, row in enumerate(reader, start=2):
            text = (row.get("mvct") or "").strip()
            if not text:
                raise ValueError(f"{path}, line {line}: the 'mvct' column is empty")
            mvct = Path(text) if Path(text).is_absolute() else path.parent / text
            if not mvct.exists():
                raise ValueError(f"{path}, line {line}: MVCT not found: {mvct}")
            uid = (row.get("mvct_series") or "").strip() or None
            sources.append(MvctSource(mvct, uid))
    if not sources:
        raise ValueError(f"{path}: the CSV of fractions lists no MVCT")
    return sources


def load_engine(progress: Progress) -> None:
    """Pay the one-off ITK/elastix load now, as its own progress step."""
    from registration.elastix_run import warm_up

    with progress.step("loading ITK and elastix (once)"):
        warm_up()


def register_sources(
    prepared: PreparedPlanning,
    sources: Sequence[MvctSource],
    options: RegistrationOptions,
    progress: Progress,
    *,
    read: Callable[[MvctSource], CtVolume],
    judge: Judge | None = None,
) -> Iterator[MvctOutcome]:
    """Register each source in turn against ``prepared``; a bad MVCT does not stop the others.

    ``judge`` (the planning package's) adds its warnings and residuals to each result before
    its status is reported."""
    from registration.elastix_run import itk_load_count
    from registration.errors import RegistrationError
    from registration.rigid import register

    for index, source in enumerate(sources, start=1):
        started = time.perf_counter()
        loads_before = itk_load_count()
        series_uid = source.series_uid or ""
        try:
            daily = read(source)
            series_uid = daily.series_instance_uid
            result = register(prepared, daily, options)
            residuals = None
            if judge is not None:
                result, residuals = judge(result, daily)
            outcome = MvctOutcome(source, result, "", series_uid, residuals)
        except (RegistrationError, ValueError, OSError) as exc:
            outcome = MvctOutcome(source, None, str(exc), series_uid)
        progress.registered(
            Registered(
                index=index,
                total=len(sources),
                label=source.label,
                seconds=time.perf_counter() - started,
                itk_loaded_here=itk_load_count() > loads_before,
                status=_status_word(outcome),
            )
        )
        yield outcome


def _status_word(outcome: MvctOutcome) -> str:
    if outcome.result is None:
        return f"not registered: {outcome.error}"
    return "trusted" if outcome.result.trusted else "NOT trusted"
