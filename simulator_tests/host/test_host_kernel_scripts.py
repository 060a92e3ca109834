"""The project's own GEMV kernel, compiled with the cslc line of its commands_wse3.sh and driven by
its unmodified run.py through `waferscale cs_python`, on a FakeDevice whose `compute` does the
kernel's arithmetic in NumPy. This checks the host side end to end (compile output, symbol ids,
W tiles in ROW_MAJOR blocks, 16-bit words, D2H from the root column) against a real SDK-style
host script; the kernel's CSL itself is the simulator's business."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
from host_fake_device import FakeDevice
from waferscale.host import sdkruntime
from waferscale.host.cli import register
from waferscale.lang.cli import kernel_commands

GEMV = Path(__file__).resolve().parents[2] / "csl" / "gemv"

pytestmark = pytest.mark.skipif(not (GEMV / "run.py").is_file(), reason="csl/gemv not present")


def as_elems(words: np.ndarray, bits: int) -> np.ndarray:
    if bits == 16:
        return words.astype(np.uint16).view(np.float16)
    return words.view(np.float32)


def gemv_compute(dev: FakeDevice, args) -> None:
    """y tile of row py at the root column = sum over px of W(px, py) @ x(px) (x tiles live on
    the top row; W tiles are stored column-major: W[j*m + i])."""
    bits = dev.exports()["W"].elem_bits
    root = (dev.width - 1) // 2
    for py in range(dev.height):
        acc = None
        for px in range(dev.width):
            x = as_elems(dev.words("x", px, 0), bits).astype(np.float64)
            w = as_elems(dev.words("W", px, py), bits).astype(np.float64)
            m = w.size // x.size
            part = w.reshape(x.size, m).T @ x
            acc = part if acc is None else acc + part
        assert acc is not None
        dev.memory[("y", (root, py))] = acc.astype(np.float32).view(np.uint32)


def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="waferscale")
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return int(args.func(args) or 0)


@pytest.mark.parametrize("fp16", ["0", "1"])
def test_gemv_run_py_unmodified(tmp_path: Path, monkeypatch, capsys, fp16: str) -> None:
    app = tmp_path / "gemv"
    shutil.copytree(GEMV, app)
    monkeypatch.chdir(app)
    (cslc_args,) = [c for c in kernel_commands(app) if "--arch=wse3" in c]
    cslc_args = [a.replace("fp16:0", f"fp16:{fp16}") for a in cslc_args]
    assert run(["cslc", *cslc_args]) == 0
    monkeypatch.setenv(sdkruntime.ENV_DEVICE_FACTORY, "host_fake_device:FakeDevice.from_output_dir")
    monkeypatch.setattr(FakeDevice, "default_functions", {"compute": gemv_compute})
    assert run(["cs_python", "run.py", "--name", "out"]) == 0, capsys.readouterr().err
    assert "SUCCESS!" in capsys.readouterr().out
    dev = FakeDevice.instances[-1]
    assert dev.exports()["W"].elem_bits == (16 if fp16 == "1" else 32)
    h2d = [e for e in dev.log if e[0] == "memcpy_h2d"]
    assert {e[4] for e in h2d} == {16 if fp16 == "1" else 32}
    kinds = [e[0] for e in dev.log]
    assert kinds.count("launch") == 1 and kinds[-1] == "stop"
    assert "memcpy_d2h" in kinds[kinds.index("launch"):]


KERNELS = sorted(p.parent for p in (GEMV.parent).glob("*/run.py"))


def _simulator_available() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec("waferscale.sim.device") is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _simulator_available(), reason="waferscale.sim.device not present")
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_kernel_commands_run_on_the_simulator(kernel: Path, tmp_path: Path, monkeypatch,
                                              capsys) -> None:
    """Every line of a kernel's commands_wse3.sh, prefixed with `waferscale`, on the real
    simulator (the default device): the use case the host API exists for."""
    import shlex
    # The whole kernel tree: kernels import each other along --import-path=.. (rmsnorm
    # imports allreduce/allreduce.csl).
    shutil.copytree(kernel.parent, tmp_path / "csl")
    app = tmp_path / "csl" / kernel.name
    monkeypatch.chdir(app)
    monkeypatch.delenv(sdkruntime.ENV_DEVICE_FACTORY, raising=False)
    lines = [shlex.split(line, comments=True)
             for line in (app / "commands_wse3.sh").read_text().splitlines()]
    commands = [w for w in lines if w and w[0] in ("cslc", "cs_python")]
    assert [w[0] for w in commands] == ["cslc", "cs_python"]
    for words in commands:
        assert run(words) == 0, f"{shlex.join(words)}\n{capsys.readouterr().err}"
    assert "SUCCESS!" in capsys.readouterr().out
