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


def documented_compile_lines() -> list[tuple[Path, Path, list[str]]]:
    """Every ``waferscale check``/``waferscale cslc`` line with a concrete layout file in the
    READMEs and docs (continuation lines joined), with the page it appears on."""
    found = []
    for page in READMES:
        text = page.read_text().replace("\\\n", " ")
        cwd = page.parent
        for line in text.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("cd "):           # as in `cd csl/gemv` before the commands
                cwd = ROOT / line.split()[1]
            if not line.startswith(("waferscale check ", "waferscale cslc ")):
                continue
            words = shlex.split(line, comments=True)
            # Concrete lines only: LAYOUT.csl, <flags> and [--options] are placeholders.
            if any(w.endswith(".csl") and not Path(w).stem.isupper() for w in words) and \
                    not any(w.startswith(("<", "[")) for w in words):
                found.append((page, cwd, words))
    return found


DOCUMENTED = documented_compile_lines()


def test_documented_compile_lines_are_found() -> None:
    assert len(DOCUMENTED) >= 10


@pytest.mark.parametrize("page, cwd, words", DOCUMENTED,
                         ids=[f"{p.relative_to(ROOT)}:{i}" for i, (p, _, _) in enumerate(DOCUMENTED)])
def test_documented_compile_line_elaborates(page: Path, cwd: Path, words: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Run where the line means to be run: after the page's `cd DIR`, else the page's own
    # directory for ./layout.csl, else the repository root (csl/<kernel>/layout.csl). `cslc`
    # is run as `check` (same flags, -o accepted), so nothing is written.
    layout = next(w for w in words if w.endswith(".csl"))
    where = next((d for d in (cwd, ROOT) if (d / layout).is_file()), None)
    assert where is not None, f"{page}: cannot find {layout} for {shlex.join(words)}"
    monkeypatch.chdir(where)
    assert main(["check", "-q", *words[2:]]) == 0, shlex.join(words)
