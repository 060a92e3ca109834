"""Issue 14 simulator findings: DSD fields and DSD-op operands of the wrong kind or out of
what the hardware encodes are errors at compile time when the value is known, and the same
SimError on both PE paths at run time otherwise. Nothing allocates in proportion to an
extent before it is checked (a 2^31 extent used to allocate 16 GiB on the Python path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from waferscale.fuzz import time_limit
from waferscale.lang.errors import CslError
from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.device import SimulatorDevice
from waferscale.sim.fabric import cpp_available
from waferscale.sim.pe import SimError
from waferscale.sim.simulator import SimOptions

LAYOUT = """const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("y", [*]f32, true);
  @export_name("go", fn()void);
}
"""

PE = """param memcpy_params: comptime_struct;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var y: [8]f32 = @constants([8]f32, 1.0);
var y_ptr: [*]f32 = &y;
const iq: input_queue = @get_input_queue(2);
fn helper() void {}
const y_dsd = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = EXTENT });
const in_dsd = @get_dsd(fabin_dsd, .{ .extent = 8, .input_queue = INQ });
fn go() void {
  STMT
  sys_mod.unblock_cmd_stream();
}
comptime {
  @export_symbol(y_ptr, "y");
  @export_symbol(go);
  @initialize_queue(iq, .{ .color = @get_color(4) });
}
"""
STMT_LINE = 10
GUARD_S = 60.0


@pytest.fixture(params=["python", "compiled"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "compiled" and not cpp_available():
        pytest.skip("waferscale._fabric is not built (the compiled engine is C++)")
    return request.param


def build(tmp_path: Path, stmt: str, extent: str = "8", inq: str = "iq") -> Path:
    (tmp_path / "layout.csl").write_text(LAYOUT)
    pe = tmp_path / "pe.csl"
    pe.write_text(PE.replace("EXTENT", extent).replace("INQ", inq).replace("STMT", stmt))
    return pe


def run(tmp_path: Path, engine: str) -> np.ndarray:
    lay = elaborate(tmp_path / "layout.csl", CompileOptions(memcpy=True, channels=1))
    dev = SimulatorDevice(lay, SimOptions(engine=engine, max_cycles=100_000,
                                          simprint_log=None))
    with time_limit(GUARD_S):
        dev.launch("go", [])
    return dev.memcpy_d2h("y", [(0, 0)], 8, 32).view(np.float32)[0]


def compile_error(tmp_path: Path, pe: Path, line: int) -> str:
    with time_limit(GUARD_S), pytest.raises(CslError) as info:
        elaborate(tmp_path / "layout.csl", CompileOptions(memcpy=True, channels=1))
    head = info.value.render().split("\n")[0]
    assert head.startswith(f"{pe}:{line}:"), head
    return head


@pytest.mark.parametrize("inq, message", [
    ("helper", "fabin_dsd .input_queue must be an input_queue, found a function ('fn() void')"),
    ("@get_color(3)", "fabin_dsd .input_queue must be an input_queue, found a value of type "
                      "'color'"),
    ("u16", "fabin_dsd .input_queue must be an input_queue, found the type 'u16'"),
])
def test_fabin_input_queue_of_the_wrong_kind_is_a_compile_error(tmp_path: Path, inq: str,
                                                                message: str) -> None:
    pe = build(tmp_path, "@fmovs(y_dsd, in_dsd);", inq=inq)
    assert message in compile_error(tmp_path, pe, 8)


@pytest.mark.parametrize("extent, message", [
    ("2147483648", "mem1d_dsd .extent 2147483648 does not fit the DSD's u16 field (0..65535)"),
    ("-1", "mem1d_dsd .extent -1 does not fit the DSD's u16 field (0..65535)"),
    ("65536", "mem1d_dsd .extent 65536 does not fit the DSD's u16 field (0..65535)"),
    ("helper", "mem1d_dsd .extent must be an integer (u16), found a function"),
])
def test_mem1d_extent_out_of_the_u16_field_is_a_compile_error(tmp_path: Path, extent: str,
                                                              message: str) -> None:
    pe = build(tmp_path, "@fmovs(y_dsd, y_dsd);", extent=extent)
    assert message in compile_error(tmp_path, pe, 7)


@pytest.mark.parametrize("decl, message", [
    ("const d = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = 4, .stride = 128 });",
     "mem1d_dsd .stride 128 does not fit the DSD's i8 field (-128..127)"),
    ("const d = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = 4, .offset = 32768 });",
     "mem1d_dsd .offset 32768 does not fit the DSD's i16 field (-32768..32767)"),
    ("const d = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{70000} -> y[0] });",
     "mem1d_dsd tensor access extent 70000 does not fit the DSD's u16 extent field"),
    ("const d = @get_dsd(mem4d_dsd, .{ .base_address = &y, .extent = .{2, 70000}, "
     ".stride = .{1, 1} });",
     "mem4d_dsd .extent entry 70000 does not fit the DSD's u16 field (0..65535)"),
    ("const d = @get_dsd(mem4d_dsd, .{ .tensor_access = |i,j|{0,4} -> y[4294967295*j] });",
     "mem4d_dsd tensor access stride 4294967295 does not fit the DSD's i16 stride field"),
    ("const d = @set_dsd_length(y_dsd, 65536);",
     "@set_dsd_length argument 65536 does not fit the DSD's u16 field (0..65535)"),
    ("const d = @increment_dsd_offset(y_dsd, -40000, f32);",
     "@increment_dsd_offset argument -40000 does not fit the DSD's i16 field"),
])
def test_dsd_fields_beyond_their_hardware_encoding_are_compile_errors(
        tmp_path: Path, decl: str, message: str) -> None:
    pe = build(tmp_path, "@fmovs(y_dsd, d);")
    pe.write_text(pe.read_text().replace("fn helper() void {}", decl))
    assert message in compile_error(tmp_path, pe, 6)


@pytest.mark.parametrize("stmt, col, message", [
    ("@fadds(u16, y_dsd, in_dsd);", 10,
     "@fadds destination is the type 'u16'; expected a DSD or a pointer"),
    ("@fadds(y_dsd, helper, y_dsd);", 17,
     "@fadds operand 1 is the function 'helper'; expected a DSD, a pointer or a number"),
    ("@fadds(y_dsd, y_dsd, iq);", 24,
     "@fadds operand 2 is an input_queue ('iq'); expected a DSD, a pointer or a number"),
    ("@fmovs(y_dsd, [4]f32);", 17, "@fmovs operand 1 is a type"),
    ("@fadds(3, y_dsd, y_dsd);", 10, "@fadds destination is a number"),
    ("var k: f32 = 1.0; @fadds(k, y_dsd, y_dsd);", 28,
     "@fadds destination is the local 'k' of type 'f32'"),
    ("@map(helper, y_dsd, f32);", 23, "@map operand 2 is the type 'f32'"),
])
def test_dsd_op_operands_of_the_wrong_kind_are_compile_errors(
        tmp_path: Path, stmt: str, col: int, message: str) -> None:
    pe = build(tmp_path, stmt)
    head = compile_error(tmp_path, pe, STMT_LINE)
    assert head.startswith(f"{pe}:{STMT_LINE}:{col}: error: {message}"), head


@pytest.mark.parametrize("stmt, message", [
    ("var n: i32 = 70000; @fmovs(y_dsd, @set_dsd_length(y_dsd, n));",
     "mem1d_dsd extent 70000 does not fit the DSD's u16 extent field (0..65535)"),
    ("var n: i32 = -3; @fmovs(y_dsd, @set_dsd_length(y_dsd, n));",
     "mem1d_dsd extent -3 does not fit the DSD's u16 extent field (0..65535)"),
    ("var n: i32 = 70000; @fmovs(@set_dsd_length(in_dsd, n), y_dsd);",
     "fabin_dsd extent 70000 does not fit the DSD's u16 extent field (0..65535)"),
])
def test_run_time_extents_are_checked_before_use_on_both_paths(
        tmp_path: Path, engine: str, stmt: str, message: str) -> None:
    build(tmp_path, stmt)
    with pytest.raises(SimError) as info:
        run(tmp_path, engine)
    assert message in str(info.value)
    assert "PE(0,0), task go" in str(info.value)


def test_mem4d_element_count_is_bounded_before_addresses_are_built(tmp_path: Path,
                                                                   engine: str) -> None:
    pe = build(tmp_path, "@fmovs(m_dsd, 1.0);")
    pe.write_text(pe.read_text().replace(
        "fn helper() void {}",
        "const m_dsd = @get_dsd(mem4d_dsd, .{ .base_address = &y, .extent = .{65535, 65535}, "
        ".stride = .{0, 0} });"))
    with pytest.raises(SimError) as info:
        run(tmp_path, engine)
    assert "mem4d_dsd has 4294836225 elements, more than the simulator's limit of 1048576 " \
           "per DSD" in str(info.value)


def test_zero_extent_moves_nothing_on_both_paths(tmp_path: Path, engine: str) -> None:
    """Documented behaviour: an op whose DSDs have extent 0 writes nothing."""
    build(tmp_path, "@fmovs(y_dsd, 5.0);", extent="0")
    np.testing.assert_array_equal(run(tmp_path, engine), np.ones(8, np.float32))


def test_extent_65535_is_accepted_and_bounds_checked_against_memory(tmp_path: Path,
                                                                    engine: str) -> None:
    build(tmp_path, "@fmovs(y_dsd, 5.0);", extent="65535")
    with pytest.raises(SimError) as info:
        run(tmp_path, engine)
    assert "mem1d_dsd reaches element 8 of 'y', which has 8 element(s): out of bounds" \
        in str(info.value)


@pytest.mark.parametrize("stmt, col, message", [
    ("var d = @increment_dsd_offset(y_dsd, 100000000000000000000, f32); @fmovs(d, d);", 40,
     "@increment_dsd_offset argument 100000000000000000000 does not fit the DSD's i16 field"),
    ("var d = @increment_dsd_offset(y_dsd, -40000, f32); @fmovs(d, d);", 40,
     "@increment_dsd_offset argument -40000 does not fit the DSD's i16 field"),
    ("@fmovs(y_dsd, @set_dsd_length(y_dsd, 70000));", 40,
     "@set_dsd_length argument 70000 does not fit the DSD's u16 field (0..65535)"),
    ("var d = @set_dsd_stride(y_dsd, 200); @fmovs(d, d);", 34,
     "@set_dsd_stride argument 200 does not fit the DSD's i8 field (-128..127)"),
])
def test_literal_mutator_arguments_in_run_time_code_are_compile_errors(
        tmp_path: Path, stmt: str, col: int, message: str) -> None:
    """Fuzz finding (sim campaign): a 10^20 offset literal in a fn body was an OverflowError
    in sim/dsd.py on the Python path."""
    pe = build(tmp_path, stmt)
    head = compile_error(tmp_path, pe, STMT_LINE)
    assert head.startswith(f"{pe}:{STMT_LINE}:{col}: error: {message}"), head


@pytest.mark.parametrize("stmt, message", [
    # A run-time mutator argument is checked against its DSD field when the mutator runs.
    ("var n: i32 = 2147483647; var d = @increment_dsd_offset(y_dsd, n, f32); @fmovs(d, d);",
     "@increment_dsd_offset argument 2147483647 does not fit the DSD's i16 field "
     "(-32768..32767)"),
    ("var n: i32 = 2000000000; var d = @set_dsd_stride(y_dsd, n); @fmovs(d, d);",
     "@set_dsd_stride argument 2000000000 does not fit the DSD's i8 field (-128..127)"),
    ("var n: i16 = -129; var d = @set_dsd_stride(y_dsd, n); @fmovs(d, d);",
     "@set_dsd_stride argument -129 does not fit the DSD's i8 field (-128..127)"),
    # Increments that each fit accumulate beyond any memory: the reach check at the op.
    ("var d = y_dsd; var k: i16 = 0; while (k < 600) : (k += 1) "
     "{ d = @increment_dsd_offset(d, 32000, f32); } @fmovs(d, d);",
     "mem1d_dsd offset 19200000 reaches beyond the PE's memory"),
])
def test_run_time_offsets_and_strides_beyond_their_fields_or_memory_give_one_error_on_both_paths(
        tmp_path: Path, engine: str, stmt: str, message: str) -> None:
    build(tmp_path, stmt)
    with pytest.raises(SimError) as info:
        run(tmp_path, engine)
    assert message in str(info.value)


# Minimized reproducers saved by `python -m waferscale.fuzz sim --seed 14` (and --seed 15) (the program whose PE
# file they replace, and the text). Each was a crash (OverflowError in sim/dsd.py or
# sim/lower.py's constant table, AssertionError in lower.py on `-dsd`); now a clean error.
FUZZ_REPRODUCERS = {
    "dsd_offset_1e20": ("dsd", 'var y: [8]f32;\nconst y_dsd = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = 8, .stride = 1 });\nfn go() void {\nvar d = @increment_dsd_offset(y_dsd, 100000000000000000000, 2);\n@fmovs(d, d);\n}\ncomptime { @export_symbol(go);\n}'),
    "wide_constant": ("collectives", 'param c2d_params: comptime_struct;\nparam N: i16;\nconst mpi_x = @import_module("<collectives_2d/pe>", .{\n  .dim_params = c2d_params.x, .s = [2]u16{ 2, 4 },\n  .de= [1]u16{ 1 }, .src0ids = [1]u16{ 1 }, .ds = [1]u16{ 1 } });\nconst mpi_y = dule("<col", .{\n  .d= c2dms.y, .queues = [2]u16{ 3, 5 },\n  .ds = [1]u16{ 2 }, .s = [1]u16{ 2 }, .src= [1]u16{ 2 } });\nconst reduce_id: local_task_id = @get_local_task_id(8);\nvar buf: [N]f32;\nfn main() void {\n  mpi_x.broadcast(100000000000000000000000000000, @ptrcast([*]u32, &buf), @as(u16, N), reduce_id);\n}\ntask reducer() void {\n}\ncomptime {\n  @export_symbol(main);\n}'),
    "collectives_float_root": ("collectives", 'param c2d_params: comptime_struct;\nparam P: i16;\nparam N: i16;\nconst mpi_x = @import_module("<collectives_2d/pe>", .{\n  .dim_params = c2d_params.x, .queues = [2]u16{ 2, 4 },\n  .desds = [1]u16{ 1 }, .src1_dsr_ids = [1]u16{ 1 } });\nconst mpi_y = @import_module("<collectives_2d/pe>", .{\n  .dim_params = c2d_params.y, .queues = [2]u16{ 3, 5 },\n  .dest_dsr_ids = [1]u16{ 2 }, .src0_dsr_ids = [1]u16{ 2 }, .src = [1]u16{ 2 } });\nconst reduce_id: local_task_id = @get_local_task_id(8);\nconst scatter_id: local_task_id = @get_local_task_id(9);\nconst gather_id: local_task_id = @get_local_task_id(10);\nvar buf: [N]f32;\nvar sums: [N]f32;\nvar parts: [N * P]f32;\nvar part: [N]f32;\nfn main() void {\n  mpi_x.broadcast(0, @ptrcast([*]u32, &buf), @as(u16, N), reduce_id);\n}\ntask reduce() void {\n  mpi_y.reduce_fadds(0, &buf, &sums, @as(u16, N), scatter_id);\n}\ntask scatter() void {\n  mpi_x.scatter(1e-400, @ptrcast([*]u32, &parts), @ptrcast([*]u32, &part), @as(u16, N), gather_id);\n}\ntask gather() void {\n}\ncomptime {\n  @bind_local_task(reduce, reduce_id);\n  @bind_local_task(scatter, scatter_id);\n  @export_symbol(main);\n}'),
    "return_in_comptime_block": ("dsd", 'var b32:[6]f32;var b32_ptr:[*]f32=&b32;comptime{return@export_symbol(b32_ptr,"");}'),
    "tensor_access_stride_2_32": ("dsd", 'var y:[8]f32;\nconst y_dsd = @get_dsd(mem1d_dsd, .{ .base_address = &y, .extent = 8, .stride = 1 });\nconst m_dsd = @get_dsd(mem4d_dsd, .{ .tensor_access = |i,j|{0,4} -> y[4294967295*j] });\nfn go() void {\n@fmacs(m_dsd, m_dsd, y_dsd, 0);\n}\ncomptime { @export_symbol(go);\n}'),
    "negated_dsd": ("single_pe_gemv", 'param M: i16;\nparam N: i16;\nvar y: [M]f32;\nconst y_dsd = @get_dsd(mem1d_dsd, .{ .tensor_access = |i|{M} -> y[i] });\nfn compute() void {\nfor (@range(i16, N)) |j| { @fmacs(y_dsd,-y_dsd, d, x[j]);\n}\n}\ncomptime { @export_symbol(compute);\n}'),
}


@pytest.mark.parametrize("name", sorted(FUZZ_REPRODUCERS))
def test_fuzz_reproducers_are_clean_errors(name: str, engine: str, tmp_path: Path) -> None:
    import random

    from waferscale import fuzz
    program, text = FUZZ_REPRODUCERS[name]
    root = fuzz.default_corpus_root()
    assert root is not None
    target = fuzz.SimTarget(root, random.Random(0), tmp_path, engine=engine)
    (prog, files, params) = next(p for p in target.programs if p[0] == program)
    pe_file = sorted(f for f in files if f != "layout.csl")[0]
    outcome, site, detail = fuzz.classify(
        lambda: target.run(text, (prog, files, params, pe_file)), GUARD_S)
    assert outcome == "clean", detail


def test_nan_filled_memory_too_large_for_the_host_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A whole WSE-3 with --uninitialized-nan would need its 40 GiB filled up front; the host's
    # refusal is said as such (NumPy's own MemoryError is stood in for: a real one would need
    # that much address space).
    from waferscale.sim import memory

    def refuse(*a, **k):
        raise MemoryError
    monkeypatch.setattr(memory.np, "full", refuse)
    with pytest.raises(memory.MemoryError_, match=r"883350 PEs need 40\.4 GiB"):
        memory.memory_block(883350, fill_nan=True)
    monkeypatch.undo()
    assert memory.memory_block(3, fill_nan=True).shape == (3, memory.WORDS)
