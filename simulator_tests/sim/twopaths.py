"""Run one program on both PE paths and compare everything observable (a test helper).

The simulator has two PE paths: the Python interpreter (the reference, ``engine="python"``)
and the compiled C++ engine (``engine="compiled"``). Tests show they agree bit for bit. The
protocol, shared by every such test in this directory:

* :func:`launch_both` writes a program's files, compiles it (once per path, as a user would),
  launches one exported function on each path and returns one :class:`Run` per path, the
  reference first; a run that stops with a ``DeviceError`` (a run-time error, a deadlock
  report, the cycle limit) keeps the error's text. Each compiled run must really use the
  engine (a program that stops lowering fails the test rather than compare Python with
  Python).
* :func:`assert_same` compares runs: the error text, the compile warnings and the
  :func:`state` of the simulator, i.e. the cycle counter, every PE's memory, the per-PE
  counters (busy, stall, live, tasks run), the fabric's counters (link traffic, stalls,
  queue and buffer high-water marks), the router state of every PE and color (routes,
  switch positions, teardown), ``<simprint>`` lines, the trace (when enabled) and whatever
  a test adds through ``extra``. A known difference between the paths is left out by
  naming its key in ``unchecked`` (the test says why; test_router_features has one, with a
  strict xfail that fails once the difference is fixed).
* :func:`compare_both` is the two together; :func:`run_both` is :func:`compare_both` on the
  one-PE template program (:data:`PE`, :data:`ONE_PE_LAYOUT`) with the test's declarations
  and the body of its launched ``run``.

Limits: one launch per run (host copies before or after are the test's own, through
``Run.device``); programs are compiled with memcpy and one channel. Sessions of devices
made by a script (``waferscale.sim.device.session``) are compared with :func:`state` and
:func:`assert_same_state` directly (test_engine, test_scale).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from waferscale.host.device import DeviceError
from waferscale.lang.layout import CompileOptions, Layout, elaborate
from waferscale.sim.device import SimulatorDevice
from waferscale.sim.fabric import NUM_COLORS
from waferscale.sim.simulator import SimOptions

#: (PE path, fabric core) pairs: the two PE paths on the default fabric core ...
BOTH = (("python", "auto"), ("compiled", "auto"))
#: ... and, for router features, also the Python path on the Python fabric core.
ALL_CORES = (("python", "python"), ("python", "cpp"), ("compiled", "cpp"))

ARCHS = ["wse2", "wse3"]

#: One PE exporting ``out`` ([*]f32) and ``run``.
ONE_PE_LAYOUT = """
const memcpy = @import_module("<memcpy/get_params>", .{ .width = 1, .height = 1 });
layout {
  @set_rectangle(1, 1);
  @set_tile_code(0, 0, "pe.csl", .{ .memcpy_params = memcpy.get_params(0) });
  @export_name("out", [*]f32, true);
  @export_name("run", fn()void);
}
"""

#: The fabric of :data:`ONE_PE_LAYOUT` in these tests.
ONE_PE_DIMS = (8, 3)

#: The PE of :data:`ONE_PE_LAYOUT` (``str.format`` with ``decls`` and ``body``).
PE = """
param memcpy_params;
const sys_mod = @import_module("<memcpy/memcpy>", memcpy_params);
var out = @zeros([8]f32);
var buf = @zeros([8]f32);
var out_ptr: [*]f32 = &out;
{decls}
fn run() void {{
{body}
  sys_mod.unblock_cmd_stream();
}}
comptime {{
  @export_symbol(out_ptr, "out");
  @export_symbol(run);
}}
"""


def state(dev: SimulatorDevice, extra: Callable[[SimulatorDevice], Any] | None = None
          ) -> dict[str, Any]:
    """Everything of ``dev``'s simulator that both PE paths must agree on (see the module
    docstring); ``extra(dev)``, if given, is compared too."""
    sim = dev.sim
    fab = sim.fabric
    routers = [(fab.route(x, y, c), fab.switch_state(x, y, c), fab.in_teardown(x, y, c))
               for y in range(fab.height) for x in range(fab.width) for c in range(NUM_COLORS)]
    out: dict[str, Any] = {
        "cycle": sim.cycle,
        "memory": sim.memory.copy(),
        "busy": [pe.stats.busy for pe in sim.pes],
        "stall": [pe.stats.stall for pe in sim.pes],
        # live (the raw counter) rather than idle, which derives from it and clamps at 0.
        "live": [pe.stats.live for pe in sim.pes],
        "tasks run": [pe.stats.tasks_run for pe in sim.pes],
        "routers": routers,
        "simprint": list(sim.sim_log),
        "trace": sim.trace.events if sim.trace is not None else None,
    }
    counters = fab.counters()
    for f in fields(counters):
        out[f"fabric {f.name}"] = getattr(counters, f.name)
    if extra is not None:
        out["extra"] = extra(dev)
    return out


def assert_same_state(a: dict[str, Any], b: dict[str, Any], what: str = "",
                      unchecked: Collection[str] = ()) -> None:
    """Two :func:`state` dicts are equal, key by key (arrays element by element), but for
    the keys named in ``unchecked`` (a known difference; the test says why)."""
    assert a.keys() == b.keys() and set(unchecked) <= a.keys()
    for key, va in a.items():
        if key in unchecked:
            continue
        vb = b[key]
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            same = np.array_equal(va, vb)
        else:
            same = va == vb
        assert same, f"{key} differs {what}: {va!r} != {vb!r}"


@dataclass
class Run:
    """One launch on one path: its device, the error's text (None: it ran to the end), the
    compiled layout and the simulator's :func:`state` after the launch."""
    path: tuple[str, str]
    device: SimulatorDevice
    error: str | None
    layout: Layout
    state: dict[str, Any] = field(repr=False)


def launch(layout_path: Path, options: CompileOptions, path: tuple[str, str] = BOTH[0], *,
           function: str = "run", args: Sequence[Any] = (),
           extra: Callable[[SimulatorDevice], Any] | None = None, **sim_options: Any) -> Run:
    """Compile ``layout_path`` and launch ``function`` on ``path`` (PE path, fabric core)."""
    engine, backend = path
    lay = elaborate(layout_path, options)
    sim_options.setdefault("simprint_log", None)
    dev = SimulatorDevice(lay, SimOptions(engine=engine, fabric_backend=backend, **sim_options))
    assert (dev.sim.engine is not None) == (engine == "compiled"), path
    try:
        dev.launch(function, list(args))
        err = None
    except DeviceError as e:       # SimError, a deadlock report, the cycle limit
        err = str(e)
    return Run(path, dev, err, lay, state(dev, extra))


def assert_same(reference: Run, *others: Run, unchecked: Collection[str] = ()) -> None:
    """Every run of ``others`` agrees with ``reference``: the error text, the warnings and
    the state (but for ``unchecked``: see :func:`assert_same_state`)."""
    assert others
    for run in others:
        what = f"between {reference.path} and {run.path}"
        assert reference.error == run.error, f"the errors differ {what}"
        assert reference.layout.warnings == run.layout.warnings, f"the warnings differ {what}"
        assert_same_state(reference.state, run.state, what, unchecked)


def options_for(arch: str, fabric_dims: tuple[int, int],
                fabric_offsets: tuple[int, int] = (4, 1)) -> CompileOptions:
    """The compile options of these tests: memcpy, one channel."""
    return CompileOptions(arch=arch, fabric_dims=fabric_dims, fabric_offsets=fabric_offsets,
                          memcpy=True, channels=1)


def launch_both(tmp: Path, arch: str, files: dict[str, str], fabric_dims: tuple[int, int],
                fabric_offsets: tuple[int, int] = (4, 1), *, layout: str = "layout.csl",
                paths: Iterable[tuple[str, str]] = BOTH, **launch_options: Any) -> list[Run]:
    """Write ``files`` ({name: text}) into ``tmp`` and :func:`launch` ``layout`` on each of
    ``paths``; the runs, in the order of ``paths`` (the reference first)."""
    for name, text in files.items():
        (tmp / name).write_text(text)
    opts = options_for(arch, fabric_dims, fabric_offsets)
    return [launch(tmp / layout, opts, p, **launch_options) for p in paths]


def compare_both(tmp: Path, arch: str, files: dict[str, str], fabric_dims: tuple[int, int],
                 fabric_offsets: tuple[int, int] = (4, 1), *, unchecked: Collection[str] = (),
                 **launch_options: Any) -> Run:
    """:func:`launch_both`, then :func:`assert_same`; the last run (the compiled engine's)."""
    runs = launch_both(tmp, arch, files, fabric_dims, fabric_offsets, **launch_options)
    assert_same(*runs, unchecked=unchecked)
    return runs[-1]


def write_one_pe(tmp: Path, decls: str = "", body: str = "",
                 files: dict[str, str] | None = None, pe_text: str | None = None) -> Path:
    """Write the one-PE template program (``decls`` at the top level, ``body`` in ``run``;
    ``pe_text`` replaces the whole PE) and ``files`` into ``tmp``; the layout's path."""
    pe = pe_text if pe_text is not None else PE.format(decls=decls, body=body)
    for name, text in {"layout.csl": ONE_PE_LAYOUT, "pe.csl": pe, **(files or {})}.items():
        (tmp / name).write_text(text)
    return tmp / "layout.csl"


def compile_one_pe(tmp: Path, decls: str = "", body: str = "", arch: str = "wse3") -> Layout:
    """Compile the one-PE template program (raises the ``CslError`` of a mistake)."""
    return elaborate(write_one_pe(tmp, decls, body), options_for(arch, ONE_PE_DIMS))


def run_both(tmp: Path, arch: str, decls: str, body: str,
             files: dict[str, str] | None = None, keep: list | None = None,
             pe_text: str | None = None) -> tuple[np.ndarray, str | None, list[str]]:
    """:func:`compare_both` on the one-PE template (``decls`` at the top level, ``body`` in
    ``run``; ``pe_text`` replaces the whole PE). Returns ``out`` of the compiled run, the
    error (None: ran to the end) and the compile warnings; ``keep`` receives the two devices
    (python, compiled)."""
    write_one_pe(tmp, decls, body, files, pe_text)
    runs = launch_both(tmp, arch, {}, ONE_PE_DIMS)
    assert_same(*runs)
    if keep is not None:
        keep.extend(r.device for r in runs)
    eng = runs[-1]
    return eng.device.read_symbol(0, 0, "out").copy(), eng.error, eng.layout.warnings
