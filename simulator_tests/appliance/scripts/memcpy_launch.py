"""Memcpy both ways in both orders and both widths, launch, a non-blocking D2H waited for with
task.wait(), the debug helper and a non-blocking call's error, through the official client's
SdkRuntime (appliance mode).

    python memcpy_launch.py ARTIFACT

The application (../app) is a W x H = 3 x 2 rectangle of PEs holding N = 4 f32 values `x` and
N f16 values `hx` each; scale(a) multiplies x by a and doubles hx. Prints PASS and exits 0
when every read-back equals NumPy's answer.
"""
import sys

import numpy as np
from cerebras.appliance.pb.sdk.sdk_common_pb2 import MemcpyDataType, MemcpyOrder
from cerebras.sdk.client import SdkRuntime, sdk_utils
from cerebras.sdk.client.debug_util import debug_util

W, H, N = 3, 2, 4
ROW, COL = MemcpyOrder.ROW_MAJOR, MemcpyOrder.COL_MAJOR
B32, B16 = MemcpyDataType.MEMCPY_32BIT, MemcpyDataType.MEMCPY_16BIT


def check(name, got, want):
    if not np.array_equal(got, want):
        print(f"FAIL {name}:\n got {got}\nwant {want}")
        sys.exit(1)
    print(f"ok {name}")


rng = np.random.default_rng(7)
x = rng.standard_normal((H, W, N)).astype(np.float32)        # x[r][c][k]: PE (c, r)
hx = rng.standard_normal((H, W, N)).astype(np.float16)

with SdkRuntime(sys.argv[1], simulator=True) as rt:
    x_id, hx_id = rt.get_id("x"), rt.get_id("hx")

    # 32-bit, written ROW_MAJOR, read back in both orders.
    rt.memcpy_h2d(x_id, x.ravel(), 0, 0, W, H, N, streaming=False, data_type=B32,
                  order=ROW, nonblock=False)
    out = np.zeros(W * H * N, np.float32)
    rt.memcpy_d2h(out, x_id, 0, 0, W, H, N, streaming=False, data_type=B32, order=ROW,
                  nonblock=False)
    check("f32 h2d row, d2h row", out, x.ravel())
    rt.memcpy_d2h(out, x_id, 0, 0, W, H, N, streaming=False, data_type=B32, order=COL,
                  nonblock=False)
    check("f32 h2d row, d2h col", out, x.ravel(order="F"))   # COL_MAJOR: h fastest, then w, l

    # 32-bit written COL_MAJOR (a different array), read back ROW_MAJOR.
    x2 = (x * 3).astype(np.float32)
    rt.memcpy_h2d(x_id, x2.ravel(order="F"), 0, 0, W, H, N, streaming=False, data_type=B32,
                  order=COL, nonblock=False)
    rt.memcpy_d2h(out, x_id, 0, 0, W, H, N, streaming=False, data_type=B32, order=ROW,
                  nonblock=False)
    check("f32 h2d col, d2h row", out, x2.ravel())

    # 16-bit: one 32-bit word per element, the value in the low half; both orders.
    words = sdk_utils.input_array_to_u32(hx.ravel(), None, 1)
    rt.memcpy_h2d(hx_id, words, 0, 0, W, H, N, streaming=False, data_type=B16, order=ROW,
                  nonblock=False)
    back = np.zeros(W * H * N, np.uint32)
    rt.memcpy_d2h(back, hx_id, 0, 0, W, H, N, streaming=False, data_type=B16, order=COL,
                  nonblock=False)
    check("f16 h2d row, d2h col", sdk_utils.memcpy_view(back, np.dtype(np.float16)),
          hx.ravel(order="F"))

    # Launch (typed argument), then a non-blocking D2H and task.wait().
    rt.launch("scale", np.float32(0.5), nonblock=False)
    task = rt.memcpy_d2h(out, x_id, 0, 0, W, H, N, streaming=False, data_type=B32, order=ROW,
                         nonblock=True)
    task.wait()
    check("launch scale(0.5), non-blocking d2h", out, (x2 * np.float32(0.5)).ravel())
    back16 = np.zeros(W * H * N, np.uint32)
    task = rt.memcpy_d2h(back16, hx_id, 0, 0, W, H, N, streaming=False, data_type=B16,
                         order=ROW, nonblock=True)
    task.wait()
    check("launch doubled hx (16-bit, row)", sdk_utils.memcpy_view(back16, np.dtype(np.float16)),
          (hx + hx).ravel())

    # The debug helper reads any global (here the unexported x_buf) at fabric coordinates
    # (program PE (c, r) is (c + 4, r + 1)); its array is indexed [column][row][element].
    rect = debug_util(sys.argv[1], rt).get_symbol_rect(((4, 1), (W, H)), "x_buf", np.float32)
    check("debug_util.get_symbol_rect", rect, (x2 * np.float32(0.5)).transpose(1, 0, 2))

    # A non-blocking call's error comes back at its task's wait.
    bad = rt.call("no_such_function", [], nonblock=True)
    try:
        bad.wait()
    except Exception as e:
        print(f"ok non-blocking error at wait: {e}")
    else:
        print("FAIL: the bad non-blocking call's wait did not raise")
        sys.exit(1)
print("PASS")
