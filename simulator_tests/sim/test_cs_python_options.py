"""`waferscale cs_python` simulator options: --trace writes a Perfetto-readable trace of the
run, --random-task-order runs the same kernel correctly under another task order, --stats
writes per-PE counters, and --engine picks the PE path (both give the same counters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from waferscale.cli import main

GEMV = Path(__file__).resolve().parents[2] / "csl" / "gemv"


def compile_gemv(tmp_path, monkeypatch, arch: str, fp16: int) -> None:
    """A copy of csl/gemv on 3x3 PEs, compiled into ./out; the test runs in its directory."""
    work = tmp_path / "gemv"
    shutil.copytree(GEMV, work)
    monkeypatch.chdir(work)
    assert main(["cslc", "layout.csl", f"--arch={arch}", "--fabric-dims=10,5",
                 "--fabric-offsets=4,1", f"--params=P_c:3,P_r:3,M:7,N:5,fp16:{fp16}", "-o",
                 "out", "--memcpy", "--channels=1"]) == 0


def test_trace_and_random_order(tmp_path, monkeypatch, capsys):
    compile_gemv(tmp_path, monkeypatch, "wse3", 0)
    trace = tmp_path / "t.json"
    assert main(["cs_python", "--trace", str(trace), "--random-task-order", "--seed", "5",
                 "run.py", "--name", "out"]) == 0
    assert "SUCCESS!" in capsys.readouterr().out
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert len(tracks) == 9                                  # one track per PE
    cats = {e["cat"] for e in events if e["ph"] == "X"}
    assert {"task", "dsd"} <= cats


def test_stats_and_engine_choice(tmp_path, monkeypatch, capsys):
    compile_gemv(tmp_path, monkeypatch, "wse2", 1)
    stats = {}
    for engine in ("compiled", "python"):
        path = tmp_path / f"{engine}.json"
        assert main(["cs_python", "--engine", engine, "--stats", str(path), "run.py",
                     "--name", "out"]) == 0
        assert "SUCCESS!" in capsys.readouterr().out
        stats[engine] = json.loads(path.read_text())
    assert stats["compiled"] == stats["python"]          # the two paths agree on every counter
    s = stats["compiled"]
    assert len(s["pes"]) == 9 and s["cycles"] > 0
    for pe in s["pes"]:
        assert pe["busy"] > 0 and pe["tasks_run"] >= 1   # every PE computed
        assert 0 <= pe["idle"] < s["cycles"] and pe["stall"] >= 0
