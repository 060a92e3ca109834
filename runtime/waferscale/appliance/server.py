"""``waferscale appliance-server``: both services on one gRPC port, and the client's cluster
config.

    waferscale appliance-server [--host 127.0.0.1] [--port N] [--workdir DIR]
                                [--write-config FILE]

serves the cluster management service (:mod:`.management`) and the SDK appliance service
(:mod:`.sdk_service`) on ``HOST:PORT`` (port 0, the default, picks a free one), insecure gRPC
(no TLS: the client uses plain gRPC when its cluster config lists no namespaces), until
interrupted (Ctrl-C or SIGTERM). Only that address is bound. It prints one line,
``waferscale appliance-server: listening on HOST:PORT``, once it accepts calls, and with
``--write-config`` writes the cluster config that ``CSCONFIG_PATH`` points the official client
to. Messages (jobs created and ended, runtimes freed) go to stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

#: Messages of up to 2 GiB, as the client sends (its memcpy chunks are that large).
MAX_MESSAGE = 2**31 - 1
WORKERS = 128   # each client context holds one (its heartbeat stream) while it runs


def default_workdir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "waferscale" / "appliance"


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_config(host: str, port: int) -> dict:
    """The client's cluster config (``CSCONFIG_PATH``): this server as management address,
    no namespaces (so plain gRPC, no certificate).

    A loopback server is written as ``localhost:PORT``: the client pings any other management
    address before connecting (``ping`` must then be installed and the host answer it), and
    skips that check only for addresses containing "localhost"."""
    server = f"localhost:{port}" if is_loopback(host) else address(host, port)
    return {
        "currentContext": "waferscale",
        "contexts": [{"name": "waferscale", "cluster": "waferscale"}],
        "clusters": [{"name": "waferscale", "server": server,
                      "authority": "cluster-server.waferscale.local", "fabricType": "cs3"}],
    }


class ApplianceServer:
    """Both services on ``host:port``; :meth:`start`, then :meth:`stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 workdir: str | os.PathLike[str] | None = None) -> None:
        import grpc

        from .jobs import JobTable
        from .management import ManagementServicer
        from .protocol import MANAGEMENT_SERVICE, SDK_SERVICE, generic_handler
        from .sdk_service import SdkServicer
        self.host = host
        self.workdir = Path(workdir) if workdir is not None else default_workdir()
        (self.workdir / "compile").mkdir(parents=True, exist_ok=True)
        self.jobs = JobTable(self.workdir)
        options = [("grpc.max_send_message_length", MAX_MESSAGE),
                   ("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.so_reuseport", 0)]
        self.server = grpc.server(futures.ThreadPoolExecutor(
            max_workers=WORKERS, thread_name_prefix="appliance"), options=options)
        try:
            self.port = self.server.add_insecure_port(address(host, port))
        except RuntimeError as e:
            raise OSError(f"cannot listen on {address(host, port)}: {e}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {address(host, port)} (in use, or not an "
                          "address of this machine)")
        management = ManagementServicer(
            self.jobs, f"localhost:{self.port}" if is_loopback(host) else "")
        self.server.add_generic_rpc_handlers((
            generic_handler(MANAGEMENT_SERVICE, management),
            generic_handler(SDK_SERVICE, SdkServicer(self.jobs))))

    @property
    def address(self) -> str:
        return address(self.host, self.port)

    def start(self) -> None:
        self.server.start()
        log.info("serving on %s (workdir %s)", self.address, self.workdir)

    def stop(self, grace: float | None = 1.0) -> None:
        """End every job (freeing its runtime), then stop serving."""
        self.jobs.end_all("the server is stopping")
        self.server.stop(grace).wait()


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "appliance-server", help="serve the Cerebras appliance protocol on the simulator",
        description="Serve the cluster management and SDK appliance services that the "
        "official cerebras-sdk client (SdkCompiler, SdkRuntime, SdkLauncher) talks to, backed "
        "by waferscale cslc and the simulator, until interrupted.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; only this one is bound)")
    p.add_argument("--port", type=int, default=0,
                   help="port (default 0: a free one, printed and written by --write-config)")
    p.add_argument("--workdir", type=Path, default=None,
                   help=f"compile cache and job files (default {default_workdir()})")
    p.add_argument("--write-config", type=Path, default=None, metavar="FILE",
                   help="write the client's cluster config (point CSCONFIG_PATH at it)")
    p.set_defaults(func=run_server)


def _show_messages() -> logging.Handler | None:
    """Jobs and errors on stderr while serving, unless logging is configured (-v)."""
    logger = logging.getLogger("waferscale.appliance")
    if logging.getLogger().handlers:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("waferscale appliance-server: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def _check_bindable(host: str, port: int) -> None:
    """A one-line error now for an address that cannot be bound (gRPC would log its own
    multi-line complaint first)."""
    from waferscale.cli_util import CommandError
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CommandError(f"cannot listen on {address(host, port)}: {e.strerror}") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as e:
                raise CommandError(f"cannot listen on {address(host, port)}: "
                                   f"{e.strerror or e}") from None


def run_server(args: argparse.Namespace) -> int:
    from waferscale.cli_util import CommandError, check_output_file
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0..65535, got {args.port}")
    if args.write_config is not None:
        check_output_file(args.write_config, "--write-config")
    if args.workdir is not None and args.workdir.exists() and not args.workdir.is_dir():
        raise CommandError(f"--workdir: '{args.workdir}' is not a directory")
    _check_bindable(args.host, args.port)
    try:
        from .protocol import pool
        pool()
        server = ApplianceServer(args.host, args.port, args.workdir)
    except (OSError, RuntimeError) as e:
        raise CommandError(str(e)) from None
    handler = _show_messages()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        if args.write_config is not None:
            args.write_config.write_text(json.dumps(
                cluster_config(args.host, server.port), indent=2) + "\n", encoding="utf-8")
        print(f"waferscale appliance-server: listening on {server.address}", flush=True)
        stop.wait()
    finally:
        server.stop()
        for s, h in old.items():
            signal.signal(s, h)
        if handler is not None:
            logging.getLogger("waferscale.appliance").removeHandler(handler)
    return 0
