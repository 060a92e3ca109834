"""The cycle-approximate timing model: every cost in one place.

docs/timing-model.md lists each number with its source and the calibration that set it.
Costs are in PE clock cycles; the simulator never converts to seconds itself (reports that do
say which clock they assume: 850 MHz in Cerebras' examples, 1.1 GHz in WaferLLM). The few
costs quoted in time or bandwidth by their sources (memcpy) are converted with
``clock_mhz``.

Calibration (``waferscale calibrate``, sim/calibrate.py): the fabric latencies and
``fabric_op_start`` were fitted to WaferLLM's MeshGEMV sweep measured on a real WSE-3, and
nothing else; the MeshGEMM measurements are held out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction

# Instructions of the <math> routines, counted from the single-precision Cephes algorithms
# (S. L. Moshier, also the basis of most libm float routines) as scalar instructions on a
# core with no divide or square-root unit (the WSE's DSD op table has neither;
# csl-language.md §4.1), one instruction per cycle. A fused multiply-add counts two (the
# scalar path has none). The call itself is charged separately (TimingModel.branch).
MATH_ROUTINE_CYCLES: dict[str, int] = {
    # expf: 2 range checks, x*log2(e), floor (3), 2-step Cody-Waite reduction (4),
    # degree-5 Horner polynomial (10), +1 and the exponent insert (4).
    "exp": 24,
    # logf: frexp (3), sqrt(1/2) compare and adjust (3), x-1, z=x*x, degree-8 Horner (16),
    # y*x*z (2), exponent terms (4), range checks (2).
    "log": 31,
    # sqrtf: rsqrt seed from the exponent bits (2), 3 Newton steps y*(1.5 - 0.5*x*y*y)
    # (5 each), x*y (1), range checks (2).
    "sqrt": 20,
    # 1/sqrt: the same without the final multiply.
    "invsqrt": 19,
    # 1/x: reciprocal seed from the exponent bits (1), 3 Newton steps y*(2 - x*y) (3 each),
    # range checks (2).
    "inv": 12,
    # sinf/cosf: |x| and sign (2), octant j = x*4/pi and floor (4), 3-step reduction (6),
    # octant select (3), z = x*x and a degree-3 polynomial in z (7), sign (2); the same for
    # both.
    "sin": 24,
    "cos": 24,
    # tanhf, |x| >= 0.625 branch (the longer one): 1 - 2/(exp(2x)+1): exp + inv + 4.
    "tanh": 40,
    # sigmoid 1/(1+exp(-x)): negate, exp, add, inv.
    "sig": 38,
}


@dataclass(frozen=True)
class TimingModel:
    """Attributes:
        statement: one scalar CSL statement of run-time code (assumption: ~1 instruction).
        branch: one loop iteration or call (assumption).
        task_start: picking and entering a task, i.e. the task activation latency (assumption;
            topic-13's sim.log shows about 2 cycles per extra hop including task dispatch).
        dsd_op_setup: issuing one DSD operation, before its elements stream (assumption).
        fabric_op_start: extra cycles before a DSD operation with a fabric operand moves its
            first element: loading its fabric DSDs into DSRs and binding its queue
            (calibrated on MeshGEMV, whose critical path issues three such operations per
            iteration).
        hop_latency: cycles a wavelet spends in each router it crosses (2: the official
            simulator's topic-13 log shows a broadcast wavelet reaching each further PE two
            cycles later; MeshGEMV's group sweep fits 2.0).
        ce_to_router_latency, router_to_ce_latency: the ramp between a CE and its router, each
            way (calibrated on MeshGEMV's group sweep: a CE-to-CE transfer costs about 11.5
            cycles more than the hops it crosses; split evenly between the two ramps, which
            only their sum can tell apart).
        memcpy_channel_gbps: the bandwidth of one memcpy I/O channel ("~7 Gb/s max per
            channel", bandwidth-test/run.py, sdk-runtime-hardware.md §1.3).
        memcpy_command_us: host overhead per memcpy command ("~200 us TCP overhead per
            transaction", the same source).
        clock_mhz: the clock that converts the two figures above into cycles (850 MHz, the
            SDK examples' clock; sdk-runtime-hardware.md §3.2).
    DSD element throughput is ``ceil(n / simd)`` with the SIMD widths of
    ``sim/builtins_rt.DSD_OPS`` (csl-language.md §4.1, docs appendix), lowered by the
    appendix's stride rules (:func:`stride_simd`). <math> routines cost
    ``MATH_ROUTINE_CYCLES`` on top of their call.
    """
    statement: int = 1
    branch: int = 1
    task_start: int = 2
    dsd_op_setup: int = 1
    fabric_op_start: int = 20
    hop_latency: int = 2
    ce_to_router_latency: int = 5
    router_to_ce_latency: int = 5
    memcpy_channel_gbps: float = 7.0
    memcpy_command_us: float = 200.0
    clock_mhz: float = 850.0

    def engine_costs(self) -> dict[str, int]:
        """The per-PE costs the compiled engine charges (passed to it by name)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name in ("statement", "branch", "task_start", "dsd_op_setup",
                              "fabric_op_start", "hop_latency", "ce_to_router_latency",
                              "router_to_ce_latency")}

    def transfer_cycles(self, hops: int) -> int:
        """The fewest cycles from a CE pushing a wavelet to a CE ``hops`` routers away being
        able to read it (sim/fabric.py's latency rule); 0 for no hop."""
        if hops <= 0:
            return 0
        return self.ce_to_router_latency + hops * self.hop_latency + self.router_to_ce_latency

    def collective_cycles(self, line: int, count: int) -> int:
        """A ``<collectives_2d>`` operation over ``line`` PEs moving ``count`` words, from its
        last call (sim/collectives.py): the library's fabric op start, the transfer across
        the line, then the words one a cycle."""
        return (self.dsd_op_setup + self.fabric_op_start + self.transfer_cycles(line - 1)
                + count)

    @staticmethod
    def math_cost(base: str) -> int:
        """Cycles of the <math> routine ``base`` ("exp", "sqrt", ...) beyond its call."""
        return MATH_ROUTINE_CYCLES[base]

    def memcpy_rate(self, channels: int) -> Fraction:
        """Wavelets (32-bit words) per cycle that ``channels`` memcpy channels carry."""
        return Fraction(round(self.memcpy_channel_gbps * 1000)) * channels / (
            32 * Fraction(round(self.clock_mhz)))

    def memcpy_command_cycles(self) -> int:
        """The fixed cost of one memcpy command, in cycles."""
        return round(self.memcpy_command_us * self.clock_mhz)


def stride_simd(stride: int | None) -> int | None:
    """The SIMD width a memory operand of element stride ``stride`` allows, or None for no
    limit (docs appendix, "SIMD Mode"): strides 0 and 1 and ``stride % 8`` in {2, 3, 5, 6} run
    at full width; ``% 8`` in {1, 7} at 2; ``% 8 == 0`` at 1; ``% 8 == 4`` at 4 (the
    appendix's sentence for this case reads "two operations per cycle, or a SIMD width of 4";
    we take 4)."""
    if stride is None or stride in (0, 1):     # None: no even stride (dsd.element_stride)
        return None
    m = stride % 8
    if m in (2, 3, 5, 6):
        return None
    return {1: 2, 7: 2, 0: 1, 4: 4}[m]


# A memcpy buffer PE (--width-west-buf / --width-east-buf columns) holds 46 KB of stream data
# (SDK docs, tensor streaming; sdk-runtime-hardware.md §1.3): 11,776 32-bit wavelets.
MEMCPY_BUFFER_PE_WAVELETS = 46 * 1024 // 4

DEFAULT_TIMING = TimingModel()
