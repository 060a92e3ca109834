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


import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
)
from waferscale.host.kernel_run import (
    U_F32, U_F64, check_error, compile_params, gamma, host_args, to_memcpy_words,
)


def to_tiles(X: np.ndarray, P: int) -> np.ndarray:
    """Matrix -> memcpy order: PE by PE (row-major over the P x P square), each tile
    column-major."""
    rows, cols = X.shape
    return X.reshape(P, rows // P, P, cols // P).transpose(0, 2, 3, 1).ravel()


def from_tiles(flat: np.ndarray, P: int, rows: int, cols: int) -> np.ndarray:
    """Inverse of ``to_tiles``."""
    return flat.reshape(P, P, cols // P, rows // P).transpose(0, 3, 1, 2).reshape(rows, cols)


def main() -> None:
    args = host_args()

    # Get matrix and grid dimensions from compile metadata
    params = compile_params(args.name)
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
    check_error(err, allowed, "C - C_exact")

    print("SUCCESS!")


if __name__ == "__main__":
    main()
