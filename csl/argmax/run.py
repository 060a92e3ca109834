#!/usr/bin/env cs_python
"""Host driver of csl/argmax: argmax of V logits distributed over P_c x P_r PEs.

Compile first (see commands_wse3.sh / commands_wse2.sh), then run ``cs_python run.py --name out``
(add ``--cmaddr IP:PORT`` for a CS system; without it the SDK simulator runs).

Host-side data layout, identical to layout.csl's ``block_len``/``block_start``: the V logits are
split into P = P_c * P_r contiguous blocks, PE (px, py) holding block py * P_c + px (row-major PE
order), the first ``V % P`` blocks one longer. memcpy moves the same number of elements to every
PE of one call, so the copy is issued once per rectangle of PEs with equal block lengths (at most
four, each a contiguous slice of the logits): no padding is needed.

After the launch every PE holds ``result = {max value, its index as f32}``, the index being the
smallest one that holds the max (numpy.argmax). The script checks PE (0, 0) and that every PE
agrees bit for bit.
"""

from __future__ import annotations


import numpy as np

from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime, MemcpyDataType, MemcpyOrder  # pylint: disable=no-name-in-module
from waferscale.host.kernel_run import compile_params, host_args


def rectangles(V: int, P_c: int, P_r: int) -> list[tuple[int, int, int, int, int, int]]:
    """PE rectangles with equal block lengths, as ``(px0, py0, w, h, block_len, first_item)``.

    Blocks follow row-major PE order and the first ``V % P`` are one longer, so the long blocks
    fill whole rows, then part of one row; each rectangle is either whole rows or part of one
    row, hence a contiguous slice of the logits in memcpy's ROW_MAJOR order.
    """
    P = P_c * P_r
    base, extra = divmod(V, P)
    full_rows, rest = divmod(extra, P_c)
    rects = []
    start = 0

    def add(px0: int, py0: int, w: int, h: int, n: int) -> None:
        nonlocal start
        if w > 0 and h > 0 and n > 0:
            rects.append((px0, py0, w, h, n, start))
        start += w * h * n

    add(0, 0, P_c, full_rows, base + 1)              # whole rows of long blocks
    if full_rows < P_r:
        add(0, full_rows, rest, 1, base + 1)         # long blocks in the mixed row
        add(rest, full_rows, P_c - rest, 1, base)    # short blocks in the mixed row
        add(0, full_rows + 1, P_c, P_r - full_rows - 1, base)  # whole rows of short blocks
    assert start == V
    return rects


def main() -> None:
    args = host_args()

    # Get the vector and grid dimensions from compile metadata
    params = compile_params(args.name)
    P_c = int(params["P_c"])  # PE columns
    P_r = int(params["P_r"])  # PE rows
    V = int(params["V"])      # vector length

    # Use a deterministic seed so that CI results are predictable. Negative logits only, and
    # the max planted three times (in the last block, the first and the middle one), so that
    # the tie rule decides the answer and a reduction that mixed up indices would fail.
    rng = np.random.default_rng(seed=7)
    logits = -rng.uniform(1.0, 10.0, size=V).astype(np.float32)
    top = np.float32(-0.5)
    for i in (V - 1, V // 2, 1 % V):
        logits[i] = top
    expected_index = int(np.argmax(logits))
    expected_value = logits[expected_index]

    runner = SdkRuntime(args.name, cmaddr=args.cmaddr)

    logits_symbol = runner.get_id("logits")
    result_symbol = runner.get_id("result")

    runner.load()
    runner.run()

    for px0, py0, w, h, n, first in rectangles(V, P_c, P_r):
        runner.memcpy_h2d(logits_symbol, logits[first:first + w * h * n], px0, py0, w, h, n,
                          streaming=False, order=MemcpyOrder.ROW_MAJOR,
                          data_type=MemcpyDataType.MEMCPY_32BIT, nonblock=False)

    # Launch the argmax. The call returns when every PE has unblocked the command stream.
    runner.launch("argmax", nonblock=False)

    # Every PE's result, [P_r][P_c][2].
    result = np.zeros(P_r * P_c * 2, dtype=np.float32)
    runner.memcpy_d2h(result, result_symbol, 0, 0, P_c, P_r, 2, streaming=False,
                      order=MemcpyOrder.ROW_MAJOR, data_type=MemcpyDataType.MEMCPY_32BIT,
                      nonblock=False)
    result = result.reshape(P_r, P_c, 2)

    runner.stop()

    value, index = result[0, 0, 0], int(result[0, 0, 1])
    print(f"PE (0, 0): argmax = {index} (value {value}); numpy: {expected_index} "
          f"(value {expected_value})")
    assert index == expected_index, "wrong index"
    assert value == expected_value, "wrong value"
    # The whole rectangle receives one broadcast, so its PEs must agree bit for bit.
    assert np.array_equal(result.view(np.uint32),
                          np.broadcast_to(result[:1, :1, :], result.shape).view(np.uint32)), \
        "PEs disagree on the result"

    print("SUCCESS!")


if __name__ == "__main__":
    main()
