"""A real ``mvct-guide serve --dicom-port`` and dcmtk as the console: C-STORE in, REG out.

One service process for the module (workers warm up once): dcmtk's ``echoscu`` and ``storescu``
talk to its SCP, the sample planning CT and MVCT become a registered fraction, and its REG is read
back with pydicom, ``dcmdump`` and ``dciodvfy``. pynetdicom's SCU sends what dcmtk refuses to
send (a damaged data set). Needs dcmtk and dicom3tools (CI installs them; here they may skip).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import service_fixtures as sf
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import func, select

from app.db.engine import make_engine, make_session_factory, make_writer_factory
from app.db.migrate import upgrade
from app.db.models import Role
from app.db.models_dicom import DicomInstance
from app.dicom.reg_build import planning_to_daily_of
from app.services.accounts import create_api_key

SAMPLES = sf.PROJECT_ROOT / "sample_images"
AE_TITLE = "MVCTGUIDE"
SAMPLE_PATIENT = "MVCT-SAMPLE-01"


def system_tool(name: str) -> str:
    """The Debian binary ``name``, never a same-named script of the virtualenv (pynetdicom
    installs its own ``storescu`` and ``echoscu``)."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and not candidate.resolve().is_relative_to(Path(sys.prefix)):
            return str(candidate)
    pytest.skip(f"{name} is not installed (apt-get install dcmtk dicom3tools)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    base_url: str
    dicom_port: int
    key: str
    sessions: Any

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.base_url}{path}", headers={"X-API-Key": self.key}, timeout=60)

    def instances(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(DicomInstance)) or 0)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    for tool in ("echoscu", "storescu"):
        system_tool(tool)
    root = tmp_path_factory.mktemp("dicom-scp")
    url = f"sqlite:///{root / 'mvct-guide.sqlite3'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_writer_factory(engine).begin() as session:
        key = create_api_key(session, "console-scp", Role.CONSOLE, "test")
    port, dicom_port = free_port(), free_port()
    env = {
        **os.environ,
        "MVCT_GUIDE_WORKERS": "1",
        "MVCT_GUIDE_DICOM_ALLOWED_AES": "STORESCU,ECHOSCU,PYNETDICOM",
        "MVCT_GUIDE_DICOM_PLANNING_PATTERN": "^Planning CT",
        "MVCT_GUIDE_DICOM_QUIET_S": "1",
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port),
         "--dicom-port", str(dicom_port), "--dicom-ae-title", AE_TITLE,
         "--data-dir", str(root / "data"), "--database-url", url],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        service = Service(f"http://127.0.0.1:{port}", dicom_port, key, make_session_factory(engine))
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, (root / "server.log").read_text()
            try:
                if httpx.get(f"{service.base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (root / "server.log").read_text()
            time.sleep(0.3)
        yield service
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)
        log.close()
        engine.dispose()


def echo(
    service: Service, calling: str, called: str = AE_TITLE
) -> subprocess.CompletedProcess[str]:
    command = [system_tool("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1"]
    return subprocess.run([*command, str(service.dicom_port)], capture_output=True, text=True)


def store(service: Service, *paths: Path) -> subprocess.CompletedProcess[str]:
    command = [system_tool("storescu"), "-aet", "STORESCU", "-aec", AE_TITLE, "+sd", "+r"]
    command += ["127.0.0.1", str(service.dicom_port), *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def wait_registered(service: Service, patient_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        log = service.get(f"/api/v1/patients/{patient_id}/fractions").json()
        done = [f for f in log.get("fractions", []) if f["status"] in ("done", "failed")]
        if done or time.monotonic() > deadline:
            assert done, f"no registered fraction for {patient_id}: {log}"
            return dict(service.get(f"/api/v1/fractions/{done[0]['fraction_id']}").json())
        time.sleep(0.3)


def test_echoscu_is_answered_and_unknown_calling_or_called_ae_titles_are_refused(
    service: Service,
) -> None:
    assert echo(service, "ECHOSCU").returncode == 0
    intruder = echo(service, "INTRUDER")
    assert intruder.returncode != 0
    assert "calling ae title not recogni" in intruder.stderr.lower()
    misaddressed = echo(service, "ECHOSCU", called="SOMEONEELSE")
    assert misaddressed.returncode != 0
    assert "called ae title not recogni" in misaddressed.stderr.lower()


def test_storescu_sends_the_sample_study_and_the_registered_fraction_comes_back_as_a_reg(
    service: Service, tmp_path: Path
) -> None:
    package = (SAMPLES / "rtstruct.dcm", SAMPLES / "rtplan.dcm")
    sent = store(service, *package, SAMPLES / "planning", SAMPLES / "mvct")
    assert sent.returncode == 0, sent.stderr
    fraction = wait_registered(service, SAMPLE_PATIENT)
    assert fraction["status"] == "done", fraction
    # the planning package came with the CT: attached by Frame of Reference before the MVCT
    assert fraction["isocenter_source"] == "rtplan", fraction
    assert {r["structure"] for r in fraction["residuals"]} == {"BODY", "PTV", "SpinalCord"}
    course = service.get(f"/api/v1/courses/{fraction['course_id']}").json()
    assert course["rtstruct"]["sop_instance_uid"] == dcmread(package[0]).SOPInstanceUID
    assert fraction["mvct_series_instance_uid"] == str(
        dcmread(next((SAMPLES / "mvct").glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    )
    response = service.get(f"/api/v1/fractions/{fraction['id']}/registration.dcm")
    assert response.status_code == 200
    path = tmp_path / "registration.dcm"
    path.write_bytes(response.content)
    expected = np.array(fraction["planning_to_daily_lps"])
    assert np.abs(planning_to_daily_of(dcmread(path)) - expected).max() < 1e-9
    # dcmtk reads the same two matrices: identity for the planning CT, M⁻¹ for the MVCT
    dump = subprocess.run(
        [system_tool("dcmdump"), "+L", "+P", "3006,00c6", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    matrices = [
        np.array([float(v) for v in values.split("\\")]).reshape(4, 4)
        for values in re.findall(r"DS \[([^\]]+)\]", dump)
    ]
    assert len(matrices) == 2
    assert np.allclose(matrices[0], np.eye(4))
    assert np.allclose(np.linalg.inv(matrices[1]), expected, atol=1e-9)
    validator = shutil.which("dciodvfy")
    if validator is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    report = subprocess.run([validator, str(path)], capture_output=True, text=True)
    errors = [line for line in report.stderr.splitlines() if line.startswith("Error")]
    assert errors == [], report.stderr


def test_an_mr_image_is_not_negotiated_a_damaged_data_set_fails_and_nothing_stored_is_lost(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import AE, _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as-is

    mvct = sorted((SAMPLES / "mvct").glob("*.dcm"))
    assert store(service, mvct[0]).returncode == 0
    before = service.instances()
    assert before >= 1
    mr = dcmread(mvct[1])
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = MRImageStorage
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    mr.Modality = "MR"
    mr.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    refused = store(service, tmp_path / "mr.dcm")
    assert refused.returncode != 0
    assert "no presentation context" in (refused.stdout + refused.stderr).lower()

    # a CT data set that arrives damaged: valid file meta, then bytes that are no data set
    damaged = tmp_path / "damaged.dcm"
    good = dcmread(mvct[2])
    meta_buffer = io.BytesIO()
    good.save_as(meta_buffer, enforce_file_format=True)
    meta_end = 132 + 12 + int(good.file_meta.FileMetaInformationGroupLength)
    damaged.write_bytes(
        meta_buffer.getvalue()[:meta_end] + b"\x08\x00\x18\x00UI\xff\xff" + b"x" * 40
    )
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(good.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", service.dicom_port, ae_title=AE_TITLE)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(damaged)
    finally:
        assoc.release()
    assert 0xC000 <= int(status.Status) <= 0xCFFF
    assert status.get("ErrorComment")  # why, in words (here: the UIDs cannot be read)
    assert service.instances() == before
    fractions = service.get(f"/api/v1/patients/{SAMPLE_PATIENT}/fractions").json()["fractions"]
    assert all(f["status"] == "done" for f in fractions)
