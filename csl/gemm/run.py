#!/usr/bin/env cs_python
"""Host driver of csl/gemm: C = A·B by SUMMA on a P x P square of PEs.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

Host-side data layout (layout.csl): A is M x K, B is K x N, C is M x N, with M, K, N multiples
of P and tiles Mt = M/P, Kt = K/P, Nt = N/P. PE (px, py) holds the tiles at block row py and
block column px of A, B and C, each column-major. For a matrix X of h·m x w·n cut into m x n
tiles, ``X.reshape(h, m, w, n).transpose(0, 2, 3, 1)`` orders the data [py][px][j][i]: PE by
PE in row-major PE order (memcpy's ROW_MAJOR h-w-l) and column-major within a tile, so one
memcpy call moves a whole matrix.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
)

# Unit roundoff of the formats involved.
U_F32 = 2.0**-24
U_F64 = 2.0**-53


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n*u / (1 - n*u): the relative error bound of n roundings."""
    return n * u / (1.0 - n * u)


def to_tiles(X: np.ndarray, P: int) -> np.ndarray:
    """Matrix -> memcpy order: PE by PE (row-major over the P x P square), each tile
    column-major."""
    rows, cols = X.shape
    return X.reshape(P, rows // P, P, cols // P).transpose(0, 2, 3, 1).ravel()


def from_tiles(flat: np.ndarray, P: int, rows: int, cols: int) -> np.ndarray:
    """Inverse of ``to_tiles``."""
    return flat.reshape(P, P, cols // P, rows // P).transpose(0, 3, 1, 2).reshape(rows, cols)


def to_memcpy_words(a: np.ndarray) -> np.ndarray:
    """1-D array as memcpy wants it: f32 as is, f16 zero-extended into the low half of u32."""
    a = np.ascontiguousarray(a).ravel()
    if a.dtype == np.float16:
        return a.view(np.uint16).astype(np.uint32)
    return a.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", help="the test compile output dir")
    parser.add_argument("--cmaddr", help="IP:port for CS system")
    args = parser.parse_args()

    # Get matrix and grid dimensions from compile metadata
    with open(f"{args.name}/out.json", encoding="utf-8") as json_file:
        compile_data = json.load(json_file)
    params = compile_data["params"]
    P = int(params["P"])  # side of the PE square
    M = int(params["M"])  # rows of A and C
    K = int(params["K"])  # columns of A, rows of B
    N = int(params["N"])  # columns of B and C
    fp16 = int(params.get("fp16", 0)) == 1  # layout.csl's default is 0
    Mt, Kt, Nt = M // P, K // P, N // P

    ab_dtype = np.float16 if fp16 else np.float32
    memcpy_dtype = MemcpyDataType.MEMCPY_16BIT if fp16 else MemcpyDataType.MEMCPY_32BIT

    # Use a deterministic seed so that CI results are predictable; both signs, so that
    # cancellation happens (the bound below is relative to |A||B|, not to |C|).
    rng = np.random.default_rng(seed=7)
    A = rng.uniform(-1.0, 1.0, (M, K)).astype(ab_dtype)
    B = rng.uniform(-1.0, 1.0, (K, N)).astype(ab_dtype)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    A_symbol = runner.get_id("A")
    B_symbol = runner.get_id("B")
    C_symbol = runner.get_id("C")

    runner.load()
    runner.run()

    runner.memcpy_h2d(A_symbol, to_memcpy_words(to_tiles(A, P)), 0, 0, P, P, Mt * Kt,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR, data_type=memcpy_dtype,
                      nonblock=False)
    runner.memcpy_h2d(B_symbol, to_memcpy_words(to_tiles(B, P)), 0, 0, P, P, Kt * Nt,
                      streaming=False, order=MemcpyOrder.ROW_MAJOR, data_type=memcpy_dtype,
                      nonblock=False)

    # Launch C = A·B. The call returns when every PE has unblocked the command stream.
    runner.launch("compute", nonblock=False)

    C_flat = np.zeros(M * N, dtype=np.float32)
    runner.memcpy_d2h(C_flat, C_symbol, 0, 0, P, P, Mt * Nt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
    C = from_tiles(C_flat, P, M, N)

    runner.stop()

    # Every C[i, j] is a sum of K products accumulated in f32 in an order fixed by the steps
    # and the sweep; whatever the order (and whether @fmacs/@fmachs fuses the multiply), the
    # error is at most gamma_K(f32) * sum_k |A[i,k] B[k,j]| (f16 products are exact in f32).
    # The f64 reference (exact products) adds its own gamma_K(f64).
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    err = np.abs(C.astype(np.float64) - A64 @ B64)
    allowed = (gamma(K, U_F32) + gamma(K, U_F64)) * (np.abs(A64) @ np.abs(B64))
    print(f"max |C - C_exact| = {err.max():.3e}, max allowed = {allowed.max():.3e}")
    assert np.all(err <= allowed), "C exceeds its floating-point error bound"

    print("SUCCESS!")


if __name__ == "__main__":
    main()
