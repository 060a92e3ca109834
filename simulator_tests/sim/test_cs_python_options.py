"""`waferscale cs_python` simulator options: --trace writes a Perfetto-readable trace of the
run, and --random-task-order runs the same kernel correctly under another task order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from waferscale.cli import main

GEMV = Path(__file__).resolve().parents[2] / "csl" / "gemv"


def test_trace_and_random_order(tmp_path, monkeypatch, capsys):
    work = tmp_path / "gemv"
    shutil.copytree(GEMV, work)
    monkeypatch.chdir(work)
    assert main(["cslc", "layout.csl", "--arch=wse3", "--fabric-dims=10,5",
                 "--fabric-offsets=4,1", "--params=P_c:3,P_r:3,M:7,N:5,fp16:0", "-o", "out",
                 "--memcpy", "--channels=1"]) == 0
    trace = tmp_path / "t.json"
    assert main(["cs_python", "--trace", str(trace), "--random-task-order", "--seed", "5",
                 "run.py", "--name", "out"]) == 0
    assert "SUCCESS!" in capsys.readouterr().out
    events = json.loads(trace.read_text())["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert len(tracks) == 9                                  # one track per PE
    cats = {e["cat"] for e in events if e["ph"] == "X"}
    assert {"task", "dsd"} <= cats
