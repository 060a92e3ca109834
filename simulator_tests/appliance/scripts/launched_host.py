"""A cs_python host script (the SDK's local host API), run on the appliance by SdkLauncher:
write x, scale it by 2 and read it back."""
import argparse

import numpy as np
from cerebras.sdk.runtime.sdkruntimepybind import MemcpyDataType, MemcpyOrder, SdkRuntime

parser = argparse.ArgumentParser()
parser.add_argument("--name", required=True)
args = parser.parse_args()

W, H, N = 3, 2, 4
x = np.arange(W * H * N, dtype=np.float32)
rt = SdkRuntime(args.name)
rt.load()
rt.run()
x_id = rt.get_id("x")
rt.memcpy_h2d(x_id, x, 0, 0, W, H, N, streaming=False, data_type=MemcpyDataType.MEMCPY_32BIT,
              order=MemcpyOrder.ROW_MAJOR, nonblock=False)
rt.launch("scale", np.float32(2.0), nonblock=False)
out = np.zeros_like(x)
rt.memcpy_d2h(out, x_id, 0, 0, W, H, N, streaming=False, data_type=MemcpyDataType.MEMCPY_32BIT,
              order=MemcpyOrder.ROW_MAJOR, nonblock=False)
rt.stop()
assert np.array_equal(out, 2 * x), out
print("launched host script: PASS")
