"""Print, as JSON, the official client's descriptors of the messages, enums and services that
waferscale's .proto files declare (run in the SDK venv; read by test_appliance_protocol.py).

    python dump_descriptors.py < NAMES_JSON

NAMES_JSON: {"messages": [...], "enums": [...], "services": [...]} (full names). Output: per
message its fields {name: [number, type, repeated, type_name]}, per enum {name: number}, per
service {method: [input, output, client_streaming, server_streaming]}.
"""
import json
import sys

# Importing the client's modules registers their descriptors in the default pool.
import cerebras.appliance.pb.sdk.sdk_appliance_pb2  # noqa: F401
import cerebras.appliance.pb.workflow.appliance.cluster_mgmt.cluster_pb2  # noqa: F401
from google.protobuf import descriptor_pb2, descriptor_pool



def repeated(f):
    return f.is_repeated if hasattr(f, "is_repeated") else f.label == 3


pool = descriptor_pool.Default()
names = json.load(sys.stdin)
out = {"messages": {}, "enums": {}, "services": {}}
for n in names["messages"]:
    m = pool.FindMessageTypeByName(n)
    out["messages"][n] = {
        f.name: [f.number, f.type, repeated(f),
                 (f.message_type or f.enum_type).full_name
                 if (f.message_type or f.enum_type) else ""]
        for f in m.fields}
for n in names["enums"]:
    out["enums"][n] = {v.name: v.number for v in pool.FindEnumTypeByName(n).values}
for n in names["services"]:
    sp = descriptor_pb2.ServiceDescriptorProto()     # (streaming flags: only in the proto)
    pool.FindServiceByName(n).CopyToProto(sp)
    out["services"][n] = {
        m.name: [m.input_type.lstrip("."), m.output_type.lstrip("."),
                 m.client_streaming, m.server_streaming] for m in sp.method}
json.dump(out, sys.stdout)
