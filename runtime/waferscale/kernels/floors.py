"""Physical floors of the kernels (docs/kernels.md): the fewest cycles any implementation
could take on the modelled hardware, against which ``waferscale bench`` reports efficiency
= floor / measured."""

from __future__ import annotations

import math

# Elements per cycle of the multiply-accumulate each GEMV variant uses, by arch
# (csl-language.md §4.1): fp32 @fmacs is not in the SIMD table, so 1; fp16 weights with fp32
# accumulation use @fmachs, 2 on WSE-2 and 4 on WSE-3.
MAC_SIMD = {("f32", "wse2"): 1, ("f32", "wse3"): 1, ("f16", "wse2"): 2, ("f16", "wse3"): 4}


def gemv_floor(M: int, N: int, P_c: int, P_r: int, dtype: str, arch: str) -> int:
    """⌈M·N / (P_r·P_c·S)⌉ + P_red: every PE's share of the MACs at full SIMD width, plus one
    hop per PE along the reduction axis (rows, P_red = P_c)."""
    S = MAC_SIMD[(dtype, arch)]
    return math.ceil(M * N / (P_r * P_c * S)) + P_c


def allreduce_floor(P: int, N: int = 1) -> int:
    """A line of P PEs: reduce to the middle and broadcast back, one hop a cycle: P cycles for
    one element; N elements stream behind the first at one wavelet a cycle: P + N - 1."""
    return P + N - 1


# @fmaxs elements per cycle (csl-language.md §4.1).
FMAXS_SIMD = {"wse2": 1, "wse3": 4}


def argmax_floor(V: int, P_c: int, P_r: int, arch: str) -> int:
    """⌈⌈V/(P_c·P_r)⌉ / S⌉ + (P_c − 1) + (P_r − 1) + 1: the largest block's max at the SIMD
    width S of @fmaxs, plus the fabric distance between the two farthest PEs (every PE's
    answer depends on every block) at one hop a cycle, plus the pair's second wavelet."""
    n_max = -(-V // (P_c * P_r))
    return math.ceil(n_max / FMAXS_SIMD[arch]) + (P_c - 1) + (P_r - 1) + 1


# Elements per cycle of f32 @fadds/@fmuls (csl-language.md §4.1).
F32_SIMD = {"wse2": 2, "wse3": 4}


def rmsnorm_floor(D: int, P: int, residual: bool, arch: str) -> int:
    """(2 + residual)·⌈⌈D/P⌉ / S⌉ + P: on the PE with the largest block, one SIMD pass to
    square (and sum) it, one to write y, one more for the stored residual sum; plus the
    one-element allreduce over the row (P hops, as allreduce's floor)."""
    n_t = -(-D // P)
    return (3 if residual else 2) * -(-n_t // F32_SIMD[arch]) + P


def swiglu_floor(D: int, P: int) -> int:
    """⌈D/P⌉: the PE with the largest block evaluates one exp per element, and a @map (a
    scalar function per element, not a SIMD op) yields at most one element a cycle."""
    return -(-D // P)


def rope_floor(H: int, d: int, P: int, arch: str) -> int:
    """⌈6·m / S⌉ with m = ⌈H·d/2 / P⌉: the PE with the most pairs produces 2m outputs, each
    two f32 products and one add or subtract (6m SIMD element operations), at the f32
    ``@fmuls``/``@fadds``/``@fsubs`` width S (2 on WSE-2, 4 on WSE-3). No fabric term: the
    PEs never communicate."""
    m = -(-(H * d // 2) // P)
    return -(-6 * m // F32_SIMD[arch])


def attention_floor(H: int, d: int, L: int, P: int, arch: str) -> int:
    """Proposed floor of one decode step at position L (L + 1 keys): the 2·H·d·(L+1) MACs of
    scores and outputs spread evenly over the P PEs at the f32 @fmacs rate S, plus the two
    dependent collectives along the row: the max of H scores (P + H − 1) and the sum of the
    H·d partial outputs (P + H·d − 1), as csl/allreduce's floor."""
    macs = 2 * H * d * (L + 1)
    return -(-macs // (P * MAC_SIMD[("f32", arch)])) + (P + H - 1) + (P + H * d - 1)


def gemm_floor(M: int, K: int, N: int, P: int, dtype: str, arch: str) -> int:
    """Proposed floor: ⌈M·K·N / (P²·S)⌉ + span. Every PE's share of the MACs at the SIMD width
    S of its multiply-accumulate (@fmacs f32: 1; @fmachs f16: 2 on WSE-2, 4 on WSE-3), plus
    the first step's broadcasts, which must land before any MAC can use them:
    span = max(Mt·Kt, Kt·Nt) words / elements-per-word + P (the simulator's pipelined line
    transfer, sim/collectives.py), 0 for P = 1. Later broadcasts can hide behind the MACs of
    the previous step (double buffering), so they are not part of the floor."""
    S = MAC_SIMD[(dtype, arch)]
    macs = -(-M * K * N // (P * P * S))
    if P == 1:
        return macs
    per_word = 2 if dtype == "f16" else 1
    Mt, Kt, Nt = M // P, K // P, N // P
    return macs + -(-max(Mt * Kt, Kt * Nt) // per_word) + P


def broadcast_floor(P: int, root: int, N: int) -> int:
    """max(root, P − 1 − root) + N: the farthest PE is that many hops from the root, one hop a
    cycle, and the N wavelets leave the root one a cycle behind the first. A line of one PE
    moves nothing: 1 (the launch itself), so that efficiency stays in (0, 1]."""
    if P == 1:
        return 1
    return max(root, P - 1 - root) + N


def gemv_chain_floor(M1: int, N: int, M2: int, P_c: int, P_r: int, dtype: str,
                     arch: str) -> int:
    """⌈M1·N / (P·S)⌉ + P_c + ⌈M2·M1 / (P·S)⌉ + P_r with P = P_c·P_r: each GEMV's MAC share
    per PE at full SIMD width S plus one hop per PE along its reduction axis (rows for the
    first GEMV, columns for the second). The two add up because every element of the
    second GEMV's input depends on a whole reduction of the first."""
    S = MAC_SIMD[(dtype, arch)]
    P = P_c * P_r
    return math.ceil(M1 * N / (P * S)) + P_c + math.ceil(M2 * M1 / (P * S)) + P_r
