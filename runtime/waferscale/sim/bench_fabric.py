"""Throughput benchmark of the fabric on GEMV-like traffic.

Run ``python -m waferscale.sim.bench_fabric`` (``--help`` for sizes). The traffic is that of
the GEMV tutorials (csl-language.md §7) on a W x H grid:

* color 0: every row-0 PE broadcasts a stream of ``length`` wavelets down its column
  (top ``rx={RAMP}, tx={RAMP, SOUTH}``, middle ``rx={NORTH}, tx={RAMP, SOUTH}``,
  bottom ``rx={NORTH}, tx={RAMP}``);
* colors 1 and 2: every row chain-reduces eastward; PE ``x`` sends on color ``1 + x % 2`` and
  receives on the other one, the last column consumes.

Two scenarios, each on every available backend:

``core``
    The fabric alone. Every stream is preloaded into (deep) output queues and input queues
    are deep enough never to fill, so no Python runs between cycles; the router→CE link of
    every PE still carries two streams, so the multicast broadcast stalls half of the time and
    backpressure propagates up the columns. This is the figure for the C++ core.
``driven``
    The same traffic with WSE-3 queue depths and a Python CE model that reads each
    broadcast element and the partial sum from the west, multiplies-adds and sends the new
    partial sum east (the data dependency of a real chain reduction). It shows what a PE model
    calling the fabric once per wavelet from Python costs; results are checked against NumPy.

Reported: simulated PE-cycles per second (grid PEs x cycles / wall time) and wavelet-hops per
second (router output link transfers, CE deliveries included).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import numpy as np

from waferscale.sim.fabric import Direction, Fabric, FabricOptions, cpp_available

log = logging.getLogger(__name__)

R, N, E, S, W = (Direction.RAMP, Direction.NORTH, Direction.EAST, Direction.SOUTH,
                 Direction.WEST)
BCAST_COLOR, BCAST_IQ, BCAST_OQ = 0, 2, 2
REDUCE_IQ, REDUCE_OQ = 3, 3
MASK = 0xFFFF_FFFF


@dataclass
class Result:
    backend: str
    scenario: str
    width: int
    height: int
    cycles: int
    hops: int
    seconds: float
    step_seconds: float

    @property
    def pe_cycles_per_s(self) -> float:
        return self.width * self.height * self.cycles / self.seconds

    @property
    def hops_per_s(self) -> float:
        return self.hops / self.seconds

    def line(self) -> str:
        core_share = f"{100 * self.step_seconds / self.seconds:5.1f}%"
        return (f"{self.scenario:7s} {self.backend:7s} {self.width}x{self.height} "
                f"{self.cycles:7d} cycles {self.seconds:8.3f} s  "
                f"{self.pe_cycles_per_s:12.3e} PE-cycles/s  {self.hops_per_s:12.3e} hops/s  "
                f"(in step: {core_share})")


def reduce_color(x: int) -> int:
    """The color PE column ``x`` sends its partial sums on."""
    return 1 + x % 2


def configure(fabric: Fabric) -> None:
    """Routes and queue bindings of the GEMV-like traffic."""
    w, h = fabric.width, fabric.height
    for x in range(w):
        for y in range(h):
            if h == 1:
                rx, tx = [R], [R]
            elif y == 0:
                rx, tx = [R], [R, S]
            elif y == h - 1:
                rx, tx = [N], [R]
            else:
                rx, tx = [N], [R, S]
            fabric.set_route(x, y, BCAST_COLOR, rx, tx)
            fabric.bind_input_queue(x, y, BCAST_IQ, BCAST_COLOR)
            if x < w - 1:
                fabric.set_route(x, y, reduce_color(x), [R], [E])
            if x > 0:
                fabric.set_route(x, y, reduce_color(x - 1), [W], [R])
                fabric.bind_input_queue(x, y, REDUCE_IQ, reduce_color(x - 1))


def run_core(backend: str, width: int, height: int, length: int) -> Result:
    """Preloaded streams, deep queues: only the fabric runs."""
    deep = 2 * length
    options = FabricOptions(input_queue_depths=(8, 8, deep, deep),
                            output_queue_depths=(8, 8, deep, deep))
    fabric = Fabric(width, height, options, backend=backend)  # type: ignore[arg-type]
    configure(fabric)
    for x in range(width):
        for i in range(length):
            fabric.ce_send(x, 0, BCAST_OQ, BCAST_COLOR, i)
            if x < width - 1:
                for y in range(height):
                    fabric.ce_send(x, y, REDUCE_OQ, reduce_color(x), i)
    start = time.perf_counter()
    while fabric.step(1 << 20):
        pass
    seconds = time.perf_counter() - start
    counters = fabric.counters()
    got = sum(fabric.iq_count(x, y, BCAST_IQ) + fabric.iq_count(x, y, REDUCE_IQ)
              for x in range(width) for y in range(height))
    if got != (2 * width - 1) * height * length:
        raise AssertionError(f"core scenario delivered {got} wavelets")
    return Result(backend, "core", width, height, fabric.cycle, counters.wavelet_hops,
                  seconds, seconds)


def run_driven(backend: str, width: int, height: int, length: int) -> Result:
    """WSE-3 queue depths, a Python CE model in the loop, checked against NumPy."""
    fabric = Fabric(width, height, FabricOptions(arch="wse3"),
                    backend=backend)  # type: ignore[arg-type]
    configure(fabric)
    core = fabric.core
    rng = np.random.default_rng(0)
    vector = rng.integers(0, 1 << 10, size=(width, length), dtype=np.int64)
    weight = rng.integers(0, 1 << 10, size=(height, width), dtype=np.int64)
    sent_bcast = [0] * width
    pending: list[list[list[int]]] = [[[] for _ in range(height)] for _ in range(width)]
    sums: list[list[int]] = [[] for _ in range(height)]
    to_send: list[list[list[int]]] = [[[] for _ in range(height)] for _ in range(width)]
    done_rows = 0
    step_seconds = 0.0
    start = time.perf_counter()
    while done_rows < height:
        for x in range(width):
            while sent_bcast[x] < length and core.ce_send(
                    x, 0, BCAST_OQ, BCAST_COLOR, int(vector[x, sent_bcast[x]])):
                sent_bcast[x] += 1
            for y in range(height):
                got = core.ce_recv(x, y, BCAST_IQ)
                if got is not None:
                    pending[x][y].append(got[0] * int(weight[y, x]))
                queue = pending[x][y]
                if queue and x > 0:
                    west = core.ce_recv(x, y, REDUCE_IQ)
                    if west is not None:
                        queue[0] = (queue[0] + west[0]) & MASK
                        to_send[x][y].append(queue.pop(0))
                elif queue:
                    to_send[x][y].append(queue.pop(0) & MASK)
                out = to_send[x][y]
                if out:
                    if x == width - 1:
                        sums[y].extend(out)
                        out.clear()
                        done_rows += len(sums[y]) == length
                    elif core.ce_send(x, y, REDUCE_OQ, reduce_color(x), out[0]):
                        out.pop(0)
        t0 = time.perf_counter()
        if core.idle:
            core.advance_clock(1)
        else:
            core.step(1)
        step_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - start
    expected = (weight @ vector) & MASK
    if not np.array_equal(np.array(sums, dtype=np.int64), expected):
        raise AssertionError("driven GEMV traffic produced wrong sums")
    return Result(backend, "driven", width, height, fabric.cycle,
                  fabric.counters().wavelet_hops, seconds, step_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m waferscale.sim.bench_fabric",
        description="Fabric throughput on GEMV-like traffic (column broadcast + row chain "
                    "reduction with two alternating colors).")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--length", type=int, default=1024,
                        help="stream length per column/row in the core scenario (C++)")
    parser.add_argument("--python-length", type=int, default=64,
                        help="stream length for the Python backend and the driven scenario")
    parser.add_argument("--backend", choices=["both", "cpp", "python"], default="both")
    parser.add_argument("--scenario", choices=["both", "core", "driven"], default="both")
    args = parser.parse_args(argv)
    backends = ["cpp", "python"] if args.backend == "both" else [args.backend]
    if "cpp" in backends and not cpp_available():
        print("C++ core not built (pip install -e .); skipping backend cpp")
        backends.remove("cpp")
    scenarios = ["core", "driven"] if args.scenario == "both" else [args.scenario]
    print(f"fabric benchmark, {args.width}x{args.height} grid")
    for scenario in scenarios:
        for backend in backends:
            if scenario == "core":
                length = args.length if backend == "cpp" else args.python_length
                result = run_core(backend, args.width, args.height, length)
            else:
                result = run_driven(backend, args.width, args.height, args.python_length)
            print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
