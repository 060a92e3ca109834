"""The PE model end to end on small programs: run-time interpreter, DSD ops, data tasks fed by
the fabric, async ops, the task table, and the deadlock report. The whole module runs twice:
on the Python interpreter and on the compiled engine (the ``engine`` fixture)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from waferscale.host.device import DeadlockError
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.device import SimulatorDevice
from waferscale.sim.fabric import cpp_available
from waferscale.sim.pe import SimError
from waferscale.sim.simulator import SimOptions

PROGRAMS = Path(__file__).parent / "programs"
ENGINE = {"name": "python"}


@pytest.fixture(scope="module", autouse=True, params=["python", "compiled"])
def engine(request) -> str:
    """Every test of this module runs on both PE paths (module scope keeps hypothesis happy)."""
    if request.param == "compiled" and not cpp_available():
        pytest.skip("waferscale._fabric is not built (the compiled engine is C++)")
    ENGINE["name"] = request.param
    return request.param


def sim_options(**kw) -> SimOptions:
    return SimOptions(engine=ENGINE["name"], **kw)


def device(name: str, arch: str = "wse3", **params) -> SimulatorDevice:
    opts = CompileOptions(arch=arch, params=tuple((k, str(v)) for k, v in params.items()),
                          memcpy=True, channels=1)
    return SimulatorDevice(elaborate(PROGRAMS / name / "layout.csl", opts), sim_options())


def variant(tmp_path: Path, name: str, edits: dict[str, tuple[str, str]], params: dict,
            options: SimOptions | None = None) -> SimulatorDevice:
    """A copy of program ``name`` with text edits {file: (old, new)}, compiled for wse3."""
    for f in (PROGRAMS / name).glob("*.csl"):
        text = f.read_text()
        if f.name in edits:
            old, new = edits[f.name]
            assert old in text, (f.name, old)
            text = text.replace(old, new)
        (tmp_path / f.name).write_text(text)
    opts = CompileOptions(params=tuple((k, str(v)) for k, v in params.items()), memcpy=True,
                          channels=1)
    return SimulatorDevice(elaborate(tmp_path / "layout.csl", opts),
                           dataclasses.replace(options or SimOptions(), engine=ENGINE["name"]))


def f32_words(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@settings(max_examples=20, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_single_pe_gemv_matches_numpy(arch, m, n, seed):
    dev = device("single_pe_gemv", arch, M=m, N=n)
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)).astype(np.float32)
    x = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    pes = [(0, 0), (1, 0)]
    dev.memcpy_h2d("A", pes, np.stack([f32_words(A.T.ravel())] * 2), 32)   # column-major tile
    dev.memcpy_h2d("x", pes, np.stack([f32_words(x)] * 2), 32)
    dev.memcpy_h2d("b", pes, np.stack([f32_words(b)] * 2), 32)
    dev.launch("compute", [])
    y = dev.memcpy_d2h("y", pes, m, 32).view(np.float32)
    # Sequential f32 fmacs (each product and sum rounded to f32): emulate exactly.
    expect = b.copy()
    for j in range(n):
        expect = (expect + (A[:, j] * x[j]).astype(np.float32)).astype(np.float32)
    expect = (expect * np.float32(2.0)).astype(np.float32)
    np.testing.assert_array_equal(y[0], expect)     # bit-exact: same rounding sequence
    np.testing.assert_array_equal(y[1], expect)
    assert dev.sim.cycle > 0


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("n", [1, 5, 12, 40])
def test_async_send_to_data_task(arch, n):
    dev = device("send_recv", arch, N=n)
    x = np.arange(n, dtype=np.float32) + 0.5
    dev.memcpy_h2d("x", [(0, 0)], f32_words(x)[None], 32)
    dev.launch("go", [])
    y = dev.memcpy_d2h("y", [(1, 0)], n, 32).view(np.float32)
    np.testing.assert_array_equal(y[0], 3 * x)
    recv = dev.sim.grid[(1, 0)]
    assert recv.stats.tasks_run == n          # one data-task run per wavelet
    # The last wavelet needs at least one hop plus the data task's own statements.
    assert dev.sim.cycle >= n


def test_random_task_order_gives_same_result():
    n = 9
    for seed in range(3):
        opts = CompileOptions(params=(("N", str(n)),), memcpy=True, channels=1)
        dev = SimulatorDevice(elaborate(PROGRAMS / "send_recv" / "layout.csl", opts),
                              sim_options(seed=seed, random_task_order=True))
        x = np.arange(n, dtype=np.float32)
        dev.memcpy_h2d("x", [(0, 0)], f32_words(x)[None], 32)
        dev.launch("go", [])
        assert np.array_equal(dev.memcpy_d2h("y", [(1, 0)], n, 32).view(np.float32)[0], 3 * x)


def test_deadlock_is_reported_per_pe(tmp_path):
    # The receiver waits for one more wavelet than the sender sends: a real deadlock.
    dev = variant(tmp_path, "send_recv", {"recv.csl": ("if (count == N)",
                                                        "if (count == N + 1)")}, {"N": 4})
    with pytest.raises(DeadlockError) as ei:
        dev.launch("go", [])
    text = str(ei.value)
    assert "deadlock at cycle" in text and "launch('go')" in text
    assert "PE(1,0): the host command stream waits for sys_mod.unblock_cmd_stream()" in text
    assert "PE(0,0)" not in text                   # the sender finished


def test_backpressure_stalls_sender_without_losing_data(tmp_path):
    # A slow receiver (long data task) makes the sender's queue fill up: wavelets wait, none
    # are lost or reordered.
    n = 40
    dev = variant(tmp_path, "send_recv", {"recv.csl": (
        "  y[count] = v * 3.0;",
        "  var k: i16 = 0;\n  while (k < 20) : (k += 1) { }\n  y[count] = v * 3.0;")}, {"N": n})
    x = np.arange(n, dtype=np.float32)
    dev.memcpy_h2d("x", [(0, 0)], f32_words(x)[None], 32)
    dev.launch("go", [])
    np.testing.assert_array_equal(dev.memcpy_d2h("y", [(1, 0)], n, 32).view(np.float32)[0],
                                  3 * x)
    assert dev.sim.grid[(0, 0)].stats.stall > 0     # the async send waited for queue space
    assert dev.sim.cycle > 20 * n                   # paced by the receiver


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("width, n", [(1, 1), (3, 5), (4, 17)])
def test_memcpy_streams_round_trip(arch, width, n):
    dev = device("stream_echo", arch, width=width, N=n, h2d_id=5, d2h_id=6)
    x = (np.arange(width * n, dtype=np.float32) - 3.25).reshape(width, n)
    pes = [(i, 0) for i in range(width)]
    dev.stream_h2d(5, pes, f32_words(x))
    y = dev.stream_d2h(6, pes, n).view(np.float32)
    np.testing.assert_array_equal(y, 2 * x)


def test_d2h_stream_waiting_for_data_is_a_deadlock():
    dev = device("stream_echo", "wse3", width=2, N=4, h2d_id=5, d2h_id=6)
    with pytest.raises(DeadlockError) as ei:
        dev.stream_d2h(6, [(0, 0), (1, 0)], 4)      # nothing was streamed in
    assert "memcpy D2H stream on color 6 still waits for 4 wavelet(s) from PE(0, 0)" in \
        str(ei.value)


def test_out_of_bounds_dsd_names_cycle_pe_task_and_symbol(tmp_path):
    # One increment too many walks the column DSD past the end of A.
    dev = variant(tmp_path, "single_pe_gemv", {"pe.csl": (
        "for (@range(i16, N)) |j| {", "A_dsd = @increment_dsd_offset(A_dsd, M, f32);\n"
        "  for (@range(i16, N)) |j| {")}, {"M": 4, "N": 3})
    with pytest.raises(SimError) as ei:
        dev.launch("compute", [])
    text = str(ei.value)
    assert text.startswith("cycle ") and "PE(0,0), task compute (launch)" in text
    assert "reaches element 12 of 'A', which has 12 element(s): out of bounds" in text


def test_chrome_trace_has_task_and_dsd_spans(tmp_path):
    import json
    opts = CompileOptions(params=(("N", "6"),), memcpy=True, channels=1)
    dev = SimulatorDevice(elaborate(PROGRAMS / "send_recv" / "layout.csl", opts),
                          sim_options(trace=True))
    dev.memcpy_h2d("x", [(0, 0)], f32_words(np.ones(6))[None], 32)
    dev.launch("go", [])
    path = tmp_path / "trace.json"
    dev.sim.trace.write(path)
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"PE(0,0)", "PE(1,0)"}
    spans = [e for e in events if e["ph"] == "X"]
    assert sum(1 for e in spans if e["name"] == "recv" and e["cat"] == "task") == 6
    fmovs = [e for e in spans if e["name"] == "@fmovs" and e["cat"] == "dsd"]
    assert len(fmovs) == 1 and fmovs[0]["args"]["n"] == 6 and fmovs[0]["dur"] > 0


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
@pytest.mark.parametrize("p, n", [(1, 3), (3, 4), (4, 2)])
def test_collectives_2d(arch, p, n):
    dev = device("collectives", arch, P=p, N=n)
    rng = np.random.default_rng(p * 10 + n)
    rows = rng.standard_normal((p, n)).astype(np.float32)       # buf of each row's root
    parts = rng.standard_normal((p, n * p)).astype(np.float32)  # parts of each row's root
    roots = [(0, y) for y in range(p)]
    dev.memcpy_h2d("buf", roots, f32_words(rows), 32)
    dev.memcpy_h2d("parts", roots, f32_words(parts), 32)
    dev.launch("main", [])
    everyone = [(x, y) for y in range(p) for x in range(p)]
    bufs = dev.memcpy_d2h("buf", everyone, n, 32).view(np.float32).reshape(p, p, n)
    np.testing.assert_array_equal(bufs, np.repeat(rows[:, None, :], p, axis=1))  # broadcast
    sums = dev.memcpy_d2h("sums", [(x, 0) for x in range(p)], n, 32).view(np.float32)
    expect = np.zeros((p, n), dtype=np.float32)
    for y in range(p):                     # reduce_fadds adds in line order, f32 each step
        expect = (expect + rows[y][None, :]).astype(np.float32)
    np.testing.assert_array_equal(sums, expect)
    got = dev.memcpy_d2h("gathered", [(p - 1, y) for y in range(p)], n * p, 32)
    np.testing.assert_array_equal(got.view(np.float32), parts)  # scatter then gather


def test_collective_waiting_for_missing_pe_is_reported(tmp_path):
    # PE x = 1 never joins the broadcast.
    dev = variant(tmp_path, "collectives", {"pe.csl": (
        "  mpi_x.broadcast(0,", "  const layout_mod = @import_module(\"<layout>\");\n"
        "  if (layout_mod.get_x_coord() != 1) mpi_x.broadcast(0,")}, {"P": 3, "N": 2})
    with pytest.raises(DeadlockError) as ei:
        dev.launch("main", [])
    assert "collectives_2d broadcast on row 0: 2 of 3 PEs called; waiting for position(s) [1]" \
        in str(ei.value)


def test_simprint_lines_carry_the_cycle(tmp_path):
    log = tmp_path / "sim.log"
    dev = variant(tmp_path, "send_recv", {"recv.csl": (
        "task recv(v: f32) void {",
        "const prt = @import_module(\"<simprint>\");\n"
        "task recv(v: f32) void {\n  prt.print_string(\"recv \");\n"
        "  prt.print_u16_decimal(@as(u16, count));\n  prt.print_string(\"\\n\");")},
        {"N": 3}, SimOptions(simprint_log=str(log)))
    dev.memcpy_h2d("x", [(0, 0)], f32_words(np.ones(3))[None], 32)
    dev.launch("go", [])
    lines = log.read_text().splitlines()
    assert [l.split(" ", 1)[1] for l in lines] == ["recv 0", "recv 1", "recv 2"]
    cycles = [int(l.split(" ", 1)[0][1:]) for l in lines]
    assert cycles == sorted(cycles) and cycles[0] > 0
    assert dev.sim.sim_log == lines


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_streaming_fabout_dsd_helper(arch):
    dev = device("stream_fabout", arch, width=2, N=6, h2d_id=5, d2h_id=6)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    pes = [(0, 0), (1, 0)]
    dev.stream_h2d(5, pes, f32_words(x))
    np.testing.assert_array_equal(dev.stream_d2h(6, pes, 6).view(np.float32), 2 * x)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_wavelet_index_selects_column(arch):
    R, C = 5, 7
    dev = device("index_offset", arch, R=R, C=C, h2d_id=4)
    rng = np.random.default_rng(3)
    A = rng.uniform(-1, 1, (R, C)).astype(np.float16)
    x = rng.uniform(-1, 1, C).astype(np.float16)
    dev.memcpy_h2d("A", [(0, 0)], A.ravel().view(np.uint16).astype(np.uint32)[None], 16)
    order = rng.permutation(C)                           # columns arrive in any order
    words = np.array([int(x[j].view(np.uint16)) | (int(j) << 16) for j in order],
                     dtype=np.uint32)
    dev.stream_h2d(4, [(0, 0)], words[None])
    # Drained: no wavelet left on the fabric (ramps included) and no task to run.
    dev.sim.run_until(lambda: dev.sim.fabric.idle and all(
        pe.main is None and not pe.runnable_tasks() for pe in dev.sim.pes), "draining")
    got = dev.memcpy_d2h("acc", [(0, 0)], R, 16)[0].astype(np.uint16).view(np.float16)
    expect = np.zeros(R, dtype=np.float16)
    for j in order:                                      # f16 fmach, each step rounded
        expect = (expect + (A[:, j] * x[j]).astype(np.float16)).astype(np.float16)
    np.testing.assert_array_equal(got, expect)


def test_out_of_bounds_pointer_access_names_the_symbol(tmp_path):
    dev = variant(tmp_path, "single_pe_gemv", {"pe.csl": (
        "  sys_mod.unblock_cmd_stream();\n}",
        "  y_ptr[M] = 1.0;\n  sys_mod.unblock_cmd_stream();\n}")}, {"M": 4, "N": 3})
    with pytest.raises(SimError) as ei:
        dev.launch("compute", [])
    text = str(ei.value)
    assert "PE(0,0), task compute (launch)" in text
    assert "pointer access reaches element 4 of 'y', which has 4 element(s)" in text
