"""The timing model on microprograms whose cycle counts are derived by hand below from the cost
table (sim/timing.py, docs/timing-model.md), on both PE paths and both arches.

What each derivation charges, in the order the PE runs it:
* a statement costs ``statement``; a block that is the body of a taken ``if`` is a statement
  too; a call (of a task, a function or a library intrinsic such as ``get_timestamp``) costs
  ``branch`` before its body, and ``get_timestamp`` then reads the PE's own clock;
* a DSD op costs ``dsd_op_setup`` (+ ``fabric_op_start`` when an operand is a fabric DSD)
  + ceil(n / simd) when it starts; an async op starts as a microthread at its issuer's time,
  behind the unfinished previous op of the same microthread (its queue);
* a wavelet pushed into an output queue in cycle t is readable by the next PE's CE in cycle
  t + L, L = ce_to_router_latency + hop_latency + router_to_ce_latency (sim/fabric.py);
* a data task whose wavelet is readable in cycle t starts in cycle t (if the PE's main thread
  is free) and runs its first statement ``task_start`` cycles later.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from waferscale.host.device import DeadlockError
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.builtins_rt import DSD_OPS
from waferscale.sim.device import SimulatorDevice
from waferscale.sim.fabric import cpp_available
from waferscale.sim.simulator import SimOptions
from waferscale.sim.timing import DEFAULT_TIMING as TM

PROGRAMS = Path(__file__).parent / "programs"
ARCHES = ["wse2", "wse3"]
L = TM.ce_to_router_latency + TM.hop_latency + TM.router_to_ce_latency
ST, BR, SETUP, FAB, TS = (TM.statement, TM.branch, TM.dsd_op_setup, TM.fabric_op_start,
                          TM.task_start)


@pytest.fixture(params=["python", "compiled"])
def engine(request) -> str:
    if request.param == "compiled" and not cpp_available():
        pytest.skip("waferscale._fabric is not built (the compiled engine is C++)")
    return request.param


def simd(op: str, arch: str) -> int:
    return DSD_OPS[op].simd[0 if arch == "wse2" else 1]


def device(name: str, arch: str, engine: str, west_buf: int = 0, **params) -> SimulatorDevice:
    opts = CompileOptions(arch=arch, params=tuple((k, str(v)) for k, v in params.items()),
                          memcpy=True, channels=1, width_west_buf=west_buf)
    return SimulatorDevice(elaborate(PROGRAMS / name / "layout.csl", opts),
                           SimOptions(engine=engine))


def stamp(dev: SimulatorDevice, name: str, pe: tuple[int, int]) -> int:
    """A ``<time>`` timestamp (three 16-bit words, least significant first)."""
    w = [int(v) for v in dev.memcpy_d2h(name, [pe], 3, 16)[0]]
    return w[0] | w[1] << 16 | w[2] << 32


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("P,N", [(2, 10), (2, 300), (5, 10), (5, 300), (12, 64)])
def test_a_chain_after_a_long_compute_waits_for_it(engine, arch, P, N):
    """causal_row: PE 0 stamps t0, runs a sync @fmacs over N elements, then sends w[0] with
    an async @fmovs; each further PE adds 1 and sends on (async); the last stamps t1. So this
    is also "an async op after a long sync op": the send may not start before the sweep
    ends."""
    dev = device("causal_row", arch, engine, P=P, N=N)
    w = np.arange(1, N + 1, dtype=np.float32)
    dev.memcpy_h2d("w", [(0, 0)], w.view(np.uint32)[None], 32)
    dev.launch("go", [])
    got = stamp(dev, "t1", (P - 1, 0)) - stamp(dev, "t0", (0, 0))
    send = SETUP + FAB + math.ceil(1 / simd("fmovs", arch))        # a one-wavelet async send
    # PE 0 after its stamp: the @fmacs statement and op (one f32 MAC a cycle on both arches),
    # then the @fmovs statement issues the send, which starts right away.
    first = ST + SETUP + math.ceil(N / simd("fmacs", arch)) + ST + send + L
    # A middle PE: its data task starts when the wavelet is readable: task_start, the call,
    # `if (last)` and the else block, two statements, then its send and the hop.
    middle = TS + BR + ST + ST + 2 * ST + send + L
    # The last PE: task_start, the call, `if (last)`, the then block, the stamp statement
    # and its call.
    last = TS + BR + ST + ST + ST + BR
    assert got == first + (P - 2) * middle + last
    # The must-show bound: never sooner than the compute plus the hops.
    assert got >= N + (P - 1) * TM.hop_latency
    r = dev.memcpy_d2h("result", [(P - 1, 0)], 1, 32)[0].view(np.float32)
    assert r[0] == 3 * w[0] + (P - 2)


def run_micro(arch: str, engine: str, N: int, M: int) -> tuple[SimulatorDevice, int]:
    """timing_micro; returns the device and the cycle at which PE 0's wavelet is readable
    at PE 1, relative to the launch tasks' first stamp t0 (the same on every PE: the three
    launch tasks start together and stamp after the same two statements)."""
    dev = device("timing_micro", arch, engine, N=N, M=M)
    dev.launch("go", [])
    assert len({stamp(dev, "t0", (x, 0)) for x in range(3)}) == 1
    # PE 0 after its stamp: the @fmacs statement and op, the send's statement; the issuer
    # loads the send's DSRs (setup + fabric start), the microthread streams its element.
    push = ST + SETUP + math.ceil(N / simd("fmacs", arch)) + ST + SETUP + FAB + 1
    return dev, push + L


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("N", [60, 300])
def test_two_async_ops_on_one_microthread_run_one_after_the_other(engine, arch, N):
    """timing_micro's PE 1 issues an async receive and then an async send, both on
    microthread 2; the send's .activate task stamps t1."""
    dev, arrival = run_micro(arch, engine, N, M=N + 200)
    got = stamp(dev, "t1", (1, 0)) - stamp(dev, "t0", (1, 0))
    # The receive ends when the wavelet is readable; only then does the send start (its DSRs
    # were loaded long before), stream its one element and push it. The activated task:
    # task_start, the call, the stamp statement and its call.
    assert got == arrival + 1 + TS + BR + ST + BR
    # Side by side, the send would have ended right after its issue: 2 statements and 2
    # setups after t0, plus its element.
    assert got > 2 * (ST + SETUP + FAB) + 1 + TS + BR + ST + BR


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("N", [60, 300])
def test_a_data_task_fed_while_the_main_task_computes_waits_for_it(engine, arch, N):
    """timing_micro's PE 2: its launch task stamps t0, sweeps M elements and stamps t2 while
    PE 1's wavelet arrives; its data task stamps t1."""
    M = N + 200
    dev, arrival = run_micro(arch, engine, N, M)
    t0, t1, t2 = (stamp(dev, n, (2, 0)) for n in ("t0", "t1", "t2"))
    assert t2 - t0 == ST + SETUP + math.ceil(M / simd("fmacs", arch)) + ST + BR
    # The wavelet was readable at PE 2 one hop after PE 1's send (arrival + 1 + L), before
    # t2: the data task starts when the launch task ends, right after its stamp:
    # task_start, the call, the stamp statement and its call.
    assert arrival + 1 + L < t2 - t0
    assert t1 - t2 == TS + BR + ST + BR


def stamps(dev: SimulatorDevice, n: int) -> list[int]:
    """pe_costs' timestamps t0..t(n-1), relative to t0."""
    w = [int(v) for v in dev.memcpy_d2h("t", [(0, 0)], 3 * n, 16)[0]]
    t = [w[3 * k] | w[3 * k + 1] << 16 | w[3 * k + 2] << 32 for k in range(n)]
    return [x - t[0] for x in t]


# pe_costs' stamp(k): the statement, the call of stamp(), its statement and the call of
# get_timestamp, whose clock reading ends the interval.
STAMP = ST + BR + ST + BR


@pytest.mark.parametrize("arch", ARCHES)
def test_math_routines_cost_their_instructions(engine, arch):
    dev = device("pe_costs", arch, engine, K=8, N=8, stride=1)
    dev.launch("math_costs", [])
    t = stamps(dev, 4)
    # Each interval: `a = math.f(a)` (its statement and call, then the routine), then a stamp.
    steps = [ST + BR + TM.math_cost(f) + STAMP for f in ("exp", "sqrt", "inv")]
    assert [t[k + 1] - t[k] for k in range(3)] == steps


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("stride,width", [(1, None), (2, None), (7, 2), (8, 1), (12, 4)])
def test_strided_operands_lower_the_simd_width(engine, arch, stride, width):
    """The appendix's stride rules: 2 runs at full width, 7 at 2, 8 at 1, 12 (% 8 == 4) at
    4, whatever the op's own width."""
    N = 40
    dev = device("pe_costs", arch, engine, K=8, N=N, stride=stride)
    dev.launch("strided", [])
    t = stamps(dev, 3)
    full = simd("fadds", arch)
    assert t[1] == ST + SETUP + math.ceil(N / full) + STAMP
    assert t[2] - t[1] == ST + SETUP + math.ceil(N / min(full, width or full)) + STAMP


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("K", [8, 64])
def test_an_async_op_takes_datapath_cycles_from_the_main_thread(engine, arch, K):
    """pe_costs' `shared`: the launch task issues an async send of K wavelets, sweeps N
    elements and activates `next`, which stamps t1 once the launch task is done."""
    N = 40
    dev = device("pe_costs", arch, engine, K=K, N=N, stride=1)
    dev.launch("shared", [])
    t = stamps(dev, 2)
    e = math.ceil(K / simd("fmovs", arch))      # the send's element cycles
    # The launch task: the send's statement and DSR loads, the sweep, the @activate; the
    # send's e cycles ran on the datapath while the task computed, so it ends e later.
    end = ST + SETUP + FAB + ST + SETUP + math.ceil(N / simd("fmacs", arch)) + ST + e
    assert t[1] == end + TS + BR + STAMP


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("words", [1, 300])
def test_memcpy_copies_take_the_command_overhead_and_the_channel_rate(engine, arch, words):
    dev = device("causal_row", arch, engine, P=2, N=300)
    rate = TM.memcpy_rate(1)                      # the program uses one channel
    cost = TM.memcpy_command_cycles() + math.ceil(words / rate)
    c0 = dev.sim.cycle
    dev.memcpy_h2d("w", [(0, 0)], np.arange(words, dtype=np.uint32)[None], 32)
    assert dev.sim.cycle - c0 == cost
    c1 = dev.sim.cycle
    got = dev.memcpy_d2h("w", [(0, 0)], words, 32)
    assert dev.sim.cycle - c1 == cost
    assert got[0].tolist() == list(range(words))


@pytest.mark.parametrize("arch", ARCHES)
def test_streams_run_at_the_channel_rate(engine, arch):
    """stream_fabout (test_pe_runtime's program): each PE doubles what it is streamed and
    streams it back. The host pushes 2 x 6 wavelets at the channel's rate after the command
    overhead; the credit of a cycle pays for a wavelet once it reaches one wavelet's cost."""
    dev = device("stream_fabout", arch, engine, width=2, N=6, h2d_id=5, d2h_id=6)
    rate = TM.memcpy_rate(1)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    c0 = dev.sim.cycle
    dev.stream_h2d(5, [(0, 0), (1, 0)], x.view(np.uint32))
    # The 12th wavelet leaves in the first cycle whose accrued credit covers 12 wavelets;
    # the stream command ends with that cycle.
    assert dev.sim.cycle - c0 == TM.memcpy_command_cycles() + math.ceil(12 / rate)
    out = dev.stream_d2h(6, [(0, 0), (1, 0)], 6)
    np.testing.assert_array_equal(out.view(np.float32), 2 * x)


def test_gemv_cycles_grow_with_the_grid_side():
    """csl/gemv with the same tile per PE (16 x 16, f16) on P x P grids: only the fabric's
    distances grow, and with them the cycles; the row reduction crosses at least half a row
    more for each step of P, at hop_latency a hop. (Before async ops were causal, the
    reduction issued after the compute cost nothing and the cycles stayed flat.)"""
    from waferscale.kernels.gemv import Gemv
    cycles = []
    for P in (4, 8, 16):
        k = Gemv(16 * P, 16 * P, P, P, True, "wse3")
        rng = np.random.default_rng(P)
        W = rng.uniform(-1, 1, (16 * P, 16 * P)).astype(np.float16)
        x = rng.uniform(-1, 1, 16 * P).astype(np.float16)
        cycles.append(k.run(W, x)[1])
    assert cycles[1] - cycles[0] >= (8 - 4) // 2 * TM.hop_latency
    assert cycles[2] - cycles[1] >= (16 - 8) // 2 * TM.hop_latency


def late_stream(arch: str, engine: str, N: int, west_buf: int) -> SimulatorDevice:
    return device("stream_late", arch, engine, west_buf, N=N, h2d_id=4)


@pytest.mark.parametrize("arch", ARCHES)
def test_a_stream_the_pe_does_not_read_yet_backs_up_without_buffer_columns(engine, arch):
    dev = late_stream(arch, engine, N=100, west_buf=0)
    with pytest.raises(DeadlockError, match="memcpy H2D stream on color 4 still has to "
                                            "deliver"):
        dev.stream_h2d(4, [(0, 0)], np.arange(100, dtype=np.uint32)[None])


@pytest.mark.parametrize("arch", ARCHES)
def test_buffer_columns_let_the_host_stream_ahead_of_the_kernel(engine, arch):
    """With one buffer column (MEMCPY_BUFFER_PE_WAVELETS per row), the stream command ends
    once the host has sent its wavelets; the PE reads them from the buffer when launched."""
    N = 100
    dev = late_stream(arch, engine, N=N, west_buf=1)
    x = np.arange(N, dtype=np.float32)
    c0 = dev.sim.cycle
    dev.stream_h2d(4, [(0, 0)], x.view(np.uint32)[None])
    # The host side alone: the command overhead and N wavelets at the channel's rate.
    assert dev.sim.cycle - c0 == TM.memcpy_command_cycles() + math.ceil(N / TM.memcpy_rate(1))
    dev.launch("consume", [])
    np.testing.assert_array_equal(dev.memcpy_d2h("buf", [(0, 0)], N, 32)[0].view(np.float32), x)


def test_a_stream_larger_than_the_buffers_still_backs_up(engine):
    """The buffers hold MEMCPY_BUFFER_PE_WAVELETS per buffer PE of a row, no more."""
    from waferscale.sim.timing import MEMCPY_BUFFER_PE_WAVELETS as CAP
    # The PE is never launched, so its buffer size does not matter (N = 8).
    dev = late_stream("wse3", engine, N=8, west_buf=1)
    with pytest.raises(DeadlockError, match="still has to deliver"):
        dev.stream_h2d(4, [(0, 0)], np.zeros((1, CAP + 200), dtype=np.uint32))
