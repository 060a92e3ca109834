"""``waferscale bench``: simulated cycles of each kernel at fixed shapes against its floor.

Cycles are simulated PE clock cycles under the timing model of docs/timing-model.md (no clock
conversion); the floor is the formula of :mod:`.floors`; efficiency = floor / cycles. Each
kernel's result is checked against NumPy before its cycles are reported, so a wrong kernel
cannot score.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np


def _gemv(M: int, N: int, P: int, fp16: bool, arch: str) -> dict:
    from .gemv import Gemv
    k = Gemv(M, N, P, P, fp16, arch)
    rng = np.random.default_rng(0)
    wt = np.float16 if fp16 else np.float32
    W = rng.uniform(-1, 1, (M, N)).astype(wt)
    x = rng.uniform(-1, 1, N).astype(wt)
    y, cycles = k.run(W, x)
    exact = W.astype(np.float64) @ x.astype(np.float64)
    bound = N * 2.0**-23 * (np.abs(W.astype(np.float64)) @ np.abs(x.astype(np.float64)))
    if not np.all(np.abs(y - exact) <= bound):          # f32 accumulation of N products
        raise RuntimeError("gemv result does not match NumPy")
    return {"kernel": "gemv", "arch": arch, "shape": [M, N], "grid": [P, P],
            "dtype": k.dtype, "cycles": cycles, "floor": k.floor()}


def _allreduce(N: int, P: int, arch: str) -> dict:
    from .allreduce import Allreduce
    k = Allreduce(N, P, 1, "sum", arch)
    v = np.random.default_rng(0).uniform(-1, 1, (1, P, N)).astype(np.float32)
    r, cycles = k.run(v)
    exact = v.astype(np.float64).sum(axis=1, keepdims=True)
    if not np.all(np.abs(r - exact) <= P * 2.0**-23 * np.abs(v).sum(axis=1, keepdims=True)):
        raise RuntimeError("allreduce result does not match NumPy")
    return {"kernel": "allreduce", "arch": arch, "shape": [N], "grid": [P, 1],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _argmax(V: int, P_c: int, P_r: int, arch: str) -> dict:
    from .argmax import Argmax
    k = Argmax(V, P_c, P_r, arch)
    logits = np.random.default_rng(0).standard_normal(V).astype(np.float32)
    index, value, cycles = k.run(logits)
    if index != int(np.argmax(logits)) or np.float32(value) != logits[index]:
        raise RuntimeError("argmax result does not match NumPy")
    return {"kernel": "argmax", "arch": arch, "shape": [V], "grid": [P_c, P_r],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _rmsnorm(D: int, P: int, residual: bool, arch: str) -> dict:
    from .rmsnorm import RmsNorm
    k = RmsNorm(D, P, 1e-5, residual, arch)
    rng = np.random.default_rng(0)
    x, g = rng.uniform(-2, 2, D).astype(np.float32), rng.uniform(-1, 1, D).astype(np.float32)
    r = rng.uniform(-2, 2, D).astype(np.float32) if residual else None
    y, cycles = k.run(x, g, r)
    h = (x + r if r is not None else x).astype(np.float64)
    exact = h * g / np.sqrt(np.mean(h * h) + float(np.float32(1e-5)))
    if not np.all(np.abs(y - exact) <= (D + 5) * 2.0**-23 * np.abs(exact)):  # >= gamma_{D+5}
        raise RuntimeError("rmsnorm result does not match NumPy")
    return {"kernel": "rmsnorm", "arch": arch, "shape": [D], "grid": [P, 1],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _swiglu(D: int, P: int, arch: str) -> dict:
    from .swiglu import SwiGLU
    k = SwiGLU(D, P, arch)
    rng = np.random.default_rng(0)
    gate = rng.uniform(-8, 8, D).astype(np.float32)
    up = rng.uniform(-2, 2, D).astype(np.float32)
    out, cycles = k.run(gate, up)
    exact = gate / (1.0 + np.exp(-gate.astype(np.float64))) * up
    if not np.all(np.abs(out - exact) <= 4 * 2.0**-23 * np.abs(exact) + 2.0**-126):  # >= gamma_4
        raise RuntimeError("swiglu result does not match NumPy")
    return {"kernel": "swiglu", "arch": arch, "shape": [D], "grid": [P, 1],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _rope(H: int, d: int, P: int, max_pos: int, arch: str) -> dict:
    from ..model.reference import apply_rope, rope_tables
    from .rope import Rope
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (H, d)).astype(np.float32)
    pos = max_pos - 1
    with Rope(H, d, P, max_pos, 10000.0, arch) as k:
        y, cycles = k.apply(x, pos)
        floor = k.floor()
    ref = apply_rope(x[None], *rope_tables([pos], d, 10000.0))[0]
    # Same f32 tables, two products and one add each: within 2 gamma_2 of each other.
    size = np.repeat(np.abs(x[:, 0::2]) + np.abs(x[:, 1::2]), 2, axis=1).astype(np.float64)
    if not np.all(np.abs(y.astype(np.float64) - ref) <= 4 * 2.0**-23 * size + 2.0**-126):
        raise RuntimeError("rope result does not match NumPy")
    return {"kernel": "rope", "arch": arch, "shape": [H, d], "grid": [P, 1],
            "dtype": "f32", "cycles": cycles, "floor": floor}


def _attention(H: int, H_kv: int, d: int, L: int, P: int, arch: str) -> dict:
    from ..model.reference import attention as reference_attention
    from .attention import DecodeAttention, exact_with_bound
    rng = np.random.default_rng(0)
    K = rng.standard_normal((H_kv, L + 1, d)).astype(np.float32)
    V = rng.standard_normal((H_kv, L + 1, d)).astype(np.float32)
    q = rng.standard_normal((H, d)).astype(np.float32)
    with DecodeAttention(H, H_kv, d, L + 1, P, arch) as k:
        k.load_cache(K[:, :L], V[:, :L])
        out, cycles = k.step(q, K[:, L], V[:, L])
        floor = k.floor(L)
    _, bound = exact_with_bound(q, K, V, P)
    ref = reference_attention(q[None], K, V, start=L).reshape(H, d)
    if not np.all(np.abs(out.astype(np.float64) - ref) <= 2 * bound):
        raise RuntimeError("attention result does not match NumPy")
    return {"kernel": "attention", "arch": arch, "shape": [H, H_kv, d, L + 1],
            "grid": [P, 1], "dtype": "f32", "cycles": cycles, "floor": floor}


def _gemm(M: int, K: int, N: int, P: int, arch: str) -> dict:
    from .gemm import Gemm
    k = Gemm(M, K, N, P, arch)
    rng = np.random.default_rng(0)
    A = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    B = rng.uniform(-1, 1, (K, N)).astype(np.float32)
    C, cycles = k.run(A, B)
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    bound = K * 2.0**-23 * (np.abs(A64) @ np.abs(B64))    # >= gamma_K(f32) + gamma_K(f64)
    if not np.all(np.abs(C - A64 @ B64) <= bound):
        raise RuntimeError("gemm result does not match NumPy")
    return {"kernel": "gemm", "arch": arch, "shape": [M, K, N], "grid": [P, P],
            "dtype": k.dtype, "cycles": cycles, "floor": k.floor()}


def _allreduce_col(N: int, P: int, arch: str) -> dict:
    from .allreduce import Allreduce
    k = Allreduce(N, 1, P, "sum", arch, axis="col")
    v = np.random.default_rng(0).uniform(-1, 1, (P, 1, N)).astype(np.float32)
    r, cycles = k.run(v)
    exact = v.astype(np.float64).sum(axis=0, keepdims=True)
    if not np.all(np.abs(r - exact) <= P * 2.0**-23 * np.abs(v).sum(axis=0, keepdims=True)):
        raise RuntimeError("column allreduce result does not match NumPy")
    return {"kernel": "allreduce", "arch": arch, "shape": [N], "grid": [1, P],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _broadcast(N: int, P: int, arch: str) -> dict:
    from .broadcast import Broadcast
    k = Broadcast(N, P, (P - 1) // 2, "row", arch)
    v = np.random.default_rng(0).uniform(-1, 1, N).astype(np.float32)
    r, cycles = k.run(v)
    if not np.array_equal(r, np.broadcast_to(v, (P, N))):
        raise RuntimeError("broadcast result does not match NumPy")
    return {"kernel": "broadcast", "arch": arch, "shape": [N], "grid": [P, 1],
            "dtype": "f32", "cycles": cycles, "floor": k.floor()}


def _gemv_chain(M1: int, N: int, M2: int, P: int, fp16: bool, arch: str) -> dict:
    from .gemv_chain import GemvChain
    k = GemvChain(M1, N, M2, P, P, fp16, arch)
    rng = np.random.default_rng(0)
    wt = np.float16 if fp16 else np.float32
    W1 = rng.uniform(-1, 1, (M1, N)).astype(wt)
    x = rng.uniform(-1, 1, N).astype(wt)
    W2 = rng.uniform(-1, 1, (M2, M1)).astype(wt)
    y2, cycles = k.run(W1, W2, x)
    W1d, xd, W2d = (a.astype(np.float64) for a in (W1, x, W2))
    y1 = W1d @ xd
    # GEMV1's f32 error, plus the f16 rounding of y1 when fp16; then GEMV2's own error.
    d = N * 2.0**-23 * (np.abs(W1d) @ np.abs(xd))
    if fp16:
        d = d + 2.0**-11 * (np.abs(y1) + 1e-30) + 2.0**-25
    bound = np.abs(W2d) @ d + M1 * 2.0**-23 * (np.abs(W2d) @ (np.abs(y1) + d))
    if not np.all(np.abs(y2 - W2d @ y1) <= bound):
        raise RuntimeError("gemv_chain result does not match NumPy")
    return {"kernel": "gemv_chain", "arch": arch, "shape": [M1, N, M2], "grid": [P, P],
            "dtype": k.dtype, "cycles": cycles, "floor": k.floor()}


# kernel -> (full-size cases, quick cases); each case is a function of arch.
CASES: dict[str, tuple[list[Callable[[str], dict]], list[Callable[[str], dict]]]] = {
    "gemv": ([lambda a: _gemv(2048, 2048, 32, True, a)],
             [lambda a: _gemv(64, 48, 4, True, a), lambda a: _gemv(29, 34, 3, False, a)]),
    "allreduce": ([lambda a: _allreduce(1, 32, a), lambda a: _allreduce(256, 32, a),
                   lambda a: _allreduce_col(1, 32, a), lambda a: _allreduce_col(256, 32, a)],
                  [lambda a: _allreduce(1, 8, a), lambda a: _allreduce_col(1, 8, a)]),
    "broadcast": ([lambda a: _broadcast(1, 32, a), lambda a: _broadcast(256, 32, a)],
                  [lambda a: _broadcast(1, 8, a)]),
    "argmax": ([lambda a: _argmax(49152, 8, 8, a), lambda a: _argmax(49152, 16, 16, a)],
               [lambda a: _argmax(101, 5, 3, a)]),
    "rmsnorm": ([lambda a: _rmsnorm(2048, 32, True, a), lambda a: _rmsnorm(2048, 32, False, a)],
                [lambda a: _rmsnorm(64, 8, True, a)]),
    "swiglu": ([lambda a: _swiglu(2048, 32, a)], [lambda a: _swiglu(64, 8, a)]),
    "rope": ([lambda a: _rope(9, 64, 8, 128, a)], [lambda a: _rope(4, 8, 4, 16, a)]),
    "attention": ([lambda a: _attention(9, 3, 64, 1024, 48, a)],
                  [lambda a: _attention(4, 2, 8, 23, 4, a)]),
    "gemm": ([lambda a: _gemm(128, 256, 256, 8, a)], [lambda a: _gemm(32, 24, 16, 4, a)]),
    "gemv_chain": ([lambda a: _gemv_chain(1536, 576, 576, 32, True, a)],
                   [lambda a: _gemv_chain(64, 48, 40, 4, True, a),
                    lambda a: _gemv_chain(29, 34, 23, 3, False, a)]),
}


def breakdown(device) -> dict[str, int]:
    """Where the cycles of the last PE to finish went: cycles per task / DSD-op name from the
    run's trace (spans of one PE may overlap: async ops run beside tasks)."""
    events = [e for e in device.sim.trace.events if e.get("ph") == "X"]
    if not events:
        return {}
    end_by_pe: dict[int, int] = {}
    for e in events:
        end_by_pe[e["tid"]] = max(end_by_pe.get(e["tid"], 0), e["ts"] + e["dur"])
    last = max(end_by_pe, key=lambda t: end_by_pe[t])
    out: dict[str, int] = {}
    for e in events:
        if e["tid"] == last:
            key = f"{e['cat']}:{e['name']}"
            out[key] = out.get(key, 0) + e["dur"]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(kernels: list[str], arch: str, quick: bool, phases: bool = False) -> list[dict]:
    from ..sim.device import session
    rows = []
    for name in kernels:
        for case in CASES[name][1 if quick else 0]:
            with session({"trace": phases}) as devices:
                r = case(arch)
            r["efficiency"] = round(r["floor"] / r["cycles"], 4)
            if phases and devices:
                r["phases"] = breakdown(devices[-1])
            rows.append(r)
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="kernel cycles vs their physical floors",
                       description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("kernels", nargs="*", metavar="KERNEL", help=f"of {sorted(CASES)} "
                   "(default: all)")
    p.add_argument("--arch", choices=["wse2", "wse3"], default="wse3")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    p.add_argument("--quick", action="store_true", help="small shapes (seconds, for CI)")
    p.add_argument("--phases", action="store_true",
                   help="also break each case's cycles down by task / DSD op (from a trace "
                   "of the PE that finishes last)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    names = args.kernels or sorted(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"waferscale bench: error: unknown kernel(s) {', '.join(unknown)}; known: "
              f"{', '.join(sorted(CASES))}", file=sys.stderr)
        return 2                            # a bad argument value: a usage error
    rows = run(names, args.arch, args.quick, args.phases)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'kernel':10} {'arch':5} {'shape':>11} {'grid':>7} {'dtype':5} {'cycles':>8} "
          f"{'floor':>7} {'floor/cycles':>12}")
    for r in rows:
        print(f"{r['kernel']:10} {r['arch']:5} {'x'.join(map(str, r['shape'])):>11} "
              f"{'x'.join(map(str, r['grid'])):>7} {r['dtype']:5} {r['cycles']:>8} "
              f"{r['floor']:>7} {r['efficiency']:>12.3f}")
        for name, cycles in list(r.get("phases", {}).items())[:6]:
            print(f"{'':12}{cycles:>8}  {name}")
    print("cycles: simulated PE cycles (docs/timing-model.md); floors: docs/kernels.md",
          file=sys.stderr)
    return 0
