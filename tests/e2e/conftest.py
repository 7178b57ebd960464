"""Fixtures of the browser tests: a real uvicorn server, Debian's chromium driven by Playwright.

The browser is ``/usr/bin/chromium`` (Debian's package, installed by .ci/run): Playwright never
downloads one. Screenshots go to ``artifacts/e2e/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import review_data
import service_fixtures as sf
from e2e_support import (
    ARTIFACTS,
    CHROMIUM,
    LAUNCH_ARGS,
    PASSWORD,
    PHYSICIAN,
    THERAPIST,
    LiveServer,
    serving,
)

from app.db.models import Role
from app.main import create_app


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service (no registration workers) on a free port, with people and a console key."""
    series = sf.samples(tmp_path_factory.mktemp("series"))
    root = tmp_path_factory.mktemp("e2e")
    (root / "db").mkdir()
    url = f"sqlite:///{root / 'db' / 'e2e.sqlite3'}"
    app = create_app(sf.make_settings(root, url, worklist_poll_seconds=1))
    ctx = app.state.context
    people = ((PHYSICIAN, Role.PHYSICIAN), (THERAPIST, Role.THERAPIST))
    from app.services.accounts import add_user

    with serving(app) as base_url:  # the service's start-up makes the tables
        with ctx.writer.begin() as session:
            for (username, full_name), role in people:
                add_user(session, username, role, full_name, PASSWORD, "test")
        yield LiveServer(base_url, app, review_data.console_key(ctx), series)


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile per test (no cookies shared); no page may throw a script error."""
    created = browser.new_context(viewport={"width": 1500, "height": 1000})
    created.set_default_timeout(15_000)
    errors: list[str] = []
    created.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
    yield created
    created.close()
    assert errors == [], f"script errors in the page: {errors}"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Any:
    """``shots(page, "step")`` saves artifacts/e2e/<test>-<step>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def save(page: Any, step: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
