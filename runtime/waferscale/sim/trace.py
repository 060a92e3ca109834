"""Chrome trace-event JSON (opens in Perfetto / chrome://tracing).

One process, one track (thread) per PE named ``PE(x,y)``; a span per task run and per DSD
operation (``cat`` = ``task`` / ``dsd``), and a counter track of each PE's busy input queues.
Timestamps are simulated cycles written as microseconds (1 cycle = 1 µs in the viewer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class TraceRecorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._named: set[int] = set()

    def _track(self, pe) -> int:
        tid = pe.y * 100000 + pe.x
        if tid not in self._named:
            self._named.add(tid)
            self.events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid,
                                "args": {"name": f"PE({pe.x},{pe.y})"}})
            self.events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid,
                                "args": {"sort_index": tid}})
        return tid

    def span(self, pe, name: str, cat: str, start: int, end: int, **args: Any) -> None:
        self.events.append({"name": name, "cat": cat, "ph": "X", "pid": 0,
                            "tid": self._track(pe), "ts": start, "dur": max(0, end - start),
                            **({"args": args} if args else {})})

    def counter(self, pe, name: str, cycle: int, values: dict[str, int]) -> None:
        self.events.append({"name": f"{name} PE({pe.x},{pe.y})", "ph": "C", "pid": 0,
                            "ts": cycle, "args": values})

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"traceEvents": self.events,
                                          "displayTimeUnit": "ns",
                                          "otherData": {"time_unit": "cycles"}}))
