"""The project's own fuzz harness (``python -m waferscale.fuzz``): a bounded, deterministic
slice of each campaign finds no crash and no hang, and the harness itself reports, deduplicates,
minimizes and saves what it finds (checked on a planted crash)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from waferscale import fuzz

SLICES = {"parser": 150, "layout": 25, "sim": 12}


@pytest.mark.parametrize("campaign", sorted(SLICES))
def test_bounded_campaign_finds_no_crash_and_no_hang(campaign: str, tmp_path: Path) -> None:
    rep = fuzz.run_campaign(campaign, SLICES[campaign], seed=14, out=tmp_path,
                            time_limit_s=30.0, minimize_tries=50)
    assert rep.inputs == SLICES[campaign]
    assert rep.ok + rep.clean + rep.crashes + rep.hangs == rep.inputs
    assert rep.clean > 0                      # the mutants do reach error paths
    details = {k: f.detail for k, f in rep.sites.items()}
    assert (rep.crashes, rep.hangs) == (0, 0), details


def test_campaigns_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = fuzz.run_campaign("parser", 40, seed=3, out=tmp_path / "a", time_limit_s=30.0)
    b = fuzz.run_campaign("parser", 40, seed=3, out=tmp_path / "b", time_limit_s=30.0)
    assert (a.ok, a.clean, a.crashes) == (b.ok, b.clean, b.crashes)


def test_classify_reports_clean_errors_crashes_and_hangs() -> None:
    from waferscale.lang.parser import parse_source

    def crash() -> None:
        raise KeyError("boom")

    def spin() -> None:
        while True:
            pass

    assert fuzz.classify(lambda: parse_source("const x = ;", "f.csl"), 10.0)[0] == "clean"
    assert fuzz.classify(lambda: parse_source("const x = 1;", "f.csl"), 10.0)[0] == "ok"
    outcome, site, detail = fuzz.classify(crash, 10.0)
    assert outcome == "crash" and site.startswith("KeyError@") and "boom" in detail
    assert fuzz.classify(spin, 0.2)[:2] == ("hang", "hang")


def test_minimize_keeps_the_failure_and_shrinks() -> None:
    text = "\n".join(f"line {i}" for i in range(40)) + "\nBAD\n" + "tail " * 30
    small = fuzz.minimize(text, lambda t: "BAD" in t, max_tries=400)
    assert "BAD" in small and len(small) <= 5


def test_crashes_are_deduplicated_by_site_and_saved(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted parser bug (every input containing ';' crashes at one site) is one site,
    saved as a minimized reproducer with its traceback."""
    real = fuzz.ParserTarget.run

    def buggy(self: fuzz.ParserTarget, text: str, ctx: object) -> None:
        if ";" in text:
            raise ZeroDivisionError("planted")
        real(self, text, ctx)

    monkeypatch.setattr(fuzz.ParserTarget, "run", buggy)
    rep = fuzz.run_campaign("parser", 30, seed=1, out=tmp_path, time_limit_s=30.0,
                            minimize_tries=5000)
    assert rep.crashes > 1
    assert list(rep.sites) == [next(iter(rep.sites))]          # one site
    (finding,) = rep.sites.values()
    assert finding.site.startswith("ZeroDivisionError@")
    assert finding.saved is not None and finding.saved.read_text() == ";"
    assert "planted" in finding.saved.with_suffix(".txt").read_text()


def test_mutator_is_seeded() -> None:
    pool = ["const x = 1;", "var y: [4]f32;"]
    a = fuzz.Mutator(random.Random(5), pool)
    b = fuzz.Mutator(random.Random(5), pool)
    assert [a.mutate(pool[0]) for _ in range(20)] == [b.mutate(pool[0]) for _ in range(20)]
