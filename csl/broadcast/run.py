#!/usr/bin/env cs_python
"""Host driver of csl/broadcast: in every row (axis = 0) or every column (axis = 1) of P_c x P_r
PEs, the PE at position `root` sends its vector to every other PE of that line.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

The root PE of every line gets its own random vector of N f32 values and every other PE gets
NaNs, so a PE that misses the broadcast cannot pass; after the launch every PE must hold the
vector of its line's root, bit for bit (a broadcast does no arithmetic).
"""

from __future__ import annotations


import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime, MemcpyDataType, MemcpyOrder  # pylint: disable=no-name-in-module
from waferscale.host.kernel_run import compile_params, host_args


def main() -> None:
    args = host_args()

    # Get grid and vector dimensions from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])              # PE columns
    P_r = int(params["P_r"])              # PE rows
    N = int(params["N"])                  # vector length
    root = int(params.get("root", 0))     # layout.csl's default is 0
    axis = int(params.get("axis", 0))     # layout.csl's default is 0 (along rows)

    # Use a deterministic seed so that CI results are predictable.
    rng = np.random.default_rng(seed=7)
    v = np.full((P_r, P_c, N), np.nan, dtype=np.float32)
    if axis == 0:
        v[:, root, :] = rng.uniform(-1.0, 1.0, size=(P_r, N))
        expected = np.broadcast_to(v[:, root:root + 1, :], v.shape)
    else:
        v[root, :, :] = rng.uniform(-1.0, 1.0, size=(P_c, N))
        expected = np.broadcast_to(v[root:root + 1, :, :], v.shape)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    v_symbol = runner.get_id("v")

    runner.load()
    runner.run()

    # v is [h][w][l]: ROW_MAJOR memcpy gives PE (px, py) the N values v[py, px, :].
    runner.memcpy_h2d(v_symbol, v.ravel(), 0, 0, P_c, P_r, N, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)

    # Launch the broadcast. The call returns when every PE has unblocked the command stream.
    runner.launch("broadcast", nonblock=False)

    result = np.zeros(P_r * P_c * N, dtype=np.float32)
    runner.memcpy_d2h(result, v_symbol, 0, 0, P_c, P_r, N, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
    result = result.reshape(P_r, P_c, N)

    runner.stop()

    # Compare bit patterns: exact, and NaN (a missed broadcast) never equals a root value.
    assert np.array_equal(result.view(np.uint32), expected.view(np.uint32)), \
        "some PE does not hold its line's root vector"
    line = "row" if axis == 0 else "column"
    print(f"every PE holds the vector of its {line}'s root PE ({root})")
    print("SUCCESS!")


if __name__ == "__main__":
    main()
