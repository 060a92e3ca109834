#!/usr/bin/env cs_python
"""Host driver of csl/meshgemv: y[1,N] = x[1,M] · W[M,N] in f16 on P x P PEs (WaferLLM's
MeshGEMV), with WaferLLM's measurement protocol.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run
``cs_python run.py --name out [--warmup 2 --repeats 10]`` (add ``--cmaddr IP:PORT`` for a CS
system; without it the SDK simulator runs).

Host-side data layout (layout.csl): Mt = M / P, Nt = N / P. PE (px, py) holds
``x[py*Mt:(py+1)*Mt]`` (x replicated along each PE row) and the row-major tile
``W[py*Mt:(py+1)*Mt, px*Nt:(px+1)*Nt]``; after a launch every PE of column px holds
``y[px*Nt:(px+1)*Nt]``. Only the ``width`` first columns are simulated (default P), so y is
checked on ``width * Nt`` entries.

Timing: each PE records the start timestamp of its first timed iteration and the end timestamp
of its last one (three 16-bit words each, exported as tsc_start / tsc_end); the script prints the mean over PEs of
(end - start) / repeats, in cycles.
"""

from __future__ import annotations


import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime, MemcpyDataType, MemcpyOrder  # pylint: disable=no-name-in-module

from waferscale.host.kernel_run import U_F16, compile_params, host_args, to_memcpy_words
from waferscale.kernels.base import mean_iteration_cycles
from waferscale.kernels.meshgemv import meshgemv_reference


def main() -> None:
    args = host_args(timed=(2, 10))
    params = compile_params(args.name)
    P = int(params["P"])
    width = int(params.get("width", P))   # layout.csl's default is P
    Mt = int(params["Mt"])
    Nt = int(params["Nt"])
    group_num = int(params["group_num"])
    M, N = P * Mt, P * Nt

    # Deterministic inputs in [-1, 1): sums of M products stay far from f16 overflow.
    rng = np.random.default_rng(seed=2025)
    x = rng.uniform(-1.0, 1.0, M).astype(np.float16)
    W = rng.uniform(-1.0, 1.0, (M, N)).astype(np.float16)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)
    x_symbol = runner.get_id("x")
    W_symbol = runner.get_id("W")
    y_symbol = runner.get_id("y")

    runner.load()
    runner.run()

    # x tile of row py on every PE of the row: [py][px][k] in ROW_MAJOR h-w-l order.
    x_tiles = np.repeat(x.reshape(P, 1, Mt), width, axis=1)
    runner.memcpy_h2d(x_symbol, to_memcpy_words(x_tiles), 0, 0, width, P, Mt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_16BIT,
                      nonblock=False)
    # W tiles, row-major within a tile: [py][px][i][j].
    W_tiles = W.reshape(P, Mt, P, Nt).transpose(0, 2, 1, 3)[:, :width]
    runner.memcpy_h2d(W_symbol, to_memcpy_words(W_tiles), 0, 0, width, P, Mt * Nt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_16BIT,
                      nonblock=False)

    runner.launch("meshgemv_host", np.uint16(args.warmup), np.uint16(args.repeats),
                  nonblock=False)

    y_u32 = np.zeros(P * width * Nt, dtype=np.uint32)
    runner.memcpy_d2h(y_u32, y_symbol, 0, 0, width, P, Nt, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_16BIT,
                      nonblock=False)
    y_all = (y_u32 & 0xFFFF).astype(np.uint16).view(np.float16).reshape(P, width * Nt)

    cycles = mean_iteration_cycles(runner, width, P, args.repeats)
    runner.stop()

    print(f"P={P} width={width} M={M} N={N} group_num={group_num} "
          f"warmup={args.warmup} repeats={args.repeats}")
    print(f"mean cycles per iteration: {cycles:.2f}")

    # Every f16 product and sum of the kernel is rounded once, in a fixed order, so the
    # reference that repeats those roundings must match bit for bit on every PE.
    y_ref = meshgemv_reference(x, W, P, group_num)[:width * Nt]
    assert np.array_equal(y_all.view(np.uint16), np.tile(y_ref.view(np.uint16), (P, 1))), \
        "y differs from the f16 reference"
    # As a check of the reference itself, it must lie within the f16 error bound of the exact
    # product. A term x[i]·W[i, j] meets at most d = 1 + Mt + S + G roundings on its way (its
    # product, the local sums, the phase-1 chain of its group of S rows, the phase-2 chain of
    # the G roots), so |y - exact| <= gamma_d · (|x| |W|) (Higham, summation trees).
    S = P // group_num
    d = 1 + Mt + S + group_num
    if d * U_F16 < 0.5:
        exact = (x.astype(np.float64) @ W.astype(np.float64))[:width * Nt]
        bound = d * U_F16 / (1 - d * U_F16) * \
            (np.abs(x.astype(np.float64)) @ np.abs(W.astype(np.float64)))[:width * Nt]
        assert np.all(np.abs(y_ref.astype(np.float64) - exact) <= bound), \
            "reference out of bound"

    print("SUCCESS!")


if __name__ == "__main__":
    main()
