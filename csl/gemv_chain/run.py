#!/usr/bin/env cs_python
"""Host driver of csl/gemv_chain: y2 = W2·(W1·x) in one launch on a P_c x P_r rectangle.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

Host-side data layout, identical to layout.csl's ``block_len`` (the first ``total % parts``
blocks one longer):

* W1 (M1 x N): PE (px, py) holds ``W1[rows of block py of M1 over P_r, columns of block px of
  N over P_c]`` column-major (as csl/gemv).
* x (N): the top-row PE (px, 0) holds ``x[block px of N over P_c]``.
* W2 (M2 x M1): PE (px, py) holds ``W2[rows of block px of M2 over P_c, columns of block py of
  M1 over P_r]`` column-major.
* y2 (M2): row ``root_y = (P_r - 1) // 2`` returns it, PE (px, root_y) holding block px of M2
  over P_c.

y1 = W1·x never leaves the fabric. memcpy moves the same number of elements to every PE of one
call, so each transfer is issued once per group of PEs with equal block sizes.
"""

from __future__ import annotations


import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
)
from waferscale.host.kernel_run import (
    U_F16, U_F32, U_F64, blocks, check_error, compile_params, gamma, host_args,
    put_matrix_tiles, put_row_tiles, signed_magnitudes,
)

# Unit roundoff of the formats involved, and half the smallest f16 subnormal (the absolute
# error of rounding a tiny value to f16).
ETA_F16 = 2.0**-25


def gemv_bound(k: int, fp16: bool) -> tuple[float, float]:
    """(c, d) such that one GEMV of k terms, accumulated in f32, has |y - W·a| <= c·|W||a| + d.

    f32: gamma_k. f16 weights (@fmachs): each product may be rounded to f16 first, one more
    relative U_F16 and, near underflow, an absolute ETA_F16 per product.
    """
    if fp16:
        return U_F16 + gamma(k, U_F32) * (1.0 + U_F16), 2.0 * k * ETA_F16
    return gamma(k, U_F32), 0.0


def chain_bound(W1: np.ndarray, x: np.ndarray, W2: np.ndarray, fp16: bool) -> np.ndarray:
    """Per-element bound on |y2 - W2·W1·x| for the chain (all arithmetic in float64).

    y1's error e1 = c1·|W1||x| + d1; with fp16 y1 is rounded to f16 before GEMV2, adding
    U_F16·(|y1| + e1) + ETA_F16. With delta that error of GEMV2's input,
    |y2 - W2·y1| <= |W2|·delta + c2·|W2|·(|y1| + delta) + d2. The f64 reference adds
    gamma_{N+M1}(f64)·|W2||W1||x|.
    """
    M1, N = W1.shape
    aW1, ax, aW2 = np.abs(W1), np.abs(x), np.abs(W2)
    c1, d1 = gemv_bound(N, fp16)
    c2, d2 = gemv_bound(M1, fp16)
    abs1 = aW1 @ ax
    y1 = np.abs(W1 @ x)
    delta = c1 * abs1 + d1
    if fp16:
        delta = delta + U_F16 * (y1 + delta) + ETA_F16
    return aW2 @ delta + c2 * (aW2 @ (y1 + delta)) + d2 + gamma(N + M1, U_F64) * (aW2 @ abs1)


def main() -> None:
    args = host_args()

    # Get matrix and grid dimensions from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])  # PE columns
    P_r = int(params["P_r"])  # PE rows
    M1 = int(params["M1"])    # rows of W1, columns of W2
    N = int(params["N"])      # columns of W1
    M2 = int(params["M2"])    # rows of W2
    fp16 = int(params.get("fp16", 0)) == 1  # layout.csl's default is 0
    root_y = (P_r - 1) // 2   # the row that collects y2, as in layout.csl

    w_dtype = np.float16 if fp16 else np.float32
    memcpy_dtype = MemcpyDataType.MEMCPY_16BIT if fp16 else MemcpyDataType.MEMCPY_32BIT

    # Deterministic data; both signs make cancellation happen (the bound accounts for it).
    rng = np.random.default_rng(seed=7)
    W1 = signed_magnitudes(rng, (M1, N)).astype(w_dtype)
    x = signed_magnitudes(rng, (N,)).astype(w_dtype)
    W2 = signed_magnitudes(rng, (M2, M1)).astype(w_dtype)

    # Reference in float64.
    W1_64, x64, W2_64 = (a.astype(np.float64) for a in (W1, x, W2))
    y2_exact = W2_64 @ (W1_64 @ x64)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    W1_symbol = runner.get_id("W1")
    W2_symbol = runner.get_id("W2")
    x_symbol = runner.get_id("x")
    y_symbol = runner.get_id("y")

    runner.load()
    runner.run()

    # W1 tiles as csl/gemv's W; W2's rows over the PE columns and its columns over the PE
    # rows (transposed); x tiles into the top row.
    put_matrix_tiles(runner, W1_symbol, W1, P_c, P_r, order=MemcpyOrder.ROW_MAJOR,
                     data_type=memcpy_dtype)
    put_matrix_tiles(runner, W2_symbol, W2, P_c, P_r, order=MemcpyOrder.ROW_MAJOR,
                     data_type=memcpy_dtype, transposed=True)
    put_row_tiles(runner, x_symbol, x, P_c, order=MemcpyOrder.ROW_MAJOR, data_type=memcpy_dtype)

    # Launch both GEMVs. The call returns when every PE has unblocked the command stream.
    runner.launch("compute", nonblock=False)

    # y2 tiles from row root_y.
    y2 = np.zeros(M2, dtype=np.float32)
    for px0, w, m, r0 in blocks(M2, P_c):
        part = np.zeros(w * m, dtype=np.float32)
        runner.memcpy_d2h(part, y_symbol, px0, root_y, w, 1, m, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                          nonblock=False)
        y2[r0:r0 + w * m] = part

    runner.stop()

    err = np.abs(y2.astype(np.float64) - y2_exact)
    allowed = chain_bound(W1_64, x64, W2_64, fp16)
    check_error(err, allowed, "y2 - y2_exact")

    print("SUCCESS!")


if __name__ == "__main__":
    main()
