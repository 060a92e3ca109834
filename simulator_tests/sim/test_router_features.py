"""Router features of the fabric (docs/fabric-model.md §9), each in a program of ours run on both
arches and both PE paths (the Python interpreter and the compiled engine agree bit for bit:
memory, cycles, counters, errors), and on both fabric cores:

* switches (``.switches`` of a color config: positions, ring mode, pop on advance) advanced by
  control wavelets sent through a ``fabout_dsd`` with ``.control = true``;
* the control-wavelet encoding of ``<memcpy/memcpy_switches>`` (the SDK's test vector
  "teardown wavelet = 0x9df 9249") and the command pop (0x9df9249 -> 0x91f9249);
* teardown: a color in teardown mode (``.teardown = true``) holds its wavelets; a teardown
  command runs ``@set_teardown_handler``'s handler; ``<tile_config>`` re-routes the color
  (``color_config.reset_routes``, ``switch_config``) and ``teardown.exit`` releases it;
* ``@load_to_dsr`` with ``.async``/``.activate``/``.unblock``: the completion actions of the
  async op that takes the DSR;
* what is still missing is a compile-time "not supported by waferscale yet".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.fabric import (POP_ALWAYS, POP_NONE, POP_ON_ADVANCE, Direction, Fabric,
                                   FabricOptions, FabricRoutingError, control_pop, cpp_available)

from twopaths import ALL_CORES, ARCHS, compare_both, options_for  # (this directory is on sys.path)

pytestmark = pytest.mark.skipif(not cpp_available(), reason="waferscale._fabric is not built")

DIMS = (11, 3)          # the fabric of run_both's and _ctrl_runs' programs
BACKENDS = ["python", "cpp"]
R, N, E, S, W = (1 << d for d in (Direction.RAMP, Direction.NORTH, Direction.EAST,
                                  Direction.SOUTH, Direction.WEST))
# NOP with NOCE in every slot but those given; task field 31 (none): memcpy_switches.ctrl.
NOCE_ALL = (31 << 16) | 1 << 24 | 1 << 27 | 1 << 0 | 1 << 3 | 1 << 6 | 1 << 9 | 1 << 12 | 1 << 15
ADV_ADV = NOCE_ALL | 1 << 22 | 1 << 25
TEARDOWN = 0x9DF9249


# -- the fabric cores -----------------------------------------------------------------------------

def test_control_pop_matches_the_sdk_comment():
    # benchmark-libs/allreduce: "0x9df 9249 --> 0x91f 9249" when a router pops the command.
    assert control_pop(TEARDOWN) == 0x91F9249
    assert control_pop(ADV_ADV) == NOCE_ALL | 1 << 22


def _row(backend: str, width: int = 4, color: int = 3) -> Fabric:
    """The allreduce-style row: PE 0 sends east, the middle forwards, the last receives; every
    PE but the last has position 1 = rx RAMP, ring mode, pop on advance."""
    f = Fabric(width, 1, FabricOptions(), backend=backend)
    for x in range(width):
        first, last = x == 0, x == width - 1
        f.core.set_route(x, 0, color, R if first else W, R if last else E)
        if not last:
            f.set_switches(x, 0, color, [R, -1, -1, -1, -1, -1], 0, True, POP_ON_ADVANCE)
        f.bind_input_queue(x, 0, 2, color)
    return f


@pytest.mark.parametrize("backend", BACKENDS)
def test_switched_row_delivers_in_order_and_teardown_passes_every_router(backend):
    f = _row(backend)
    # Every sender queues its value and then "advance me and my east neighbour".
    for x in range(3):
        assert f.ce_send(x, 0, 2, 3, 100 + x)
        assert f.ce_send(x, 0, 2, 3, ADV_ADV, ctrl=True)
    got, cycles = [], []
    for _ in range(40):
        f.tick()
        w = f.ce_recv(3, 0, 2)
        if w is not None:
            got.append(w)
            cycles.append(f.cycle)
    # In order; the control wavelets (NOCE) never reach the last CE.
    assert got == [(100, False), (101, False), (102, False)]
    assert [f.switch_state(x, 0, 3)[6] for x in range(3)] == [1, 0, 0]
    assert f.ce_send(0, 0, 2, 3, TEARDOWN, ctrl=True)
    f.step(20)
    # Each router executed the teardown (pop on advance keeps it) in path order.
    tds = f.take_teardowns()
    assert [(x, c) for _, x, _, c in tds] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [t for t, *_ in tds] == sorted(t for t, *_ in tds)
    assert all(f.in_teardown(x, 0, 3) for x in range(4))
    # In teardown mode a wavelet waits in its buffer, from any side, until exit.
    assert f.ce_send(0, 0, 2, 3, 7)
    f.step(10)
    assert f.stuck() and f.ce_recv(3, 0, 2) is None
    assert "teardown mode" in f.blocked_wavelets()[0].waits_on
    f.core.router_config(0, 0, 9, 3, 0)      # teardown.exit at PE 0 only
    f.step(10)
    assert f.stuck()                          # now held at PE 1
    for x in (1, 2, 3):
        f.core.router_config(x, 0, 9, 3, 0)
    f.step(20)
    assert f.ce_recv(3, 0, 2) == (7, False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_switch_positions_ring_and_no_ring(backend):
    f = Fabric(3, 3, FabricOptions(), backend=backend)
    c = 0
    # topic-06's sender shape: tx NORTH, then WEST, EAST, SOUTH; receivers all around.
    f.core.set_route(1, 1, c, R, N)
    f.set_switches(1, 1, c, [-1, W, -1, E, -1, S], 1, True, POP_NONE)
    for (x, y, frm) in ((1, 0, S), (0, 1, E), (2, 1, W), (1, 2, N)):
        f.core.set_route(x, y, c, frm, R)
        f.bind_input_queue(x, y, 2, c)
    adv = NOCE_ALL | 1 << 22
    for k in range(4):
        f.ce_send(1, 1, 2, c, adv, ctrl=True)
        f.ce_send(1, 1, 2, c, 10 + k)
    f.step(30)
    got = {xy: f.ce_recv(*xy, 2) for xy in ((0, 1), (2, 1), (1, 2), (1, 0))}
    # A control wavelet goes by the current position; the next one by the new one.
    assert got == {(2, 1): (10, False), (1, 2): (11, False), (1, 0): (12, False),
                   (0, 1): (13, False)}
    assert f.switch_state(1, 1, c)[6] == 1
    # Without ring mode an advance past the last position stays there.
    f.set_switches(1, 1, c, [-1, W, -1, -1, -1, -1], 0, False, POP_NONE)
    for _ in range(3):
        f.ce_send(1, 1, 2, c, adv, ctrl=True)
    f.step(20)
    assert f.switch_state(1, 1, c)[6] == 1
    # SWITCH_RST goes back to position 0.
    f.ce_send(1, 1, 2, c, NOCE_ALL | 2 << 22, ctrl=True)
    f.step(10)
    assert f.switch_state(1, 1, c)[6] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_pop_modes_decide_which_router_sees_a_command(backend):
    counts = {}
    for pop in (POP_NONE, POP_ALWAYS, POP_ON_ADVANCE):
        f = Fabric(3, 1, FabricOptions(), backend=backend)
        f.core.set_route(0, 0, 1, R, E)
        f.core.set_route(1, 0, 1, W, E)
        f.core.set_route(2, 0, 1, W, R)
        f.bind_input_queue(2, 0, 2, 1)
        for x in range(3):
            f.set_switches(x, 0, 1, [-1, -1, -1, -1, -1, -1], 0, False, pop)
        f.ce_send(0, 0, 2, 1, TEARDOWN, ctrl=True)
        f.step(20)
        counts[pop] = [x for _, x, _, _ in f.take_teardowns()]
    # No pop: every router tears down; always pop: only the first (the next see a NOP);
    # pop on advance: a teardown is not popped.
    assert counts == {POP_NONE: [0, 1, 2], POP_ALWAYS: [0], POP_ON_ADVANCE: [0, 1, 2]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_control_wavelets_reach_the_ce_without_noce_and_wrong_sides_are_errors(backend):
    f = Fabric(2, 1, FabricOptions(), backend=backend)
    f.core.set_route(0, 0, 5, R, E)
    f.core.set_route(1, 0, 5, W, R)
    f.bind_input_queue(1, 0, 3, 5)
    f.ce_send(0, 0, 2, 5, (40 << 16) | 1 << 22 | 7, ctrl=True)     # NOCE clear: delivered
    f.step(10)
    assert f.ce_recv(1, 0, 3) == ((40 << 16) | 1 << 22 | 7, True)
    # A wavelet from a side that no position of its color accepts is an error at once.
    f.core.set_route(1, 0, 5, N, R)
    f.ce_send(0, 0, 2, 5, 1)
    with pytest.raises(FabricRoutingError, match="does not accept color 5 from WEST"):
        f.step(10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cumulative_positions_and_an_exhausted_switch_passes_the_advance_on(backend):
    """The cholesky benchmark's row: pos1 = .{ .tx = EAST } then pos2 = .{ .rx = RAMP } (tx
    still EAST: positions build on the previous one), no ring mode, pop on advance; a PE
    whose switch is on its last position leaves an advance for the next router."""
    f = Fabric(4, 1, FabricOptions(), backend=backend)
    c = 2
    f.core.set_route(0, 0, c, R, E)
    for x in (1, 2):
        f.core.set_route(x, 0, c, W, R | E)
        f.set_switches(x, 0, c, [-1, E, R, -1, -1, -1], 0, False, POP_ON_ADVANCE)
    f.core.set_route(3, 0, c, W, R)
    for x in range(4):
        f.bind_input_queue(x, 0, 2, c)
    two = (5 << 22) | (4 << 25)          # cholesky's ctrl_buf: ADV + NOCE, NOP + NOCE
    for x, v in ((0, 10), (1, 11), (2, 12)):
        f.ce_send(x, 0, 2, c, v)
        f.ce_send(x, 0, 2, c, two, ctrl=True)
        f.ce_send(x, 0, 2, c, two, ctrl=True)
        f.step(40)
    got = {x: [] for x in range(4)}
    for x in range(4):
        while (w := f.ce_recv(x, 0, 2)) is not None:
            got[x].append(w[0])
    assert got == {0: [], 1: [10], 2: [10, 11], 3: [10, 11, 12]}
    assert [f.switch_state(x, 0, c)[6] for x in (1, 2)] == [2, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_filter_keeps_other_indices_from_the_ce_only(backend):
    """topic-08's filter: the CE gets the data wavelets whose upper 16 bits are in range; every
    wavelet is still forwarded; a wavelet whose only output was the CE is consumed."""
    f = Fabric(3, 1, FabricOptions(), backend=backend)
    f.core.set_route(0, 0, 1, R, E)
    f.core.set_route(1, 0, 1, W, R | E)
    f.core.set_route(2, 0, 1, W, R)
    for x, (lo, hi) in ((1, (0, 1)), (2, (2, 3))):
        f.bind_input_queue(x, 0, 2, 1)
        f.core.set_filter(x, 0, 1, lo, hi)
    for k in range(5):
        f.ce_send(0, 0, 2, 1, k << 16 | 100 + k)
    f.step(40)
    got = {x: [] for x in (1, 2)}
    for x in (1, 2):
        while (w := f.ce_recv(x, 0, 2)) is not None:
            got[x].append(w[0] & 0xFFFF)
    assert got == {1: [100, 101], 2: [102, 103]}
    assert f.idle and f.counters().link_out[0, 2, Direction.RAMP] == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_color_swap_changes_the_color_on_x_outputs(backend):
    """topic-14 (WSE-2): colors 0 and 1 with color_swap_x; a wavelet leaves EAST as the other
    color and reaches the CE with the color it came with."""
    f = Fabric(4, 1, FabricOptions(), backend=backend)
    for c in (0, 1):
        f.core.set_route(0, 0, c, R, R | E)
        f.core.set_route(1, 0, c, W, R | E)
        f.core.set_route(2, 0, c, W, R | E)
        f.core.set_route(3, 0, c, W, R)
        for x in range(4):
            f.core.set_color_swap(x, 0, c, 1)
            f.bind_input_queue(x, 0, 2 + c, c)
    f.ce_send(0, 0, 2, 1, 7)
    f.step(20)
    got = [(f.iq_count(x, 0, 2), f.iq_count(x, 0, 3)) for x in range(4)]
    assert got == [(0, 1), (1, 0), (0, 1), (1, 0)]     # blue, red, blue, red


def test_color_swap_is_wse2_only(tmp_path):
    text = _compile_error(tmp_path, "wse3", layout=LAYOUT.replace(
        ".routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });",
        ".routes = .{ .rx = .{WEST}, .tx = .{RAMP}, .color_swap_x = true } });", 1))
    assert "color swap ('.color_swap_x') is not supported on WSE-3" in text


def test_both_cores_agree_on_a_switched_teardown_run():
    """The same traffic on both cores: every counter and every event equal."""
    outs = []
    for backend in BACKENDS:
        f = _row(backend, width=5)
        for x in range(4):
            f.ce_send(x, 0, 2, 3, 100 + x)
            f.ce_send(x, 0, 2, 3, ADV_ADV, ctrl=True)
        f.ce_send(0, 0, 2, 3, TEARDOWN, ctrl=True)
        log = []
        for _ in range(60):
            f.tick()
            log.append((f.stuck(), f.in_flight, tuple(map(tuple, f.blocked_wavelets()))))
            w = f.ce_recv(4, 0, 2)
            if w is not None:
                log.append(("got", f.cycle, w))
        c = f.counters()
        outs.append((log, f.take_teardowns(), c.link_out.tolist(), c.stall_cycles.tolist(),
                     c.stalled_wavelet_cycles.tolist(), c.buffer_high_water.tolist(),
                     [f.switch_state(x, 0, 3) for x in range(5)]))
    assert outs[0] == outs[1]


# -- programs -------------------------------------------------------------------------------------

LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 4, .height = 1 });
const C: color = @get_color(3);
layout {
  @set_rectangle(4, 1);
  for (@range(i16, 4)) |x| {
    @set_tile_code(x, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(x), .C = C,
                                      .px = x });
    if (x == 0) {
      @set_color_config(x, 0, C, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} },
          .switches = .{ .pos1 = .{ .rx = RAMP }, .ring_mode = true,
                         .pop_mode = .{ .pop_on_advance = true } } });
    } else if (x == 3) {
      @set_color_config(x, 0, C, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
    } else {
      @set_color_config(x, 0, C, .{ .routes = .{ .rx = .{WEST}, .tx = .{EAST} },
          .switches = .{ .pos1 = .{ .rx = RAMP }, .ring_mode = true,
                         .pop_mode = .{ .pop_on_advance = true } } });
    }
  }
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

# Phase 1: a row reduction to PE 3 on one switched color (each sender sends its value and
# then "advance me and my east neighbour"); PE 0 then tears the color down. Phase 2: every
# PE's teardown handler lets its reconfiguration task run (once its own phase 1 is done),
# which re-routes the color as a broadcast from PE 3 westward and leaves teardown; PE 3
# broadcasts the sum. PE 3's wavelet waits at a PE still in teardown until it exits.
PE = """
param memcpy_params;
param C: color;
param px: i16;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const switches = @import_module("<memcpy/memcpy_switches>");
const tile_config = @import_module("<tile_config>");
const LAST: bool = px == 3;
comptime { @comptime_assert(@get_int(tile_config.teardown.get_task_id()) == 29); }

var out = @zeros([4]f32);
var out_ptr: [*]f32 = &out;
var recv = @zeros([3]f32);
var ctrl_adv = [1]u32 { switches.ctrl(switches.switch_cmd_11()) };
const ctrl_td = [1]u32 { switches.ctrl(switches.teardown_cmd_1()) };

const iq = @get_input_queue(2);
const oq = @get_output_queue(2);
const send_id: local_task_id = @get_local_task_id(10);
const reconf_id: local_task_id = @get_local_task_id(11);
const finish_id: local_task_id = @get_local_task_id(12);

const dst = @get_dsr(dsr_dest, 1);
const src1 = @get_dsr(dsr_src1, 1);

const out_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{1} -> out[i] });
const sum_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{1} -> out[i + 1] });
const recv_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> recv[i] });
const adv_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{1} -> ctrl_adv[i] });
const td_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{1} -> ctrl_td[i] });
const in3 = @get_dsd(fabin_dsd, .{ .extent = 3, .input_queue = iq,
                                   .fabric_color = C });
const in1 = @get_dsd(fabin_dsd, .{ .extent = 1, .input_queue = iq,
                                   .fabric_color = C });
const data_out = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 1,
    .output_queue = oq } else .{ .extent = 1, .output_queue = oq, .fabric_color = C });
const ctrl_out = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 1,
    .control = true, .output_queue = oq } else .{ .extent = 1, .control = true,
    .output_queue = oq, .fabric_color = C });

fn run() void {
  out[0] = @as(f32, px + 1);
  if (LAST) {
    // Receive the three values; the DSR's completion action unblocks the reconfiguration.
    @load_to_dsr(src1, in3, .{ .async = true, .unblock = reconf_id });
    @load_to_dsr(dst, recv_dsd);
    @mov32(dst, src1, .{ .async = true });
  } else {
    @load_to_dsr(dst, data_out, .{ .async = true, .activate = send_id });
    @load_to_dsr(src1, out_dsd);
    @mov32(dst, src1, .{ .async = true });
  }
}

task send_ctrl() void {
  @load_to_dsr(dst, ctrl_out, .{ .async = true, .unblock = reconf_id });
  @load_to_dsr(src1, adv_dsd);
  @mov32(dst, src1, .{ .async = true });
  if (px == 0) {
    @mov32(ctrl_out, td_dsd, .{ .async = true });
  }
}

fn on_teardown() void {
  @activate(reconf_id);
}

task reconf() void {
  const color_config = tile_config.color_config;
  const switch_config = tile_config.switch_config;
  const addr = color_config.get_color_config_addr(C);
  if (LAST) {
    color_config.reset_routes(addr, .{ .rx = RAMP, .tx = WEST });
  } else if (px == 0) {
    color_config.reset_routes(addr, .{ .rx = EAST, .tx = RAMP });
  } else {
    color_config.reset_routes(addr, .{ .rx = EAST, .tx = [2]direction{ WEST, RAMP } });
  }
  switch_config.clear_current_position(addr);     // a color or its config address
  // (positions set and dropped again: the broadcast has none)
  switch_config.set_rx_switch_pos1(C, RAMP);
  switch_config.set_rx_switch_pos2(C, RAMP);
  switch_config.set_rx_switch_pos3(C, RAMP);
  switch_config.set_tx_switch_pos1(C, RAMP);
  switch_config.set_tx_switch_pos2(C, RAMP);
  switch_config.set_tx_switch_pos3(C, RAMP);
  switch_config.set_invalid_for_all_switch_positions(C);
  tile_config.teardown.exit(C);
  if (LAST) {
    out[1] = recv[0] + recv[1] + recv[2] + out[0];
    @mov32(data_out, sum_dsd, .{ .async = true, .activate = finish_id });
  } else {
    @mov32(sum_dsd, in1, .{ .async = true, .activate = finish_id });
  }
}

task finish() void {
  out[2] = out[1] * 2.0;
  sys_mod.unblock_cmd_stream();
}

comptime {
  @bind_local_task(send_ctrl, send_id);
  @bind_local_task(reconf, reconf_id);
  @bind_local_task(finish, finish_id);
  @block(reconf_id);
  @set_teardown_handler(on_teardown, C);
  @initialize_queue(iq, .{ .color = C });
  if (@is_arch("wse3")) {
    @initialize_queue(oq, .{ .color = C });
  }
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


def _opts(arch: str) -> CompileOptions:
    return options_for(arch, DIMS)


def _write(tmp: Path, pe: str = PE, layout: str = LAYOUT) -> Path:
    (tmp / "layout.csl").write_text(layout)
    (tmp / "pe.csl").write_text(pe)
    return tmp / "layout.csl"


def run_both(tmp: Path, arch: str, pe: str = PE, layout: str = LAYOUT):
    """Launch ``run`` on both PE paths (and the Python path on the Python fabric core);
    they must agree on everything (twopaths.assert_same: memory, cycles, counters, every
    router's routes, switches and teardown state, the error). Returns the compiled run's
    device and error."""
    eng = compare_both(tmp, arch, {"layout.csl": layout, "pe.csl": pe}, DIMS, paths=ALL_CORES)
    return eng.device, eng.error


@pytest.mark.parametrize("arch", ARCHS)
def test_switched_reduction_teardown_and_rerouted_broadcast(tmp_path, arch):
    dev, err = run_both(tmp_path, arch)
    assert err is None
    for x in range(4):
        out = dev.read_symbol(x, 0, "out")
        assert out.tolist() == [x + 1.0, 10.0, 20.0, 0.0]
    fab = dev.sim.fabric
    # After phase 2: the broadcast routes, position 0 everywhere, no teardown left.
    assert fab.route(3, 0, 3) == ({Direction.RAMP}, {Direction.WEST})
    assert fab.route(1, 0, 3) == ({Direction.EAST}, {Direction.WEST, Direction.RAMP})
    assert all(fab.switch_state(x, 0, 3)[:7] == (-1,) * 6 + (0,) for x in range(3))
    assert not any(fab.in_teardown(x, 0, 3) for x in range(4))


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_routes_takes_the_color_itself(tmp_path, arch):
    # WaferLLM's Decode (built for hardware with SDK 1.x's cslc) passes the color itself to
    # reset_routes, where the SDK's allreduce passes get_color_config_addr's address: both
    # re-route the color alike, on both PE paths.
    pe = PE.replace("color_config.reset_routes(addr,", "color_config.reset_routes(C,")
    assert pe.count("reset_routes(C,") == 3
    dev, err = run_both(tmp_path, arch, pe)
    assert err is None
    assert [dev.read_symbol(x, 0, "out").tolist()[2] for x in range(4)] == [20.0] * 4
    assert dev.sim.fabric.route(1, 0, 3) == ({Direction.EAST}, {Direction.WEST, Direction.RAMP})


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_routes_on_a_plain_integer_is_a_csl_error_without_a_traceback(tmp_path, arch,
                                                                           capsys):
    # The compiled engine folds the call's arguments while the program loads: cs_python
    # reports the mistake as the compiler would, at the call, with no waferscale frames.
    from waferscale.cli import main
    _write(tmp_path, PE.replace("color_config.reset_routes(addr,", "color_config.reset_routes(99,"))
    opts = _opts(arch)
    lay = elaborate(tmp_path / "layout.csl", opts)
    assert lay is not None
    (tmp_path / "run.py").write_text(
        "from cerebras.sdk.runtime.sdkruntimepybind import SdkRuntime\n"
        "r = SdkRuntime('out')\nr.load()\nr.run()\nr.launch('run', nonblock=False)\n"
        "r.stop()\n")
    assert main(["cslc", str(tmp_path / "layout.csl"), "--arch", arch, "--fabric-dims",
                 f"{opts.fabric_dims[0]},{opts.fabric_dims[1]}", "--fabric-offsets",
                 f"{opts.fabric_offsets[0]},{opts.fabric_offsets[1]}", "--memcpy",
                 "--channels", "1", "-o", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["cs_python", "--engine", "compiled", "run.py"]) == 1
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "pe.csl:" in err and "error: reset_routes: 99 is not a color config address" in err
    assert "^" in err and "waferscale/" not in err


@pytest.mark.parametrize("arch", ARCHS)
def test_without_the_teardown_the_program_deadlocks_in_teardown(tmp_path, arch):
    # PE 0 never sends the teardown: no handler runs, every PE waits (a deadlock report).
    pe = PE.replace("    @mov32(ctrl_out, td_dsd, .{ .async = true });\n", "")
    _, err = run_both(tmp_path, arch, pe)
    assert err is not None and "deadlock" in err.lower()


def test_memcpy_switches_encodes_the_sdk_test_vector(tmp_path):
    pe = PE.replace("var out = @zeros([4]f32);", "var out = @zeros([4]f32);\n"
                    "const v_td: u32 = switches.ctrl(switches.teardown_cmd_1());\n"
                    "const v_adv: u32 = switches.ctrl(switches.switch_cmd_11());\n"
                    "comptime { @comptime_assert(v_td == 0x9df9249); }")
    _write(tmp_path, pe)
    lay = elaborate(tmp_path / "layout.csl", _opts("wse3"))
    assert lay is not None
    from waferscale.lang.modules import encode_commands
    assert encode_commands([3]) == 0x9DF9249
    assert encode_commands([1, 1]) == ADV_ADV


def _compile_error(tmp: Path, arch: str, pe: str = PE, layout: str = LAYOUT) -> str:
    _write(tmp, pe, layout)
    with pytest.raises(CslError) as ei:
        elaborate(tmp / "layout.csl", _opts(arch))
    return ei.value.render()


@pytest.mark.parametrize("arch", ARCHS)
def test_what_is_not_modelled_is_a_compile_time_error(tmp_path, arch):
    cases = {
        ".pop_mode = .{ .pop_on_advance = true }": (
            ".pop_mode = .{ .pop_on_header = true }", "'.pop_on_header' is not supported"),
        ".routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });": (
            ".routes = .{ .rx = .{WEST}, .tx = .{RAMP} }, .filter = .{ .kind = .{ "
            ".sparse_counter = true } } });", "sparse_counter filter ('.filter' of a color "
            "config) is not supported"),
    }
    for old, (new, msg) in cases.items():
        text = _compile_error(tmp_path, arch, layout=LAYOUT.replace(old, new, 1))
        assert msg in text and "layout.csl:" in text
    text = _compile_error(tmp_path, arch, pe=PE.replace(".control = true,",
                                                        ".control = true, .advance_switch = "
                                                        "true,"))
    assert "'.advance_switch' (switches) is not supported by waferscale yet" in text
    text = _compile_error(tmp_path, arch, pe=PE.replace(
        "  @set_teardown_handler(on_teardown, C);",
        "  @set_teardown_handler(on_teardown, C);\n"
        "  @set_teardown_handler(on_teardown, @get_color(4));"))
    assert "more than one teardown or empty-queue handler in a PE program is not supported by waferscale yet" in text


def test_wse3_switches_only_on_some_colors(tmp_path):
    text = _compile_error(tmp_path, "wse3", layout=LAYOUT.replace("@get_color(3)",
                                                                  "@get_color(10)"))
    assert "color 10 has no switches on WSE-3" in text


CTRL_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 4, .height = 1 });
const C: color = @get_color(5);
layout {
  @set_rectangle(4, 1);
  for (@range(i16, 4)) |x| {
    @set_tile_code(x, 0, if (x == 0) "send.csl" else if (x == 1) "recv.csl" else "idle.csl",
                   .{ .memcpy_params = memcpy.get_params(x), .C = C });
  }
  @set_color_config(0, 0, C, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @set_color_config(1, 0, C, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
  @export_name("out", [*]u32, true);
  @export_name("run", fn()void);
}
"""

IDLE = """
param memcpy_params;
param C: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
fn run() void { sys_mod.unblock_cmd_stream(); }
comptime { @export_symbol(out_ptr, "out"); @export_symbol(run); }
"""

# PE 0 sends data wavelets and control wavelets of <control>'s three encoders on one color;
# PE 1's data task sums the data, its control tasks count and take the 16-bit argument.
SEND = """
param memcpy_params;
param C: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const ctrl = @import_module("<control>");
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
const oq = @get_output_queue(2);
const data_out = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 1,
    .output_queue = oq } else .{ .extent = 1, .output_queue = oq, .fabric_color = C });
const ctrl_out = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 1,
    .control = true, .output_queue = oq } else .{ .extent = 1, .control = true,
    .output_queue = oq, .fabric_color = C });
fn run() void {
  @mov32(data_out, 5);
  @mov32(ctrl_out, ctrl.encode_control_task_payload(@get_control_task_id(40)));
  @mov32(data_out, 7);
  @mov32(ctrl_out, ctrl.encode_single_payload(ctrl.opcode.NOP, false,
                                              @get_control_task_id(41), 1234));
  // ce_ignore = true: the router drops it before the CE (NOCE).
  @mov32(ctrl_out, ctrl.encode_single_payload(ctrl.opcode.NOP, true,
                                              @get_control_task_id(41), 99));
  @mov32(ctrl_out, ctrl.encode_payload(2, [2]ctrl.opcode{ ctrl.opcode.NOP,
      ctrl.opcode.SWITCH_ADV }, [2]bool{ false, true }, true, @get_control_task_id(40)));
  out[0] = ctrl.encode_single_payload(ctrl.opcode.SWITCH_ADV, true, {}, 0);
  out[1] = ctrl.encode_control_task_payload(@get_control_task_id(40));
  out[2] = ctrl.MAX_CMDS;
  sys_mod.unblock_cmd_stream();
}
comptime {
  if (@is_arch("wse3")) { @initialize_queue(oq, .{ .color = C }); }
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""

RECV = """
param memcpy_params;
param C: color;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
const iq = @get_input_queue(2);
task data_task(v: u32) void { out[0] += v; }
task count_task() void {
  out[1] += 1;
  if (out[1] == 2) { sys_mod.unblock_cmd_stream(); }    // the launch ends here
}
task arg_task(d: u16) void { out[2] = @as(u32, d); out[3] = out[0]; }
fn run() void {}
comptime {
  @bind_data_task(data_task, if (@is_arch("wse3")) @get_data_task_id(iq)
                             else @get_data_task_id(C));
  @bind_control_task(count_task, @get_control_task_id(40));
  @bind_control_task(arg_task, @get_control_task_id(41));
  @initialize_queue(iq, .{ .color = C });
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


def _ctrl_runs(tmp: Path, arch: str, recv: str = RECV, unchecked: tuple[str, ...] = ()):
    """The control-wavelet program on both PE paths (twopaths.assert_same, but for
    ``unchecked``); the compiled run's device and error."""
    eng = compare_both(tmp, arch, {"layout.csl": CTRL_LAYOUT, "send.csl": SEND,
                                   "recv.csl": recv, "idle.csl": IDLE}, DIMS,
                       unchecked=unchecked)
    return eng.device, eng.error


@pytest.mark.parametrize("arch", ARCHS)
def test_control_tasks_and_control_encoders(tmp_path, arch):
    dev, err = _ctrl_runs(tmp_path, arch)
    assert err is None
    sent = dev.read_symbol(0, 0, "out").tolist()
    # SWITCH_ADV with NOCE and no task; a control task alone (NOCE clear).
    assert sent[:3] == [1 << 22 | 1 << 24 | 31 << 16, 40 << 16, 8]
    got = dev.read_symbol(1, 0, "out").tolist()
    # Data 5 + 7; task 40 twice (the NOCE one never reaches the CE); task 41 took 1234 after
    # both data wavelets (the order of the queue).
    assert got == [12, 2, 1234, 12]


UNBOUND_RECV = RECV.replace("  @bind_control_task(arg_task, @get_control_task_id(41));\n", "")
assert UNBOUND_RECV != RECV


@pytest.mark.parametrize("arch", ARCHS)
def test_a_control_wavelet_for_an_unbound_task_is_an_error(tmp_path, arch):
    # Also the counters of the failing cycle: PE(0,0), visited before PE(1,0) raises, has
    # counted it live on both paths (the engine, where PE(0,0) sleeps, settles it then).
    dev, err = _ctrl_runs(tmp_path, arch, UNBOUND_RECV)
    assert err is not None and "no task is bound to control task ID 41" in err
    sim = dev.sim
    assert sim.pes[0].stats.live == sim.cycle + 1 and sim.pes[0].stats.idle(sim.cycle) == 0


def _random_run(backend: str, seed: int) -> list:
    """A random grid of switched, torn-down, filtered and swapped colors under random data and
    control traffic; everything observable, step by step (errors included)."""
    rng = np.random.default_rng(seed)
    w, h = 4, 3
    f = Fabric(w, h, FabricOptions(), backend=backend)
    log: list = []
    for y in range(h):
        for x in range(w):
            inside = [d for d in (Direction.NORTH, Direction.EAST, Direction.SOUTH,
                                  Direction.WEST)
                      if 0 <= x + {Direction.EAST: 1, Direction.WEST: -1}.get(d, 0) < w
                      and 0 <= y + {Direction.SOUTH: 1, Direction.NORTH: -1}.get(d, 0) < h]
            masks = [1 << d for d in inside] + [R]
            for c in (0, 1):
                def pick(masks: list[int] = masks) -> int:
                    return int(sum(m for m in masks if rng.random() < 0.4)) or R
                # Position 0 takes every side (so wavelets flow); positions narrow it.
                f.core.set_route(x, y, c, int(sum(masks)), pick())
                if rng.random() < 0.5:
                    pos = [pick() if rng.random() < 0.5 else -1 for _ in range(6)]
                    f.set_switches(x, y, c, pos, 0, bool(rng.random() < 0.5),
                                   int(rng.integers(0, 3)))
                if rng.random() < 0.1:
                    f.set_teardown(x, y, c, True)
                if rng.random() < 0.2:
                    lo = int(rng.integers(0, 4))
                    f.core.set_filter(x, y, c, lo, lo + int(rng.integers(0, 3)))
                if rng.random() < 0.2:
                    f.core.set_color_swap(x, y, c, int(rng.integers(1, 4)))
                f.bind_input_queue(x, y, 2 + c, c)
    for _ in range(60):
        for _ in range(3):
            x, y, c = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(0, 2))
            ctrl = bool(rng.random() < 0.4)
            payload = int(rng.integers(0, 1 << 32, dtype=np.uint64))
            log.append(("send", f.ce_send(x, y, 2, c, payload, ctrl=ctrl)))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        log.append(("recv", f.ce_recv(x, y, 2 + int(rng.integers(0, 2)))))
        if rng.random() < 0.1:
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            f.core.router_config(x, y, 9, int(rng.integers(0, 2)), 0)
        try:
            f.tick()
        except FabricRoutingError as e:
            log.append(("error", str(e)))
            break
        log.append((f.cycle, f.in_flight, f.stuck(), tuple(map(tuple, f.blocked_wavelets())),
                    tuple(f.take_teardowns())))
    c = f.counters()
    log.append((c.link_out.tolist(), c.stall_cycles.tolist(), c.stalled_wavelet_cycles.tolist(),
                c.buffer_high_water.tolist(), c.iq_high_water.tolist()))
    log.append([f.switch_state(x, y, k) for y in range(h) for x in range(w) for k in (0, 1)])
    return log


@pytest.mark.parametrize("seed", range(12))
def test_random_router_features_agree_on_both_cores(seed):
    assert _random_run("python", seed) == _random_run("cpp", seed)


SELF_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("out", [*]u32, true);
  @export_name("run", fn()void);
}
"""

# A control wavelet on a color that the PE's own comptime block routes RAMP -> RAMP, with no
# data task or queue of its own (WSE-2's implicit queue of the color): it dispatches control
# tasks on the sending PE (spmv-hypersparse's allreduce2R1E does this).
SELF_PE = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const ctrl = @import_module("<control>");
const D: color = @get_color(6);
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
const oq = @get_output_queue(3);
const cmd_out = @get_dsd(fabout_dsd, .{ .extent = 1, .fabric_color = D, .control = true,
                                        .output_queue = oq });
task first() void {
  out[0] = 1;
  @mov32(cmd_out, ctrl.encode_control_task_payload(@get_control_task_id(12)));
}
task second() void { out[1] = 2; sys_mod.unblock_cmd_stream(); }
fn run() void {
  @mov32(cmd_out, ctrl.encode_control_task_payload(@get_control_task_id(11)));
}
comptime {
  @bind_control_task(first, @get_control_task_id(11));
  @bind_control_task(second, @get_control_task_id(12));
  @set_local_color_config(D, .{ .routes = .{ .rx = .{RAMP}, .tx = .{RAMP} } });
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


def test_wse2_control_wavelets_to_the_own_ce_dispatch_control_tasks(tmp_path):
    eng = compare_both(tmp_path, "wse2", {"layout.csl": SELF_LAYOUT, "pe.csl": SELF_PE}, (8, 3))
    assert eng.error is None
    assert eng.device.read_symbol(0, 0, "out").tolist() == [1, 2, 0, 0]


QF_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 2, .height = 1 });
layout {
  @set_rectangle(2, 1);
  @set_tile_code(0, 0, "send.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @set_tile_code(1, 0, "recv.csl", .{ .memcpy_params = memcpy.get_params(1) });
  @export_name("out", [*]u32, true);
  @export_name("run", fn()void);
}
"""

# The sender sends 3 wavelets on color A, then (WSE-3) flushes its output queue and, in the
# empty-queue handler, rebinds it to color B; 4 wavelets on B follow (WSE-2: a second DSD
# names B). The receiver rebinds its input queue from A to B, whose counter filter passes
# the first 2 of every 4 wavelets to the CE.
QF_SEND = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const tile_config = @import_module("<tile_config>");
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
var data = [4]u32 { 7, 8, 9, 10 };
const A = @get_color(3);
const B = @get_color(4);
const oq = @get_output_queue(2);
const src3 = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> data[i] });
const src4 = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{4} -> data[i] });
const out_a = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 3, .output_queue = oq }
                                   else .{ .extent = 3, .output_queue = oq, .fabric_color = A });
const out_b = @get_dsd(fabout_dsd, if (@is_arch("wse3")) .{ .extent = 4, .output_queue = oq }
                                   else .{ .extent = 4, .output_queue = oq, .fabric_color = B });
const sent_id = @get_local_task_id(10);
const second_id = @get_local_task_id(11);
const done_id = @get_local_task_id(12);
fn on_empty() void {
  tile_config.output_queue_config.encode_output_queue(2, @get_int(B));
  @activate(second_id);
  tile_config.queue_flush.exit(oq);
}
task sent() void {
  if (@is_arch("wse3")) { @queue_flush(oq); } else { @activate(second_id); }
}
task second() void { @mov32(out_b, src4, .{ .async = true, .activate = done_id }); }
task done() void { sys_mod.unblock_cmd_stream(); }
fn run() void { @mov32(out_a, src3, .{ .async = true, .activate = sent_id }); }
comptime {
  @bind_local_task(sent, sent_id);
  @bind_local_task(second, second_id);
  @bind_local_task(done, done_id);
  @initialize_queue(oq, if (@is_arch("wse3")) .{ .color = A } else .{});
  if (@is_arch("wse3")) { @set_empty_queue_handler(on_empty, oq); }
  @set_local_color_config(A, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @set_local_color_config(B, .{ .routes = .{ .rx = .{RAMP}, .tx = .{EAST} } });
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""

QF_RECV = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
const tile_config = @import_module("<tile_config>");
var out = @zeros([4]u32);
var out_ptr: [*]u32 = &out;
var first = @zeros([3]u32);
const A = @get_color(3);
const B = @get_color(4);
const iq = @get_input_queue(2);
const in3 = @get_dsd(fabin_dsd, .{ .extent = 3, .input_queue = iq });
const in2 = @get_dsd(fabin_dsd, .{ .extent = 2, .input_queue = iq });
const first_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{3} -> first[i] });
const out_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{2} -> out[i] });
const got_id = @get_local_task_id(10);
const done_id = @get_local_task_id(12);
task got() void {
  tile_config.input_queue_config.encode_input_queue(2, @get_int(B), true);
  @mov32(out_dsd, in2, .{ .async = true, .activate = done_id });
}
task done() void { out[2] = first[0] + first[1] + first[2]; sys_mod.unblock_cmd_stream(); }
fn run() void { @mov32(first_dsd, in3, .{ .async = true, .activate = got_id }); }
comptime {
  @bind_local_task(got, got_id);
  @bind_local_task(done, done_id);
  @initialize_queue(iq, .{ .color = A });
  @set_local_color_config(A, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} } });
  @set_local_color_config(B, .{ .routes = .{ .rx = .{WEST}, .tx = .{RAMP} },
    .filter = .{ .kind = .{ .counter = true }, .count_data = true, .count_control = false,
                 .init_counter = 0, .max_counter = 1, .limit1 = 3 } });
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}
"""


@pytest.mark.parametrize("arch", ARCHS)
def test_queue_flush_queue_rebinding_and_counter_filter(tmp_path, arch):
    # Both paths rebind input queue 2 of PE 1 to color 4 (the extra state compared).
    eng = compare_both(tmp_path, arch, {"layout.csl": QF_LAYOUT, "send.csl": QF_SEND,
                                        "recv.csl": QF_RECV}, (9, 3),
                       extra=lambda dev: dev.sim.fabric.input_queue_color(1, 0, 2))
    assert eng.error is None and eng.state["extra"] == 4
    dev, fab = eng.device, eng.device.sim.fabric
    # The first two of the four B wavelets reach the CE; 7 + 8 + 9 came on A.
    assert dev.read_symbol(1, 0, "out").tolist() == [7, 8, 24, 0]
    # Five wavelets went down PE 1's ramp: three on A, two on B (two B ones were dropped).
    assert fab.counters().link_out[0, 1, Direction.RAMP] == 5
