"""The README's commands and the CI script stay in sync."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"^    \$ (.+)$", (ROOT / "README.md").read_text(), re.M)


def test_readme_has_the_setup_and_the_test_command() -> None:
    setup, test = readme_commands()[:2]
    assert "waferscale check --all" in setup
    assert test.endswith("python -m pytest -q") and "'.[test]'" in test


def test_ci_runs_static_checks_then_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    ruff = script.index("ruff check runtime simulator_tests")
    mypy = script.index("python -m mypy")
    tests = script.index('bash -c "$test_command"')
    assert ruff < tests and mypy < tests
    assert "sed -n 's/^    \\$ //p' README.md | sed -n 2p" in script


def test_main_job_decodes_on_the_simulated_wafer() -> None:
    # The main job is SmolLM2 decoding on the simulated wafer; the answer to this prompt is
    # a golden decode ("The capital of France is Paris.", 8 tokens with the end of turn), and
    # simulator_tests/decode/test_smollm_wafer.py (slow) checks it on the wafer.
    setup = readme_commands()[0]
    assert setup.endswith('waferscale generate --backend sim --chat '
                          '"What is the capital of France?" --max-tokens 12')
