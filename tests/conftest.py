"""Suite-wide settings.

* On CI (``MVCT_GUIDE_FAIL_ON_SKIP=1``) a skipped test fails the run: CI installs every peer.
* When ITK was loaded into the pytest process (the registration tests do), the process ends with
  ``os._exit`` after pytest has finished and reported: the ITK Python wheels and SimpleITK each
  carry their own copy of ITK, and together with psycopg's libpq their C++ static destructors
  intermittently crash the interpreter at finalisation (SIGSEGV after "N passed", no Python
  frame), which would turn a green run red. Everything pytest writes is flushed first.
"""

from __future__ import annotations

import os
import sys

import pytest

# The tests talk plain HTTP to http://testserver and 127.0.0.1: say so explicitly (the default is
# Secure cookies; tests that check the default unset this).
os.environ.setdefault("MVCT_GUIDE_COOKIE_SECURE", "false")

_EXIT_STATUS_KEY = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    fixtures = sys.modules.get("service_fixtures")
    if fixtures is not None:  # the shared warm workers must not outlive the suite
        fixtures.shutdown_shared_pool()
    status = int(exitstatus)
    if os.environ.get("MVCT_GUIDE_FAIL_ON_SKIP") == "1":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            print(f"\n{skipped} test(s) skipped: CI installs every peer, so nothing may skip")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            status = int(pytest.ExitCode.TESTS_FAILED)
    session.config.stash[_EXIT_STATUS_KEY] = status


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "itk" not in sys.modules or _EXIT_STATUS_KEY not in config.stash:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[_EXIT_STATUS_KEY])
