"""The host helper the kernels' run.py scripts share (waferscale.host.kernel_run)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from waferscale.host import kernel_run
from waferscale.host.kernel_run import check_error, compile_params, gamma, host_args

CSL = Path(__file__).resolve().parents[2] / "csl"


def test_gamma_and_roundoffs() -> None:
    assert kernel_run.U_F32 == 2.0**-24 and kernel_run.U_F16 == 2.0**-11
    assert gamma(10) == pytest.approx(10 * 2.0**-24 / (1 - 10 * 2.0**-24), rel=1e-15)
    assert gamma(3, kernel_run.U_F16) == 3 * 2.0**-11 / (1 - 3 * 2.0**-11)


def test_compile_params_and_args(tmp_path: Path) -> None:
    (tmp_path / "out.json").write_text(json.dumps({"params": {"M": "4", "fp16": "0"}}))
    assert compile_params(str(tmp_path)) == {"M": "4", "fp16": "0"}
    args = host_args(["--name", "out", "--cmaddr", "1.2.3.4:9000"])
    assert (args.name, args.cmaddr) == ("out", "1.2.3.4:9000")


def test_check_error_prints_and_fails_over_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    check_error(np.array([1e-7, 2e-7]), np.array([1e-6, 1e-6]), "y - y_exact")
    assert capsys.readouterr().out == "max |y - y_exact| = 2.000e-07, max allowed = 1.000e-06\n"
    with pytest.raises(AssertionError, match=r"\|y - y_exact\| exceeds"):
        check_error(np.array([1e-7, 2e-6]), np.array([1e-6, 1e-6]), "y - y_exact")


@pytest.mark.parametrize("script", sorted(CSL.glob("*/run.py")), ids=lambda p: p.parent.name)
def test_run_scripts_define_no_copy_of_the_shared_helpers(script: Path) -> None:
    tree = ast.parse(script.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert not (defined | assigned) & set(kernel_run.__all__)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "waferscale.host.kernel_run" for n in imports)
