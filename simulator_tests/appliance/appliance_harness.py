"""Fixtures and helpers of the appliance-mode tests (conftest.py registers the fixtures):
Cerebras' official client in a venv of its own, and ``waferscale appliance-server`` on
127.0.0.1 (a free port) for it to talk to.

The venv (``cerebras-sdk==2.10.0`` from the package index) is made once and reused: it lives
in ``$WAFERSCALE_SDK_VENV`` if set, else ``$XDG_CACHE_HOME/waferscale/venvs/cerebras-sdk-2.10.0
-py3.X`` (``~/.cache/...``), and counts as complete once its marker file is written. Without a
package index (no network) the fixture fails with a message saying so: these tests are never
skipped silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import waferscale

SDK_REQUIREMENT = "cerebras-sdk==2.10.0"
HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
APP = HERE / "app"
MARKER = ".waferscale-complete"


def venv_dir() -> Path:
    override = os.environ.get("WAFERSCALE_SDK_VENV")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    tag = f"{SDK_REQUIREMENT.replace('==', '-')}-py{sys.version_info[0]}.{sys.version_info[1]}"
    return Path(base) / "waferscale" / "venvs" / tag


def _make_venv(d: Path) -> None:
    if d.exists():
        shutil.rmtree(d)
    venv.EnvBuilder(with_pip=True, clear=True).create(d)
    py = d / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          SDK_REQUIREMENT], capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.fail(f"cannot install {SDK_REQUIREMENT} into {d} (is the package index "
                    f"reachable?); pip said:\n{pip.stdout[-2000:]}{pip.stderr[-3000:]}\n"
                    "Point WAFERSCALE_SDK_VENV at a venv that has it to run these tests "
                    "offline.", pytrace=False)
    check = subprocess.run([str(py), "-c", "import cerebras.sdk.client"], capture_output=True,
                           text=True)
    if check.returncode != 0:
        pytest.fail(f"{SDK_REQUIREMENT} was installed into {d} but does not import:\n"
                    f"{check.stderr[-3000:]}", pytrace=False)
    (d / MARKER).write_text(SDK_REQUIREMENT + "\n")


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The Python of a venv with Cerebras' official appliance client."""
    d = venv_dir()
    if not (d / MARKER).is_file():
        _make_venv(d)
    return d / "bin" / "python"


@dataclass
class Server:
    address: str
    config: Path
    log: Path
    workdir: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _server_env(cache: Path) -> dict[str, str]:
    """The environment of the server: this waferscale first on the path, a compile cache of
    the session."""
    env = dict(os.environ)
    env["WAFERSCALE_CACHE_DIR"] = str(cache)
    root = str(Path(waferscale.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``waferscale appliance-server`` on 127.0.0.1 with a free port, for the session."""
    d = tmp_path_factory.mktemp("appliance-server")
    config, log = d / "csconfig.json", d / "server.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "waferscale", "appliance-server", "--host", "127.0.0.1",
             "--port", "0", "--workdir", str(d / "work"), "--write-config", str(config)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=_server_env(d / "cache"))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"appliance-server did not start: {line}{log.read_text()}", pytrace=False)
    try:
        yield Server(line.rsplit(" ", 1)[-1].strip(), config, log, d / "work")
    finally:
        proc.terminate()
        assert proc.wait() == 0, log.read_text()


@dataclass
class Client:
    """Runs our official-client scripts (scripts/) in the SDK venv against the server."""
    python: Path
    server: Server

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["CSCONFIG_PATH"] = str(self.server.config)
        return env

    def cmd(self, script: str, *args: str) -> list[str]:
        return [str(self.python), str(SCRIPTS / script), *args]

    def run(self, script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(script, *args), cwd=cwd, env=self.env(),
                              capture_output=True, text=True)

    def popen(self, script: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(self.cmd(script, *args), cwd=cwd, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def client(sdk_python: Path, server: Server) -> Client:
    return Client(sdk_python, server)


@pytest.fixture(scope="session")
def artifact(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test application compiled through the official client (its first compile)."""
    d = tmp_path_factory.mktemp("compile")
    r = client.run("compile_app.py", str(APP), "artifact.json", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Application was found in the compile cache" not in r.stderr
    name = json.loads((d / "artifact.json").read_text())["artifact"]
    return (d / name).resolve()
