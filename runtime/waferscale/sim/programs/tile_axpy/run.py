#!/usr/bin/env cs_python
"""Host driver of tile AXPY (layout.csl): x, y and a to every PE of the rectangle, one launch
of ``compute``, y back from every PE, checked against NumPy.

The values are small integers (x, y in [-1000, 1000], a in [-8, 8]), so every product and sum
is exact in f32 whether or not the FMAC rounds once: the check is equality, and a value on
the wrong PE (a swapped row or column) cannot pass it. Host arrays are laid out row-major
over the rectangle, PE (px, py) at index py * width + px, as memcpy's ROW_MAJOR order reads
them.
"""

from __future__ import annotations

import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
)
from waferscale.host.kernel_run import compile_params, host_args


def main() -> None:
    args = host_args()
    params = compile_params(args.name)
    width, height, N = (int(params[k]) for k in ("width", "height", "N"))
    n_pes = width * height

    rng = np.random.default_rng(seed=11)
    x = rng.integers(-1000, 1001, size=(n_pes, N)).astype(np.float32)
    y = rng.integers(-1000, 1001, size=(n_pes, N)).astype(np.float32)
    a = rng.integers(-8, 9, size=(n_pes, 1)).astype(np.float32)
    expected = a * x + y

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)
    symbols = {name: runner.get_id(name) for name in ("x", "y", "a")}
    runner.load()
    runner.run()

    for name, data, per_pe in (("x", x, N), ("y", y, N), ("a", a, 1)):
        runner.memcpy_h2d(symbols[name], data.ravel(), 0, 0, width, height, per_pe,
                          streaming=False, order=MemcpyOrder.ROW_MAJOR,
                          data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)
    runner.launch("compute", nonblock=False)
    got = np.zeros(n_pes * N, dtype=np.float32)
    runner.memcpy_d2h(got, symbols["y"], 0, 0, width, height, N, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
    runner.stop()

    wrong = np.flatnonzero((got.reshape(n_pes, N) != expected).any(axis=1))
    if wrong.size:
        k = int(wrong[0])
        raise SystemExit(f"FAIL: {wrong.size} of {n_pes} PEs hold a wrong y; the first is "
                         f"PE({k % width},{k // width})")
    print(f"{n_pes} PEs ({width} x {height}), {N} elements each: y = a * x + y exact")
    print("SUCCESS!")


if __name__ == "__main__":
    main()
