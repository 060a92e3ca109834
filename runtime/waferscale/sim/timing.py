"""The cycle-approximate timing model: every cost in one place.

docs/timing-model.md lists each number with its source. Costs are in PE clock cycles; the
simulator never converts to seconds itself (reports that do say which clock they assume:
850 MHz in Cerebras' examples, 1.1 GHz in WaferLLM).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimingModel:
    """Attributes:
        statement: one scalar CSL statement of run-time code (assumption: ~1 instruction).
        branch: one loop iteration or call (assumption).
        task_start: picking and entering a task (assumption; topic-13's log shows ~2 cycles
            per extra hop including task dispatch).
        dsd_op_setup: issuing one DSD operation, before its elements stream (assumption).
    DSD element throughput is ``ceil(n / simd)`` with the SIMD widths of
    ``sim/builtins_rt.DSD_OPS`` (csl-language.md §4.1, docs appendix). Fabric latency is one
    cycle per hop (sim/fabric.py, docs/fabric-model.md).
    """
    statement: int = 1
    branch: int = 1
    task_start: int = 2
    dsd_op_setup: int = 1


DEFAULT_TIMING = TimingModel()
