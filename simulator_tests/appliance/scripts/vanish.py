"""A client that is killed while its runtime runs (the test kills this process once it prints
its marker).

    python vanish.py ARTIFACT mid-stream   # sends the first chunk of a memcpy_h2d stream and
                                           # hangs before the rest; prints MID-STREAM
    python vanish.py ARTIFACT idle         # hangs between calls; prints IDLE
"""
import sys
import threading

from cerebras.appliance.pb.sdk import sdk_appliance_pb2
from cerebras.sdk.client import SdkRuntime

hang = threading.Event()      # never set

with SdkRuntime(sys.argv[1], simulator=True) as rt:
    x_id = rt.get_id("x")
    if sys.argv[2] == "idle":
        print("IDLE", flush=True)
        hang.wait()

    def requests():
        yield sdk_appliance_pb2.MemcpyH2DParams(
            op_index=0, dest=x_id, x=0, y=0, w=3, h=2, elt_per_pe=4,
            src=sdk_appliance_pb2.MemcpyData(data_chunk=bytes(48), num_bytes=48,
                                             total_bytes=96))
        print("MID-STREAM", flush=True)
        hang.wait()          # the rest of the stream never comes
        yield from ()

    rt.stub().sdk_runtime_memcpy_h2d(requests())
