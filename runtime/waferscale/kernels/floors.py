"""Physical floors of the kernels (docs/kernels.md): the fewest cycles any implementation
could take on the modelled hardware, against which ``waferscale bench`` reports efficiency
= floor / measured.

Fabric terms use the timing model's latencies (sim/timing.py): a value that must travel
``d`` hops from one CE to another takes at least :func:`leg` ``(d)`` = the ramp out of the
CE, ``d`` router hops and the ramp into the CE. Compute terms use the best op the model
offers for the data type (``MAC_SIMD``).
"""

from __future__ import annotations

import math

from ..sim.timing import DEFAULT_TIMING


def leg(hops: int) -> int:
    """The fewest cycles from a CE pushing a wavelet to a CE ``hops`` routers away being able
    to read it (TimingModel.transfer_cycles); 0 for no hop."""
    return DEFAULT_TIMING.transfer_cycles(hops)

# Elements per cycle of the best multiply-accumulate the model offers per data type, by arch
# (csl-language.md §4.1, sim/builtins_rt.DSD_OPS): fp32 @fmacs is not in the SIMD table, so
# 1, and @fmuls + @fadds is no faster (@fmuls is not in the table either: 1 + 1/S cycles an
# element); fp16 weights with fp32 accumulation use @fmachs, 2 on WSE-2 and 4 on WSE-3.
MAC_SIMD = {("f32", "wse2"): 1, ("f32", "wse3"): 1, ("f16", "wse2"): 2, ("f16", "wse3"): 4}


def gemv_floor(M: int, N: int, P_c: int, P_r: int, dtype: str, arch: str) -> int:
    """⌈M·N / (P_r·P_c·S)⌉ + leg(P_c − 1): every PE's share of the MACs at full SIMD width,
    plus one leg across the reduction axis (a partial sum from one end of a row must reach
    the other end's result)."""
    S = MAC_SIMD[(dtype, arch)]
    return math.ceil(M * N / (P_r * P_c * S)) + leg(P_c - 1)


def allreduce_floor(P: int, N: int = 1) -> int:
    """A line of P PEs: every PE's result depends on both ends, so one value crosses the line,
    leg(P − 1); the N elements stream behind the first at one wavelet a cycle: + N − 1. (A
    reduction also needs a CE to add on the way, which a tree pays again; the floor does
    not.) One PE: N."""
    if P == 1:
        return N
    return leg(P - 1) + N - 1


# @fmaxs elements per cycle (csl-language.md §4.1).
FMAXS_SIMD = {"wse2": 1, "wse3": 4}


def argmax_floor(V: int, P_c: int, P_r: int, arch: str) -> int:
    """⌈⌈V/(P_c·P_r)⌉ / S⌉ + leg((P_c − 1) + (P_r − 1)) + 1: the largest block's max at the
    SIMD width S of @fmaxs, plus one leg across the fabric distance between the two farthest
    PEs (every PE's answer depends on every block), plus the pair's second wavelet."""
    n_max = -(-V // (P_c * P_r))
    return math.ceil(n_max / FMAXS_SIMD[arch]) + leg((P_c - 1) + (P_r - 1)) + 1


# Elements per cycle of f32 @fadds/@fsubs (csl-language.md §4.1). f32 elementwise products
# (@fmuls, or @fmacs with a scalar) run at 1 a cycle (F32_MUL).
F32_SIMD = {"wse2": 2, "wse3": 4}
F32_MUL = 1


def rmsnorm_floor(D: int, P: int, residual: bool, arch: str) -> int:
    """2·⌈D/P⌉ + residual·⌈⌈D/P⌉ / S⌉ + allreduce_floor(P) + one 1/sqrt: on the PE with the
    largest block, its squares and its products with g (elementwise f32 products, one a
    cycle), one SIMD add pass for the stored residual sum; plus the one-element allreduce
    over the row and one <math> invsqrt call (the cheapest routine that yields the scale)."""
    n_t = -(-D // P)
    t = DEFAULT_TIMING
    return (2 * n_t // F32_MUL + (-(-n_t // F32_SIMD[arch]) if residual else 0)
            + allreduce_floor(P) + t.branch + t.math_cost("invsqrt"))


def exp_cycles() -> int:
    """One <math> exp call: its call and its routine (sim/timing.py, MATH_ROUTINE_CYCLES)."""
    return DEFAULT_TIMING.branch + DEFAULT_TIMING.math_cost("exp")


def swiglu_floor(D: int, P: int) -> int:
    """⌈D/P⌉ · exp_cycles(): the PE with the largest block evaluates one exp per element, a
    software routine with no SIMD form."""
    return -(-D // P) * exp_cycles()


def rope_floor(H: int, d: int, P: int, arch: str) -> int:
    """4m + ⌈2m / S⌉ with m = ⌈H·d/2 / P⌉: the PE with the most pairs produces 2m outputs,
    each two f32 products (one a cycle, F32_MUL) and one add or subtract at the f32
    ``@fadds``/``@fsubs`` width S (2 on WSE-2, 4 on WSE-3). No fabric term: the PEs never
    communicate."""
    m = -(-(H * d // 2) // P)
    return 4 * m // F32_MUL + -(-2 * m // F32_SIMD[arch])


def attention_floor(H: int, d: int, L: int, P: int, arch: str) -> int:
    """Proposed floor of one decode step at position L (L + 1 keys) with an f32 cache: the
    2·H·d·(L+1) MACs of scores and outputs spread evenly over the P PEs at the best f32 MAC
    rate S (MAC_SIMD), plus the two dependent collectives along the row: the max of H
    scores and the sum of the H·d partial outputs, as csl/allreduce's floor."""
    macs = 2 * H * d * (L + 1)
    exps = -(-H * (L + 1) // P)           # the busiest PE's softmax exps
    return (-(-macs // (P * MAC_SIMD[("f32", arch)])) + exps * exp_cycles()
            + allreduce_floor(P, H) + allreduce_floor(P, H * d))


def gemm_floor(M: int, K: int, N: int, P: int, dtype: str, arch: str) -> int:
    """Proposed floor: ⌈M·K·N / (P²·S)⌉ + span. Every PE's share of the MACs at the SIMD width
    S of its multiply-accumulate (@fmacs f32: 1; @fmachs f16: 2 on WSE-2, 4 on WSE-3), plus
    the first step's broadcasts, which must land before any MAC can use them:
    span = leg(P − 1) + max(Mt·Kt, Kt·Nt) words / elements-per-word (one transfer across
    the line, then the words one a cycle), 0 for P = 1. Later broadcasts can hide behind the
    MACs of the previous step (double buffering), so they are not part of the floor."""
    S = MAC_SIMD[(dtype, arch)]
    macs = -(-M * K * N // (P * P * S))
    if P == 1:
        return macs
    per_word = 2 if dtype == "f16" else 1
    Mt, Kt, Nt = M // P, K // P, N // P
    return macs + -(-max(Mt * Kt, Kt * Nt) // per_word) + leg(P - 1)


def broadcast_floor(P: int, root: int, N: int) -> int:
    """leg(max(root, P − 1 − root)) + N − 1: the farthest PE is that many hops from the root,
    and the N wavelets leave the root one a cycle behind the first. A line of one PE moves
    nothing: 1 (the launch itself), so that efficiency stays in (0, 1]."""
    if P == 1:
        return 1
    return leg(max(root, P - 1 - root)) + N - 1


def gemv_chain_floor(M1: int, N: int, M2: int, P_c: int, P_r: int, dtype: str,
                     arch: str) -> int:
    """⌈M1·N / (P·S)⌉ + leg(P_c − 1) + ⌈M2·M1 / (P·S)⌉ + leg(P_r − 1) with P = P_c·P_r:
    each GEMV's MAC share per PE at full SIMD width S plus one leg across its reduction axis
    (rows for the first GEMV, columns for the second). The two add up because every element
    of the second GEMV's input depends on a whole reduction of the first."""
    S = MAC_SIMD[(dtype, arch)]
    P = P_c * P_r
    return (math.ceil(M1 * N / (P * S)) + leg(P_c - 1) + math.ceil(M2 * M1 / (P * S))
            + leg(P_r - 1))
