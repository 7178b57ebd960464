"""Real peers on loopback: Orthanc (with its DICOMweb plugin) and dicomweb-client send to us.

The service runs in this process (uvicorn in a thread, the shared warm workers, the SCP on a free
port); Orthanc runs from a generated configuration with its own storage folder and free ports, and
is stopped after the module. Orthanc pushes by STOW-RS (sending the console API key as an HTTP
header, as its ``DicomWeb.Servers`` entry allows) and by C-STORE; dicomweb-client uploads with
``store_instances``. Each path must end in a registered fraction.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import service_fixtures as sf
import uvicorn
from pydicom import dcmread

from app.db.models import Role
from app.jobs.pool import WorkerPool
from app.main import create_app
from app.services.accounts import create_api_key

SAMPLES = sf.PROJECT_ROOT / "sample_images"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    base_url: str
    key: str
    orthanc_url: str

    def api(self, path: str) -> Any:
        response = httpx.get(f"{self.base_url}{path}", headers={"X-API-Key": self.key}, timeout=60)
        return response.json()

    def orthanc_upload(self, folder: Path) -> str:
        """Load a series into Orthanc; its Orthanc series id."""
        parent = ""
        for path in sorted(folder.glob("*.dcm")):
            response = httpx.post(f"{self.orthanc_url}/instances", content=path.read_bytes())
            assert response.status_code == 200, response.text
            parent = response.json()["ParentSeries"]
        return parent

    def registered(self, patient_id: str, mvct_uid: str, timeout_s: float = 180) -> Any:
        """The fraction of ``mvct_uid`` once registered (or failed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for entry in self.api(f"/api/v1/patients/{patient_id}/fractions")["fractions"]:
                fraction = self.api(f"/api/v1/fractions/{entry['fraction_id']}")
                done = fraction["status"] in ("done", "failed")
                if fraction["mvct_series_instance_uid"] == mvct_uid and done:
                    return fraction
            assert time.monotonic() < deadline, f"no registered fraction for {mvct_uid}"
            time.sleep(0.3)


def series_uid(folder: Path) -> str:
    return str(dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, warm_pool: WorkerPool) -> Iterator[Stack]:
    orthanc = shutil.which("Orthanc")
    if orthanc is None or not DICOMWEB_PLUGIN.is_file():
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (orthanc orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("peers")
    port, dicom_port = free_port(), free_port()
    settings = sf.make_settings(
        root,
        f"sqlite:///{root / 'db' / 'mvct-guide.sqlite3'}",
        start_workers=True,
        dicom_port=dicom_port,
        dicom_quiet_s=1.0,
        dicom_allowed_aes="ORTHANC",
        dicom_planning_pattern=sf.PLANNING_PATTERN,
    )
    app = create_app(settings, pool=warm_pool)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    orthanc_process = None
    log = (root / "orthanc.log").open("wb")
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
            time.sleep(0.05)
        with app.state.context.writer.begin() as session:
            key = create_api_key(session, "console-peers", Role.CONSOLE, "test")
        base_url = f"http://127.0.0.1:{port}"
        orthanc_http, orthanc_dicom = free_port(), free_port()
        config = {
            "Name": "mvct-guide-test",
            "StorageDirectory": str(root / "orthanc"),
            "IndexDirectory": str(root / "orthanc"),
            "HttpPort": orthanc_http,
            "DicomPort": orthanc_dicom,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "Servers": {
                    "mvct-guide": {
                        "Url": f"{base_url}/dicomweb/",
                        "HttpHeaders": {"X-API-Key": key},
                    }
                },
            },
            "DicomModalities": {"mvct-guide": ["MVCTGUIDE", "127.0.0.1", dicom_port]},
        }
        (root / "orthanc.json").write_text(json.dumps(config))
        orthanc_process = subprocess.Popen(
            [orthanc, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
        )
        orthanc_url = f"http://127.0.0.1:{orthanc_http}"
        deadline = time.monotonic() + 60
        while True:
            assert orthanc_process.poll() is None, (root / "orthanc.log").read_text()
            try:
                if httpx.get(f"{orthanc_url}/system", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (root / "orthanc.log").read_text()
            time.sleep(0.2)
        yield Stack(base_url, key, orthanc_url)
    finally:
        if orthanc_process is not None:
            orthanc_process.terminate()
            try:
                orthanc_process.wait(30)
            except subprocess.TimeoutExpired:
                orthanc_process.kill()
                orthanc_process.wait(30)
        log.close()
        server.should_exit = True
        thread.join(60)


def test_orthanc_pushes_the_sample_study_by_stow_rs_and_the_fraction_is_registered(
    stack: Stack,
) -> None:
    stack.orthanc_upload(SAMPLES / "planning")
    mvct_series = stack.orthanc_upload(SAMPLES / "mvct")
    study = httpx.get(f"{stack.orthanc_url}/series/{mvct_series}").json()["ParentStudy"]
    pushed = httpx.post(
        f"{stack.orthanc_url}/dicom-web/servers/mvct-guide/stow",
        json={"Resources": [study], "Synchronous": True},
        timeout=300,
    )
    assert pushed.status_code == 200, pushed.text
    fraction = stack.registered("MVCT-SAMPLE-01", series_uid(SAMPLES / "mvct"))
    assert fraction["status"] == "done", fraction
    truth = json.loads((SAMPLES / "truth.json").read_text())
    expected = np.array(truth["planning_to_daily_lps"])
    iso = np.array([*fraction["isocenter_lps_mm"], 1.0])
    found = np.array(fraction["planning_to_daily_lps"])
    assert np.linalg.norm((found - expected) @ iso) < 1.0  # mm at the isocentre


def test_orthanc_sends_a_planning_ct_and_an_mvct_by_c_store_and_the_fraction_is_registered(
    stack: Stack, series: sf.Samples
) -> None:
    planning = stack.orthanc_upload(series.planning)
    mvct = stack.orthanc_upload(series.mvcts[5])
    sent = httpx.post(
        f"{stack.orthanc_url}/modalities/mvct-guide/store",
        json={"Resources": [planning, mvct], "Synchronous": True},
        timeout=300,
    )
    assert sent.status_code == 200, sent.text
    fraction = stack.registered(sf.PATIENT_ID, series_uid(series.mvcts[5]))
    assert fraction["status"] == "done", fraction
    iso = np.array([*fraction["isocenter_lps_mm"], 1.0])
    error = (np.array(fraction["planning_to_daily_lps"]) - series.motions[5].as_array()) @ iso
    assert np.linalg.norm(error) < 1.0  # mm at the isocentre


def test_dicomweb_client_uploads_a_planning_ct_and_an_mvct_and_the_fraction_is_registered(
    stack: Stack, series: sf.Samples
) -> None:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=f"{stack.base_url}/dicomweb", headers={"X-API-Key": stack.key})
    datasets = [dcmread(p) for p in sorted(series.planning.iterdir())]
    datasets += [dcmread(p) for p in sorted(series.mvcts[6].iterdir())]
    answer = client.store_instances(datasets=datasets)
    assert len(answer.ReferencedSOPSequence) == len(datasets)
    assert "FailedSOPSequence" not in answer
    fraction = stack.registered(sf.PATIENT_ID, series_uid(series.mvcts[6]))
    assert fraction["status"] == "done", fraction
