"""Appliance mode end to end: Cerebras' official client (``cerebras-sdk`` 2.10.0, in a venv
of its own) runs our scripts (scripts/) against ``waferscale appliance-server``.

Each script checks its own results with NumPy and prints PASS; the tests check what the client
printed and what the server logged.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import tarfile
import time
from pathlib import Path

import pytest
from appliance_harness import APP, SCRIPTS, Client, Server

# A hang guard, not a speed check: making the client's venv (first run) takes about a minute.
pytestmark = pytest.mark.timeout(600)


def test_compile_artifact_holds_the_program(artifact: Path) -> None:
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    top = artifact.name.removesuffix(".tar.gz")
    assert {f"{top}/layout.csl", f"{top}/pe.csl", f"{top}/.csl_bin_name",
            f"{top}/out/waferscale.json", f"{top}/out/bin/out_rpc.json"} <= set(names)


def test_second_compile_comes_from_the_cache(client: Client, artifact: Path,
                                             tmp_path: Path) -> None:
    r = client.run("compile_app.py", str(APP), "artifact.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Application was found in the compile cache" in r.stderr
    assert json.loads((tmp_path / "artifact.json").read_text())["artifact"].endswith(
        artifact.name)


def test_memcpy_launch_and_nonblocking_wait_two_clients_at_once(
        client: Client, artifact: Path, tmp_path: Path) -> None:
    """Both orders and widths, launch, task.wait(), the debug helper; two clients at once."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    procs = []
    for d in dirs:
        d.mkdir()
        procs.append(client.popen("memcpy_launch.py", str(artifact), cwd=d))
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, out + err
        assert out.splitlines()[-1] == "PASS", out
        assert "ok non-blocking error at wait" in out and "no_such_function" in out


def test_compile_error_reaches_the_client_with_its_location(client: Client,
                                                            tmp_path: Path) -> None:
    app = tmp_path / "bad_app"
    shutil.copytree(APP, app)
    pe = app / "pe.csl"
    pe.write_text(pe.read_text().replace("x_buf[i] * a;", "x_buf[i] * undefined_name;"))
    line = next(i for i, t in enumerate(pe.read_text().splitlines(), 1) if "undefined_name" in t)
    r = client.run("compile_error.py", str(app), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SdkCompiler.compile() failed" in r.stdout
    assert f"pe.csl:{line}:27: error: use of undeclared identifier 'undefined_name'" \
        in r.stderr


def test_launcher_stages_and_runs_a_cs_python_script(client: Client, artifact: Path,
                                                     tmp_path: Path) -> None:
    r = client.run("launcher.py", str(artifact), str(SCRIPTS / "launched_host.py"),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "launched host script: PASS" in r.stdout


@pytest.mark.parametrize("when, marker, why", [
    # Killed mid-stream, both its call and its heartbeat stream break: either is noticed first.
    ("mid-stream", "MID-STREAM", "client went away"),
    ("idle", "IDLE", "client went away (heartbeat stream broken)")])
def test_killed_client_frees_its_runtime(client: Client, server: Server, artifact: Path,
                                         tmp_path: Path, when: str, marker: str,
                                         why: str) -> None:
    """A client killed in the middle of a memcpy stream, or between calls: the server ends
    its job, frees its runtime, and keeps serving."""
    p = client.popen("vanish.py", str(artifact), when, cwd=tmp_path)
    assert p.stdout is not None
    for line in p.stdout:
        if marker in line:
            break
    else:
        raise AssertionError(f"vanish.py ended early: {p.communicate()}")
    job = _last_job(server)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    # Wait for the server to notice (no deadline: the suite's timeout guards against a hang).
    while f"job {job}: runtime freed" not in server.log_text():
        time.sleep(0.1)
    assert f"job {job} ended: {why}" in server.log_text()
    (tmp_path / "after").mkdir()
    r = client.run("memcpy_launch.py", str(artifact), cwd=tmp_path / "after")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "PASS", r.stdout + r.stderr


def _last_job(server: Server) -> str:
    """The id of the job created last."""
    return re.findall(r"job (\S+) \(\w+\) created", server.log_text())[-1]
