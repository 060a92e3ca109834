#!/usr/bin/env cs_python
"""Host driver of csl/gemv: y = W·x on a P_c x P_r rectangle of PEs.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

Host-side data layout, identical to layout.csl's ``block_len``: the M rows of W are split into
P_r blocks and the N columns into P_c blocks, the first ``M % P_r`` (``N % P_c``) blocks one
longer. PE (px, py) holds ``W[rows of block py, columns of block px]`` column-major, the top-row
PE (px, 0) holds ``x[columns of block px]``, and the root column ``(P_c - 1) // 2`` returns
``y[rows of block py]``. memcpy moves the same number of elements to every PE of one call, so
each transfer is issued once per group of PEs with equal block sizes (at most 2 x 2 groups):
no padding is needed.
"""

from __future__ import annotations


import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime, MemcpyDataType, MemcpyOrder  # pylint: disable=no-name-in-module
from waferscale.host.kernel_run import (
    U_F16, U_F32, U_F64, blocks, check_error, compile_params, gamma, host_args,
    put_matrix_tiles, put_row_tiles, signed_magnitudes,
)


def main() -> None:
    args = host_args()

    # Get matrix and grid dimensions from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])  # PE columns
    P_r = int(params["P_r"])  # PE rows
    M = int(params["M"])      # rows of W
    N = int(params["N"])      # columns of W
    fp16 = int(params.get("fp16", 0)) == 1  # layout.csl's default is 0
    root_x = (P_c - 1) // 2   # the column that collects y, as in layout.csl

    w_dtype = np.float16 if fp16 else np.float32
    memcpy_dtype = MemcpyDataType.MEMCPY_16BIT if fp16 else MemcpyDataType.MEMCPY_32BIT

    # Use a deterministic seed so that CI results are predictable. Both signs make cancellation
    # happen (the error bound below accounts for it); magnitudes in [1/16, 1) keep every
    # product far from the f16 subnormal range, so the bound is purely relative whether or
    # not the hardware flushes subnormals.
    rng = np.random.default_rng(seed=7)
    W = signed_magnitudes(rng, (M, N)).astype(w_dtype)
    x = signed_magnitudes(rng, (N,)).astype(w_dtype)

    # Reference in float64: products of f16 or f32 values are exact in f64.
    W64 = W.astype(np.float64)
    x64 = x.astype(np.float64)
    y_exact = W64 @ x64
    abs_dot = np.abs(W64) @ np.abs(x64)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    W_symbol = runner.get_id("W")
    x_symbol = runner.get_id("x")
    y_symbol = runner.get_id("y")

    runner.load()
    runner.run()

    # W tiles: one copy per group of PEs with equal tile sizes, ordered [py][px][j][i], i.e.
    # PE by PE (ROW_MAJOR h-w-l) and column-major within a tile; x tiles into the top row.
    put_matrix_tiles(runner, W_symbol, W, P_c, P_r, order=MemcpyOrder.ROW_MAJOR,
                     data_type=memcpy_dtype)
    put_row_tiles(runner, x_symbol, x, P_c, order=MemcpyOrder.ROW_MAJOR, data_type=memcpy_dtype)

    # Launch y = W·x. The call returns when every PE has unblocked the command stream.
    runner.launch("compute", nonblock=False)

    # y tiles from the root column.
    y = np.zeros(M, dtype=np.float32)
    for py0, h, m, r0 in blocks(M, P_r):
        y_part = np.zeros(h * m, dtype=np.float32)
        runner.memcpy_d2h(y_part, y_symbol, root_x, py0, 1, h, m, streaming=False,
                          order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                          nonblock=False)
        y[r0:r0 + h * m] = y_part

    runner.stop()

    # Every y[i] is a sum of N products, each product and partial sum rounded once, in an
    # order fixed by the tiling; whatever the order (and whether @fmacs is fused), the error
    # is at most gamma_N(f32) * sum_j |W[i,j] x[j]|. With f16 weights @fmachs may round each
    # product to f16 first, one more relative error of U_F16 per product. The f64 reference
    # adds its own gamma_N(f64).
    if fp16:
        bound = U_F16 + gamma(N, U_F32) * (1.0 + U_F16)
    else:
        bound = gamma(N, U_F32)
    bound += gamma(N, U_F64)
    err = np.abs(y.astype(np.float64) - y_exact)
    allowed = bound * abs_dot
    check_error(err, allowed, "y - y_exact")

    print("SUCCESS!")


if __name__ == "__main__":
    main()
