"""The pure core's docstring examples run as tests: ``--doctest-modules`` for ``registration/``.

(Applied to ``tests/`` as well, ``--doctest-modules`` would import its several ``conftest.py`` as
one module named ``conftest`` and stop the collection.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule  # pytest's own collector; no public alias exists

_CORE = Path(__file__).resolve().parent / "registration"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".py" or _CORE not in file_path.resolve().parents:
        return None
    if parent.config.option.doctestmodules:
        return None  # pytest collects it already
    module: pytest.Collector = DoctestModule.from_parent(parent, path=file_path)
    return module
