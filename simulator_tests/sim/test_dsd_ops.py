"""Every DSD operation of the simulator against NumPy, on one PE.

Each case builds a small CSL program whose ``go()`` runs one operation on mem1d DSDs with
drawn lengths, strides and offsets, optionally aliased (the destination over a source array:
in place, shifted, or a zero-stride accumulator), then compares the PE's memory with a NumPy
reference that executes the same element sequence: element i reads its sources *after*
elements 0..i-1 were written, which is what makes reductions and shifted aliasing match
hardware. Values are compared bit for bit: the simulator must round exactly like IEEE
arithmetic in the element type.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from waferscale.lang.layout import CompileOptions, elaborate
from waferscale.sim.device import SimulatorDevice

SIZE = 48  # elements per array

# op -> (dest type, source types, takes a trailing scalar, reference on NumPy scalars).
# The references are written here from the ops' definitions (IEEE arithmetic rounded to the
# element type; 16-bit integer arithmetic wrapping modulo 2**16), not taken from the simulator.
F32, F16 = np.float32, np.float16
DTYPES = {"f32": np.float32, "f16": np.float16, "u16": np.uint16, "u32": np.uint32,
          "i16": np.int16}


def wrap_i16(v: int) -> np.int16:
    return np.int16((v + 2**15) % 2**16 - 2**15)


OPS = {
    "fadds": ("f32", ("f32", "f32"), False, lambda a, b: F32(a + b)),
    "fsubs": ("f32", ("f32", "f32"), False, lambda a, b: F32(a - b)),
    "fmuls": ("f32", ("f32", "f32"), False, lambda a, b: F32(a * b)),
    "fmaxs": ("f32", ("f32", "f32"), False, lambda a, b: max(a, b)),
    "fmacs": ("f32", ("f32", "f32"), True, lambda a, b, v: F32(a + F32(b * v))),
    "fmovs": ("f32", ("f32",), False, lambda a: a),
    "fnegs": ("f32", ("f32",), False, lambda a: -a),
    "fabss": ("f32", ("f32",), False, lambda a: abs(a)),
    "faddh": ("f16", ("f16", "f16"), False, lambda a, b: F16(a + b)),
    "fsubh": ("f16", ("f16", "f16"), False, lambda a, b: F16(a - b)),
    "fmaxh": ("f16", ("f16", "f16"), False, lambda a, b: max(a, b)),
    "fnegh": ("f16", ("f16",), False, lambda a: -a),
    "fabsh": ("f16", ("f16",), False, lambda a: abs(a)),
    "fmulh": ("f16", ("f16", "f16"), False, lambda a, b: F16(a * b)),
    "fmach": ("f16", ("f16", "f16"), True, lambda a, b, v: F16(a + F16(b * v))),
    "fmovh": ("f16", ("f16",), False, lambda a: a),
    "fh2s": ("f32", ("f16",), False, lambda a: F32(a)),
    "fs2h": ("f16", ("f32",), False, lambda a: F16(a)),
    "fmachs": ("f32", ("f32", "f16"), True, lambda a, b, v: F32(a + F32(F32(b) * F32(v)))),
    "mov16": ("u16", ("u16",), False, lambda a: a),
    "mov32": ("u32", ("u32",), False, lambda a: a),
    "add16": ("i16", ("i16", "i16"), False, lambda a, b: wrap_i16(int(a) + int(b))),
    "sub16": ("i16", ("i16", "i16"), False, lambda a, b: wrap_i16(int(a) - int(b))),
}


def program(op: str, n: int, d: tuple[int, int], srcs: list[tuple[int, int]], alias: str,
            scalar: float) -> str:
    dt, sts, has_scalar, _ = OPS[op]
    arrays = {"d": dt, **{f"s{i}": t for i, t in enumerate(sts)}}
    decls = "\n".join(f"var {name}: [{SIZE}]{t};\nvar {name}_ptr: [*]{t} = &{name};"
                      for name, t in arrays.items())
    dest_arr = "s0" if alias != "none" and arrays["s0"] == dt else "d"
    dsds = [f"const d_dsd = @get_dsd(mem1d_dsd, .{{ .base_address = &{dest_arr}, "
            f".offset = {d[0]}, .stride = {d[1]}, .extent = {n} }});"]
    for i, (off, stride) in enumerate(srcs):
        dsds.append(f"const s{i}_dsd = @get_dsd(mem1d_dsd, .{{ .base_address = &s{i}, "
                    f".offset = {off}, .stride = {stride}, .extent = {n} }});")
    args = ", ".join(["d_dsd"] + [f"s{i}_dsd" for i in range(len(sts))]
                     + ([f"@as({sts[-1]}, {scalar!r})"] if has_scalar else []))
    exports = "\n".join(f'  @export_symbol({name}_ptr, "{name}");' for name in arrays)
    return f"""
param memcpy_params: comptime_struct;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
{decls}
{chr(10).join(dsds)}
fn go() void {{
  @{op}({args});
  sys_mod.unblock_cmd_stream();
}}
comptime {{
{exports}
  @export_symbol(go);
}}
"""


def layout(arrays: dict[str, str]) -> str:
    names = "\n".join(f'  @export_name("{n}", [*]{t}, true);' for n, t in arrays.items())
    return f"""
const memcpy = @import_module("<memcpy/get_params>", .{{ .width = 1, .height = 1 }});
layout {{
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{{ .memcpy_params = memcpy.get_params(0) }});
{names}
  @export_name("go", fn()void);
}}
"""


def words(a: np.ndarray) -> np.ndarray:
    """The memcpy words of ``a``: each element's bits, zero-extended to 32."""
    return a.view(f"u{a.itemsize}").astype(np.uint32)


def random_array(rng: np.random.Generator, t: str) -> np.ndarray:
    """SIZE values of CSL type ``t``: floats around +-4, integers over their whole range (so
    that 16-bit sums and differences wrap)."""
    dtype = DTYPES[t]
    if t.startswith("f"):
        return (rng.standard_normal(SIZE) * 4).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, SIZE, dtype=dtype, endpoint=True)


def reference(op, n, d, srcs, alias, scalar, mem):
    dt, sts, has_scalar, fn = OPS[op]
    dest_name = "s0" if alias != "none" and sts[0] == dt else "d"
    out = {k: v.copy() for k, v in mem.items()}
    v = (F16 if sts[-1] == "f16" else F32)(scalar)
    for i in range(n):
        args = [out[f"s{j}"][off + i * stride] for j, (off, stride) in enumerate(srcs)]
        if has_scalar:
            args.append(v)
        with np.errstate(all="ignore"):
            out[dest_name][d[0] + i * d[1]] = fn(*args)
    return out


@st.composite
def cases(draw):
    op = draw(st.sampled_from(sorted(OPS)))
    n = draw(st.integers(1, 12))
    alias = draw(st.sampled_from(["none", "none", "inplace", "shifted", "accumulate"]))

    def access(zero_ok: bool):
        stride = draw(st.sampled_from([1, 1, 2, 3, -1] + ([0] if zero_ok else [])))
        span = (n - 1) * abs(stride)
        lo = span if stride < 0 else 0
        off = draw(st.integers(lo, SIZE - 1 - (0 if stride < 0 else span)))
        return off, stride

    srcs = [access(False) for _ in OPS[op][1]]
    if alias == "inplace":
        d = srcs[0]
    elif alias == "accumulate":
        d = (srcs[0][0], 0)          # |i|{n} -> s0[k]: every element rewrites one accumulator
        srcs[0] = d
    else:
        d = access(False)
    scalar = draw(st.sampled_from([0.5, -1.25, 3.0, 1e-3]))
    seed = draw(st.integers(0, 2**16))
    return op, n, d, srcs, alias, scalar, seed


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(cases())
def test_dsd_op_matches_numpy_sequential_reference(tmp_path_factory, case):
    op, n, d, srcs, alias, scalar, seed = case
    dt, sts, _, _ = OPS[op]
    if alias != "none" and sts[0] != dt:
        alias = "none"                      # aliasing only between arrays of the same type
        assume(not (d == srcs[0] and d[1] == 0))
    check_op(tmp_path_factory.mktemp("dsd"), op, n, d, srcs, alias, scalar, seed)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_dsd_op_matches_numpy(tmp_path, op):
    # Each op at least once whatever hypothesis draws: 12 elements, destination stride 2,
    # sources forward and backward.
    srcs = [(5, 1), (40, -3)][:len(OPS[op][1])]
    check_op(tmp_path, op, 12, (1, 2), srcs, "none", -1.25, 7)


def check_op(tmp, op, n, d, srcs, alias, scalar, seed):
    """Run ``@op`` once on the simulator and compare all arrays bit for bit with
    :func:`reference`."""
    dt, sts, _, _ = OPS[op]
    arrays = {"d": dt, **{f"s{i}": t for i, t in enumerate(sts)}}
    (tmp / "pe.csl").write_text(program(op, n, d, srcs, alias, scalar))
    (tmp / "layout.csl").write_text(layout(arrays))
    dev = SimulatorDevice(elaborate(tmp / "layout.csl", CompileOptions(memcpy=True,
                                                                        channels=1)))
    rng = np.random.default_rng(seed)
    mem = {}
    for name, t in arrays.items():
        a = random_array(rng, t)
        mem[name] = a
        dev.memcpy_h2d(name, [(0, 0)], words(a)[None], 8 * a.itemsize)
    dev.launch("go", [])
    expect = reference(op, n, d, srcs, alias, scalar, mem)
    for name, t in arrays.items():
        got = dev.memcpy_d2h(name, [(0, 0)], SIZE, 8 * DTYPES[t]().itemsize)[0]
        want = words(expect[name])
        assert np.array_equal(got, want), (name, op, n, d, srcs, alias)


@pytest.mark.parametrize("arch", ["wse2", "wse3"])
def test_simd_width_sets_op_cycles(tmp_path, arch):
    # 16 f16 adds: ceil(16/4)=4 cycles on WSE-2 and ceil(16/8)=2 on WSE-3, plus fixed costs.
    arrays = {"d": "f16", "s0": "f16", "s1": "f16"}
    srcs = [(0, 1), (16, 1)]
    (tmp_path / "pe.csl").write_text(program("faddh", 16, (0, 1), srcs, "none", 0.0))
    (tmp_path / "layout.csl").write_text(layout(arrays))
    dev = SimulatorDevice(elaborate(tmp_path / "layout.csl", CompileOptions(
        arch=arch, memcpy=True, channels=1)))
    dev.launch("go", [])
    pe = dev.sim.pes[0]
    t = dev.sim.timing
    fixed = 2 * t.statement + t.dsd_op_setup + 2 * t.branch   # two statements, two calls
    assert pe.stats.busy == fixed + (4 if arch == "wse2" else 2)
