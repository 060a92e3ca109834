"""Our .proto files against the official client's descriptors (wire compatibility), and the
server's command line and files without a client."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from appliance_harness import APP, SCRIPTS, Server

from waferscale.appliance import artifacts, protocol
from waferscale.appliance.server import ApplianceServer, cluster_config
from waferscale.cli import main


def repeated(f) -> bool:
    return f.is_repeated if hasattr(f, "is_repeated") else f.label == 3


def _ours() -> dict:
    """Our messages (nested ones included), enums and services, as dump_descriptors.py
    prints the client's."""
    pool = protocol.pool()
    messages, enums, services = {}, {}, {}

    def walk(m) -> None:
        messages[m.full_name] = {
            f.name: [f.number, f.type, repeated(f),
                     (f.message_type or f.enum_type).full_name
                     if (f.message_type or f.enum_type) else ""]
            for f in m.fields}
        for n in m.nested_types:
            if not n.GetOptions().map_entry:
                walk(n)
    for name in ("waferscale/appliance/protos/sdk_common.proto",
                 "waferscale/appliance/protos/sdk_appliance.proto",
                 "waferscale/appliance/protos/cluster_mgmt.proto"):
        fd = pool.FindFileByName(name)
        for m in fd.message_types_by_name.values():
            walk(m)
        for e in fd.enum_types_by_name.values():
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for s in fd.services_by_name.values():
            services[s.full_name] = {
                m.name: [m.input_type.full_name, m.output_type.full_name,
                         m.client_streaming, m.server_streaming] for m in s.methods}
    return {"messages": messages, "enums": enums, "services": services}


def test_our_protocol_matches_the_official_client(sdk_python: Path) -> None:
    """Every message field, enum value and RPC we declare has the client's number, type,
    label and streaming shape (we declare a subset of the management service)."""
    ours = _ours()
    names = {k: sorted(v) for k, v in ours.items()}
    r = subprocess.run([str(sdk_python), str(SCRIPTS / "dump_descriptors.py")],
                       input=json.dumps(names), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    theirs = json.loads(r.stdout)
    for kind in ("messages", "enums", "services"):
        for name, entries in ours[kind].items():
            for entry, value in entries.items():
                assert theirs[kind][name].get(entry) == value, (kind, name, entry)
    # The SDK service is declared in full.
    assert ours["services"]["cerebras.sdk_appliance"] == \
        theirs["services"]["cerebras.sdk_appliance"]


def test_config_names_localhost_for_a_loopback_server() -> None:
    cfg = cluster_config("127.0.0.1", 4321)
    assert cfg["clusters"][0]["server"] == "localhost:4321"
    assert "namespaces" not in cfg["clusters"][0]         # plain gRPC
    assert cluster_config("10.1.2.3", 5)["clusters"][0]["server"] == "10.1.2.3:5"


def test_only_the_given_address_is_bound(tmp_path: Path) -> None:
    srv = ApplianceServer("127.0.0.1", 0, tmp_path)
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port)):
            pass
        with pytest.raises(OSError):      # another loopback address: nothing listens there
            socket.create_connection(("127.0.0.2", srv.port)).close()
    finally:
        srv.stop(0)


def test_busy_port_is_a_one_line_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["appliance-server", "--port", str(port), "--workdir",
                     str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("waferscale appliance-server: error: cannot listen on 127.0.0.1:")
    assert "\n" not in err


def test_workdir_that_is_a_file_is_a_one_line_error(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "file"
    f.write_text("")
    assert main(["appliance-server", "--workdir", str(f)]) == 1
    assert capsys.readouterr().err.strip() == \
        f"waferscale appliance-server: error: --workdir: '{f}' is not a directory"


def test_relocate_rewrites_the_compile_record(tmp_path: Path) -> None:
    old, new = tmp_path / "old" / "cs_x", tmp_path / "new" / "cs_x"
    (new / "out").mkdir(parents=True)
    (new / artifacts.ROOT_FILE).write_text(f"{old}\n")
    (new / "out" / "waferscale.json").write_text(json.dumps({
        "layout": f"{old}/layout.csl", "options": {"import_paths": [f"{old}/lib", "/usr/x"]},
        "sources": {f"{old}/layout.csl": "h1", f"{old}/pe.csl": "h2"}}))
    artifacts.relocate(new)
    rec = json.loads((new / "out" / "waferscale.json").read_text())
    root = str(new.resolve())
    assert rec["layout"] == f"{root}/layout.csl"
    assert rec["options"]["import_paths"] == [f"{root}/lib", "/usr/x"]
    assert rec["sources"] == {f"{root}/layout.csl": "h1", f"{root}/pe.csl": "h2"}


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "a/../../b", ""])
def test_paths_from_clients_stay_inside(tmp_path: Path, rel: str) -> None:
    with pytest.raises(artifacts.ArtifactError):
        artifacts.inside(tmp_path, rel, "uploaded file")


def test_server_log_names_jobs(server: Server, artifact: Path) -> None:
    """The session's server logged the compile job that made the artifact."""
    text = server.log_text()
    assert "(compile) created" in text and f"compiled {artifact.name[:-7]}" in text


def test_unwaited_nonblocking_error_is_returned_by_stop(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-blocking call's error that no task wait reported is not dropped: stop returns
    it (the client raises it from SdkRuntime.stop())."""
    from waferscale.appliance.runtime_session import CommandFailed, RuntimeSession
    from waferscale.host import compile as ws_compile
    monkeypatch.setenv("WAFERSCALE_CACHE_DIR", str(tmp_path / "cache"))
    out = ws_compile(APP / "layout.csl", params={"W": 3, "H": 2, "N": 4},
                     fabric_dims=(10, 5), fabric_offsets=(4, 1), memcpy=True, channels=1,
                     output=tmp_path / "out")
    rt = RuntimeSession(out)
    rt.start()
    rt.call(0, "no_such_function", [], nonblock=True)     # kept for its task
    rt.call(1, "scale", [0x3F800000], nonblock=True)       # scale(1.0): fine
    assert rt.take_outcome(1).error is None
    with pytest.raises(CommandFailed, match="non-blocking command 0 failed: Cannot find "
                       "exported function with name no_such_function"):
        rt.stop()
