"""The appliance wire protocol: message classes and gRPC service plumbing built from our own
``.proto`` files (``protos/``).

The build (``setup.py``) compiles the ``.proto`` files with grpcio-tools' protoc into one
descriptor set, ``protos/appliance.binpb``. This module loads it into a private descriptor
pool and makes the message classes from it at import, so no generated ``*_pb2.py`` code is
involved: the descriptor set is a stable wire-format file, which any protobuf runtime from
4.25 on reads, independent of the protoc version that wrote it (generated code, in contrast,
must not be newer than the protobuf and grpcio installed next to it).

:func:`message` returns a class by full name (``"cerebras.SdkResponse"``);
:func:`generic_handler` turns a servicer object (one method per RPC, named like the RPC) into a
:class:`grpc.GenericRpcHandler` for one service, with the streaming shape of each RPC taken
from the descriptor. RPCs the servicer lacks answer UNIMPLEMENTED (gRPC's default).
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

log = logging.getLogger(__name__)

DESCRIPTOR_SET = "appliance.binpb"

SDK_SERVICE = "cerebras.sdk_appliance"
MANAGEMENT_SERVICE = "cluster.cluster_mgmt_pb.ClusterManagement"


class ProtocolUnavailable(RuntimeError):
    """The compiled descriptor set is missing (waferscale was not built/installed)."""


@functools.cache
def pool() -> descriptor_pool.DescriptorPool:
    """A descriptor pool holding the appliance protocol (private, so that it never clashes
    with another package's definitions of the same names in the default pool)."""
    try:
        data = resources.files("waferscale.appliance").joinpath(
            "protos", DESCRIPTOR_SET).read_bytes()
    except FileNotFoundError:
        raise ProtocolUnavailable(
            "the appliance protocol is not compiled (waferscale/appliance/protos/"
            f"{DESCRIPTOR_SET} is missing); reinstall waferscale (`pip install -e .`) or run "
            "`python setup.py build_ext --inplace`, whose build compiles it with grpcio-tools"
        ) from None
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    p = descriptor_pool.DescriptorPool()
    for f in files.file:
        p.Add(f)
    return p


@functools.cache
def message(full_name: str) -> Any:
    """The message class of ``full_name`` (e.g. ``"cerebras.SdkResponse"``)."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(full_name))


def enum_value(enum_name: str, value_name: str) -> int:
    """The number of ``value_name`` in enum ``enum_name`` (full name)."""
    return int(pool().FindEnumTypeByName(enum_name).values_by_name[value_name].number)


def service(full_name: str) -> ServiceDescriptor:
    return pool().FindServiceByName(full_name)


def generic_handler(full_name: str, servicer: object) -> grpc.GenericRpcHandler:
    """A gRPC handler serving ``servicer``'s methods as the RPCs of service ``full_name``.

    Each RPC ``Name`` is served by ``servicer.Name(request_or_iterator, context)``, returning a
    reply or (server streaming) an iterator of replies, as grpcio's generated servicers do.
    """
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service(full_name).methods:
        fn = getattr(servicer, m.name, None)
        if fn is None:
            continue
        req = message(m.input_type.full_name)
        rep = message(m.output_type.full_name)
        kw = {"request_deserializer": req.FromString,
              "response_serializer": rep.SerializeToString}
        cs, ss = m.client_streaming, m.server_streaming
        if cs and ss:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(fn, **kw)
        elif cs:
            handlers[m.name] = grpc.stream_unary_rpc_method_handler(fn, **kw)
        elif ss:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(fn, **kw)
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(fn, **kw)
    log.debug("%s: serving %d RPC(s)", full_name, len(handlers))
    return grpc.method_handlers_generic_handler(full_name, handlers)
