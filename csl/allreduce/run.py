#!/usr/bin/env cs_python
"""Host driver of csl/allreduce: allreduce (sum or max) along every row (axis = 0) or every
column (axis = 1) of P_c x P_r PEs.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

Every PE (px, py) gets its own random vector v[py, px, :] of N f32 values; after the launch
every PE of row py must hold the elementwise sum (op = 0) or max (op = 1) of v[py, :, :]
(axis = 0), or every PE of column px that of v[:, px, :] (axis = 1).
"""

from __future__ import annotations


import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime, MemcpyDataType, MemcpyOrder  # pylint: disable=no-name-in-module
from waferscale.host.kernel_run import U_F32, U_F64, compile_params, gamma, host_args


def main() -> None:
    args = host_args()

    # Get grid and vector dimensions from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])  # PE columns
    P_r = int(params["P_r"])  # PE rows
    N = int(params["N"])      # vector length
    use_max = int(params.get("op", 0)) == 1  # layout.csl's default is 0 (sum)
    axis = int(params.get("axis", 0))        # layout.csl's default is 0 (along rows)
    # Axis of the host array [P_r][P_c][N] that one allreduce runs along, and its length.
    red_axis = 1 if axis == 0 else 0
    L = P_c if axis == 0 else P_r

    # Use a deterministic seed so that CI results are predictable. Both signs make the sums
    # cancel and the max pick negative values too.
    rng = np.random.default_rng(seed=7)
    v = rng.uniform(-1.0, 1.0, size=(P_r, P_c, N)).astype(np.float32)

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    v_symbol = runner.get_id("v")

    runner.load()
    runner.run()

    # v is [h][w][l]: ROW_MAJOR memcpy gives PE (px, py) the N values v[py, px, :].
    runner.memcpy_h2d(v_symbol, v.ravel(), 0, 0, P_c, P_r, N, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)

    # Launch the allreduce. The call returns when every PE has unblocked the command stream.
    runner.launch("allreduce", nonblock=False)

    result = np.zeros(P_r * P_c * N, dtype=np.float32)
    runner.memcpy_d2h(result, v_symbol, 0, 0, P_c, P_r, N, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
    result = result.reshape(P_r, P_c, N)

    runner.stop()

    line = "row" if axis == 0 else "column"
    if use_max:
        # The max involves no rounding: every PE must hold exactly the maximum of its line.
        expected = np.broadcast_to(v.max(axis=red_axis, keepdims=True), v.shape)
        np.testing.assert_array_equal(result, expected)
        print(f"every PE holds the exact maximum of its {line}")
    else:
        # A sum of L terms in any association order has at most L - 1 roundings:
        # |error| <= gamma_{L-1}(f32) * sum |v|, plus the f64 reference's own error.
        v64 = v.astype(np.float64)
        exact = np.broadcast_to(v64.sum(axis=red_axis, keepdims=True), v.shape)
        allowed = (gamma(L - 1, U_F32) + gamma(L, U_F64)) * np.broadcast_to(
            np.abs(v64).sum(axis=red_axis, keepdims=True), v.shape)
        err = np.abs(result.astype(np.float64) - exact)
        print(f"max |sum - exact| = {err.max():.3e}, max allowed = {allowed.max():.3e}")
        assert np.all(err <= allowed), "a sum exceeds its floating-point error bound"
        # The whole line receives one broadcast, so its PEs must agree bit for bit.
        first = result[:, :1, :] if axis == 0 else result[:1, :, :]
        assert np.all(result == first), f"PEs of one {line} disagree on the result"

    print("SUCCESS!")


if __name__ == "__main__":
    main()
