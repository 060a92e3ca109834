"""A client killed mid-stream: start a runtime, then send the first chunk of a memcpy_h2d
stream and hang before the rest (the test kills this process once it prints MID-STREAM).

    python vanish.py ARTIFACT
"""
import sys
import threading

from cerebras.appliance.pb.sdk import sdk_appliance_pb2
from cerebras.sdk.client import SdkRuntime

hang = threading.Event()

with SdkRuntime(sys.argv[1], simulator=True) as rt:
    x_id = rt.get_id("x")

    def requests():
        yield sdk_appliance_pb2.MemcpyH2DParams(
            op_index=0, dest=x_id, x=0, y=0, w=3, h=2, elt_per_pe=4,
            src=sdk_appliance_pb2.MemcpyData(data_chunk=bytes(48), num_bytes=48,
                                             total_bytes=96))
        print("MID-STREAM", flush=True)
        hang.wait()          # never set: the rest of the stream never comes
        yield from ()

    rt.stub().sdk_runtime_memcpy_h2d(requests())
