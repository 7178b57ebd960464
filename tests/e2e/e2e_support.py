"""Helpers of the browser tests: the live server handle, signing in, opening a review."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import review_data
import service_fixtures as sf

from registration.frames import PatientPosition

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = sf.PROJECT_ROOT / "artifacts" / "e2e"
PASSWORD = "e2e correct horse"
PHYSICIAN = ("dr-e2e", "Dr E2E Physician")
THERAPIST = ("rt-e2e", "E2E Therapist")


@dataclass
class LiveServer:
    base_url: str
    app: Any
    console: dict[str, str]
    series: sf.Samples
    _next_mvct: int = 0

    def registered_fraction(self, lateral_error_mm: float = 0.0) -> dict[str, Any]:
        """A new fraction of the next simulated MVCT with a known (or deliberately off) result."""
        index = self._next_mvct
        self._next_mvct += 1
        iso = self.series.isocenter
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            body = review_data.post_fraction(
                client,
                self.console,
                self.series.mvcts[index],
                planning=self.series.planning,
                patient_id=sf.PATIENT_ID,
                isocenter=f"{iso.x_mm},{iso.y_mm},{iso.z_mm}",
            )
        result = review_data.known_result(
            self.series.motions[index], iso, PatientPosition.HFS, lateral_error_mm=lateral_error_mm
        )
        review_data.store_result(self.app.state.context, body["id"], result)
        return result | {"id": body["id"], "fraction_number": body["fraction_number"]}

    def fraction(self, fraction_id: int) -> dict[str, Any]:
        response = httpx.get(
            f"{self.base_url}/api/v1/fractions/{fraction_id}", headers=self.console
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under uvicorn (a thread, a free port) until the block ends; its base URL."""
    import uvicorn

    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, name=f"e2e-uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sign_in(page: Any, server: LiveServer, who: tuple[str, str], password: str = PASSWORD) -> None:
    page.goto(f"{server.base_url}/login")
    page.fill("#username", who[0])
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_url("**/worklist")


def open_review(page: Any, fraction_id: int) -> None:
    page.click(f'tr[data-fraction-id="{fraction_id}"] a.open')
    page.wait_for_url(f"**/review/{fraction_id}")
    page.wait_for_selector('body[data-review-ready="1"]')
