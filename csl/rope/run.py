#!/usr/bin/env cs_python
"""Host driver of csl/rope: rotary position embedding of one q or k vector of H heads of
head_dim d over a row of P_c PEs, in llama.cpp's (GGUF llama) convention: each head's pairs are
adjacent elements (x[2i], x[2i+1]), pair i turns by pos * base^(-2i/d).

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs; ``--base`` sets
the RoPE base, 10000 by default — it only enters the host's tables).

Host-side data layout, identical to layout.csl's ``block_len``: the H*d elements (head after
head) form K = H*d/2 pairs, split into P_c contiguous blocks of whole pairs, the first
``K % P_c`` one pair longer; PE px holds pairs q0 .. q0+m-1 (elements 2*q0 .. 2*(q0+m)-1) of
x and y, and the tables cos_tab[p*m + j] = cos(p * theta((q0 + j) mod d/2)) (sin_tab alike)
for p < max_pos, with theta(i) = base^(-2i/d) computed in float64 and the tables rounded once
to f32. The tables are copied once; every launch ``rope(pos)`` then rotates x by position pos.
memcpy moves the same count to every PE of one call, so each transfer is issued once per group
of PEs with equal block lengths (at most 2 groups): no padding.
"""

from __future__ import annotations

import argparse

import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import (  # pylint: disable=no-name-in-module
    MemcpyDataType,
    MemcpyOrder,
    SdkRuntime,
)
from waferscale.host.kernel_run import U_F32, blocks, compile_params, gamma

# The smallest normal f32 (below it results may be subnormal or flushed to zero, so only an
# absolute error bound holds).
TINY_F32 = 2.0**-126


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", help="the test compile output dir")
    parser.add_argument("--cmaddr", help="IP:port for CS system")
    parser.add_argument("--base", type=float, default=10000.0, help="RoPE base (theta)")
    args = parser.parse_args()

    # Get the sizes from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])          # PEs in the row
    H = int(params["H"])              # heads
    d = int(params["d"])              # head dimension (even)
    max_pos = int(params["max_pos"])  # positions in the tables
    K = H * d // 2                    # pairs

    # Angles in float64, tables rounded once to f32 (as the model's rope_tables).
    freqs = args.base ** (-np.arange(0, d, 2, dtype=np.float64) / d)       # (d/2,)
    angles = np.outer(np.arange(max_pos, dtype=np.float64), freqs)          # (max_pos, d/2)
    cos_all, sin_all = np.cos(angles), np.sin(angles)
    # Frequency index of every pair of the whole vector, head after head.
    pair_freq = np.arange(K) % (d // 2)

    # Use a deterministic seed so that CI results are predictable. The first position is 0
    # (identity), then the last one, then two others.
    rng = np.random.default_rng(seed=7)
    positions = [0, max_pos - 1] + [int(p) for p in rng.integers(0, max_pos, 2)]
    xs = [rng.uniform(-2.0, 2.0, H * d).astype(np.float32) for _ in positions]

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    x_symbol = runner.get_id("x")
    y_symbol = runner.get_id("y")
    cos_symbol = runner.get_id("cos_tab")
    sin_symbol = runner.get_id("sin_tab")

    runner.load()
    runner.run()

    copy = {"streaming": False, "order": MemcpyOrder.ROW_MAJOR,
            "data_type": MemcpyDataType.MEMCPY_32BIT, "nonblock": False}

    # Tables, once: PE px's table is (max_pos, m) row-major; a group's PEs follow each other.
    for symbol, table in ((cos_symbol, cos_all), (sin_symbol, sin_all)):
        for px0, w, m, q0 in blocks(K, P_c):
            per_pe = [table[:, pair_freq[q0 + k * m:q0 + (k + 1) * m]] for k in range(w)]
            host = np.concatenate([t.astype(np.float32).ravel() for t in per_pe])
            runner.memcpy_h2d(symbol, host, px0, 0, w, 1, max_pos * m, **copy)

    for pos, x in zip(positions, xs):
        for px0, w, m, q0 in blocks(K, P_c):
            runner.memcpy_h2d(x_symbol, x[2 * q0:2 * (q0 + w * m)], px0, 0, w, 1, 2 * m, **copy)

        # Launch the rotation. The call returns when every PE has unblocked the command stream.
        runner.launch("rope", np.int16(pos), nonblock=False)

        y = np.zeros(H * d, dtype=np.float32)
        for px0, w, m, q0 in blocks(K, P_c):
            part = np.zeros(w * 2 * m, dtype=np.float32)
            runner.memcpy_d2h(part, y_symbol, px0, 0, w, 1, 2 * m, **copy)
            y[2 * q0:2 * (q0 + w * m)] = part

        # Error bound per element, relative to the exact rotation with float64 cos/sin: the
        # tables round once (c(1+e1), s(1+e2)), each product once, the add/subtract once, so
        # |y - exact| <= gamma_3 (|a c| + |b s|) (and alike for the odd element); subnormal
        # results add an absolute 2^-126.
        a = x[0::2].astype(np.float64)
        b = x[1::2].astype(np.float64)
        c = cos_all[pos, pair_freq]
        s = sin_all[pos, pair_freq]
        exact_even, exact_odd = a * c - b * s, a * s + b * c
        allowed_even = gamma(3, U_F32) * (np.abs(a * c) + np.abs(b * s)) + TINY_F32
        allowed_odd = gamma(3, U_F32) * (np.abs(a * s) + np.abs(b * c)) + TINY_F32
        err_even = np.abs(y[0::2].astype(np.float64) - exact_even)
        err_odd = np.abs(y[1::2].astype(np.float64) - exact_odd)
        print(f"pos {pos}: max |y - exact| = {max(err_even.max(), err_odd.max()):.3e}")
        assert np.all(err_even <= allowed_even) and np.all(err_odd <= allowed_odd), \
            f"y exceeds its floating-point error bound at pos {pos}"
        if pos == 0:
            # cos 0 = 1 and sin 0 = 0 exactly: the identity, bit for bit.
            np.testing.assert_array_equal(y, x)

    runner.stop()

    print("SUCCESS!")


if __name__ == "__main__":
    main()
