"""The documentation a newcomer reads: an index that links every page, no paths of a
particular machine, no internal work-item references, and the simulator page's example runs
as written."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from waferscale.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "README.md")
READMES = [ROOT / "README.md", DOCS / "README.md", *PAGES, *sorted(ROOT.glob("csl/**/*.md"))]


def test_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    assert {p.name for p in PAGES} <= linked


@pytest.mark.parametrize("page", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_machine_paths_or_work_items(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"(?<![\w.])/(work|root|home|Users)/", text)
    assert not re.search(r"\bissue \d+|\bissue #\d+", text, re.I)


def shell_lines(block: str) -> list[list[str]]:
    """Commands of an indented shell block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [words for words in commands if words]


def test_simulator_page_example_runs_as_written(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    text = (DOCS / "simulator.md").read_text()
    block = re.search(r"\n\n((?:    .*\n)+)", text)
    assert block is not None
    commands = shell_lines("\n".join(line[4:] for line in block[1].splitlines()))
    assert commands[0][0] == "cd"
    # Run in a copy of the repository's kernels, so the repository is not written to.
    shutil.copytree(ROOT / "csl", tmp_path / "csl")
    monkeypatch.chdir(tmp_path / commands[0][1])
    ran = 0
    for words in commands[1:]:
        assert words[0] == "waferscale", words
        assert main(words[1:]) == 0, words
        ran += 1
    assert ran == 2 and "SUCCESS!" in capsys.readouterr().out
