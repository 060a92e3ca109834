"""Every kernel's ``run.py`` runs, unmodified, under ``waferscale cs_python`` after the
``cslc`` line of each of its ``commands_wse*.sh``, as a user would run it."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from waferscale.cli import main

CSL = Path(__file__).resolve().parents[2] / "csl"
SCRIPTS = sorted(CSL.glob("*/commands_wse*.sh"))


def commands(script: Path) -> list[list[str]]:
    text = script.read_text().replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in text.splitlines()]
    return [w for w in lines if w and w[0] in ("cslc", "cs_python")]


def test_every_kernel_has_commands() -> None:
    kernels = {p.parent for p in CSL.glob("*/layout.csl")}
    assert kernels and kernels == {s.parent for s in SCRIPTS if s.name == "commands_wse3.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: f"{s.parent.name}-{s.stem[-4:]}")
def test_run_py_passes_under_cs_python(script: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # A copy of the whole csl/ tree: some kernels import a sibling's module along
    # --import-path=.. (csl/; test_kernel_copy.py compiles them copied alone).
    shutil.copytree(CSL, tmp_path / "csl", ignore=shutil.ignore_patterns("out", "__pycache__"))
    monkeypatch.chdir(tmp_path / "csl" / script.parent.name)
    cmds = commands(script)
    assert [c[0] for c in cmds] == ["cslc", "cs_python"]
    for words in cmds:
        assert main(words) == 0, shlex.join(words)
    assert "SUCCESS" in capsys.readouterr().out
