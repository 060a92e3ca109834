"""DSD operands at run time: resolving descriptors and moving elements one at a time.

A DSD operation is executed element by element in order, reading its sources and writing its
destination at each step, so zero-stride accumulators (``|i|{N} -> acc[0]``) and overlapping
operands behave as on hardware (csl-language.md §11.1) instead of as a snapshot-vectorized
NumPy expression.

Operand kinds after resolution:

``MemOperand``   word addresses of each element + element type (mem1d, mem4d, pointers)
``FabIn``        pop wavelets from an input queue (stalls while it is empty)
``FabOut``       push wavelets to an output queue on a color (stalls while it is full)
``FifoOperand``  a FIFO (@allocate_fifo): push at the tail / pop from the head of a circular
                 buffer, waiting while it is full / empty
``Scalar``       the same value for every element
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeGuard

import numpy as np

from ..lang import types as T
from ..lang.builtins import dsr_load_problem
from ..lang.values import DsdVal, DsrVal, TensorAccessVal, Val, round_float
from .memory import decode, encode, words_of
from .engine_abi import message


@dataclass
class MemOperand:
    addrs: list[int]
    elem: T.Type                 # a pointer's pointee, or a memory DSD's element type
    pointer: bool = False        # a `*T` operand: one element, rewritten every step
    index_offset: bool = False   # `.wavelet_index_offset = true`: `.index` shifts the base
    # A DSD resolved without its bounds check (resolve(check=False)): its base address and
    # kind, for check_first once the op's length is known.
    base: int | None = None
    kind: str = ""

    @property
    def length(self) -> int:
        return len(self.addrs)


@dataclass
class FifoOperand:
    """A FIFO (@allocate_fifo): a circular buffer of ``cap`` elements at word ``base``. An op
    writing it pushes at the tail and waits while it is full; an op reading it pops from the
    head and waits while it is empty. It has no length of its own (op_length). The state
    (head, count) is per PE and buffer (fifo_state); the FIFO starts empty."""
    base: int
    cap: int
    elem: T.Type


def fifo_state(pe, base: int) -> list[int]:
    """[head, count] of the FIFO at word ``base`` of ``pe`` (created empty)."""
    if pe.fifos is None:
        pe.fifos = {}
    return pe.fifos.setdefault(base, [0, 0])


@dataclass
class FabIn:
    queue: int
    length: int
    ut: int = 0                  # the microthread ID the DSD selects (its .input_queue)


@dataclass
class FabOut:
    queue: int
    color: int
    length: int
    ut: int = 0                  # the microthread ID the DSD selects (its .output_queue)
    index: int | None = None     # upper 16 bits of each wavelet (`.index` / wavelet_index_offset)
    ctrl: bool = False           # `.control = true`: control wavelets (docs/fabric-model.md §9)


@dataclass
class Scalar:
    value: Val
    length: int | None = None


def _int(v) -> int:
    return v.v if isinstance(v, Val) else int(v)


@dataclass
class Descriptor:
    """A DSD value with its fields read and its modifiers applied, before any address is
    computed: what :func:`resolve` turns into an operand (and sim/lower.py into the compiled
    engine's DSD record)."""
    dsd_kind: str                     # mem1d_dsd | mem4d_dsd | fabin_dsd | fabout_dsd
    length: int = 0                   # fabric DSDs: wavelets
    queue: int = 0
    color: int = 0                    # fabout: the color its wavelets carry
    ut: int = 0                       # fabric DSDs: the microthread ID they select
    base: int = 0                     # memory DSDs: word address of the base variable
    elem: T.Type | None = None
    offset: int = 0                   # elements
    strides: list[int] = field(default_factory=list)
    extents: list[int] = field(default_factory=list)
    index_offset: bool = False        # `.wavelet_index_offset = true`
    control: bool = False             # fabout: `.control = true`


def describe(pe, p: DsdVal, node) -> Descriptor:
    """Read a DSD's fields and apply its modifiers on ``pe``."""
    f = p.fields
    if p.kind in ("fabin_dsd", "fabout_dsd"):
        extent = _int(f.get("extent", Val(T.U16, 0)))
        for name, args in p.mods:
            if name == "length":
                extent = _int(args[0])
        if p.kind == "fabin_dsd":
            if pe.sim.arch == "wse2" and "fabric_color" in f:
                # WSE-2 reads a fabin from its color's queue (.input_queue only picks the
                # microthread there).
                q = pe.sim.wse2_queue(_int(f["fabric_color"]), pe)
            elif "input_queue" in f:
                q = _int(f["input_queue"])
            else:
                q = pe.sim.wse2_queue(_int(f["fabric_color"]), pe)
            ut = _int(f["input_queue"]) if "input_queue" in f else q
            return Descriptor(p.kind, length=extent, queue=q, ut=ut)
        oq = _int(f["output_queue"]) if "output_queue" in f else 0
        if "fabric_color" in f:
            color = _int(f["fabric_color"])
        else:
            color = pe.sim.output_queue_color(pe, oq, node)
        return Descriptor(p.kind, length=extent, queue=oq, color=color, ut=oq,
                          control=_flag(f, "control"))
    # Memory DSDs.
    if "tensor_access" in f:
        ta: TensorAccessVal = f["tensor_access"].v
        base = pe.address_of(ta.base)
        elem = ta.base.type.elem if isinstance(ta.base.type, T.ArrayT) else ta.base.type
        offset, strides, extents = ta.offset, list(ta.strides), list(ta.extents)
    else:
        bv = f["base_address"]
        if isinstance(bv.type, T.PointerT):
            elem = base_elem(bv.type)
            base = bv.v if isinstance(bv.v, int) else pe.interp.materialize(bv, node).v
        else:
            raise pe.error(f".base_address must be a pointer, found '{bv.type}'", node)
        offset = _int(f.get("offset", Val(T.I16, 0)))
        strides = [_int(f.get("stride", Val(T.I16, 1)))] if p.kind == "mem1d_dsd" else \
            [_int(s) for s in f["stride"].v]
        extents = [_int(f.get("extent", Val(T.U16, 0)))] if p.kind == "mem1d_dsd" else \
            [_int(s) for s in f["extent"].v]
    for name, args in p.mods:
        if name == "increment_offset":
            offset += _int(args[0])
        elif name == "length":
            extents = [_int(args[0])]
        elif name == "stride":
            strides = [_int(args[0])]
        elif name == "base_addr":
            nb = args[0]
            if isinstance(nb.type, T.PointerT):
                base = nb.v if isinstance(nb.v, int) else pe.interp.materialize(nb, node).v
                # The DSD now walks the pointee's elements (a "dummy" DSD over a [1]i16
                # re-pointed at a [*]f32 addresses f32 elements).
                elem = base_elem(nb.type)
            else:
                raise pe.error("@set_dsd_base_addr needs a pointer or array address", node)
            offset = 0
    return Descriptor(p.kind, base=base, elem=elem, offset=offset, strides=strides,
                      extents=extents, index_offset=_flag(f, "wavelet_index_offset"))


def base_elem(t: T.PointerT) -> T.Type:
    """The element type a memory DSD based at a pointer of type ``t`` walks."""
    return t.elem.elem if isinstance(t.elem, T.ArrayT) else t.elem


MAX_EXTENT = 0xFFFF
"""A DSD's extent field is a u16 (csl-language.md §4, source [DSD] /csl/language/dsds)."""
MAX_DSD_ELEMENTS = 1 << 20
"""Simulator limit on the elements of one mem4d DSD (the product of its u16 extents), so
resolving it never allocates more than a few MB (docs/simulator.md)."""


MAX_REACH = 1 << 24
"""An offset or stride beyond this many elements cannot address a 48 KB PE memory
(sdk-runtime-hardware.md §3.3); rejecting it keeps address arithmetic inside 32 bits on the
compiled engine, so both paths report the same error."""


def check_reach(pe, kind: str, offset: int, strides: list[int], node) -> None:
    """A memory DSD's offset and strides (after its modifiers) against MAX_REACH; the
    compiled engine's resolve (bindings/pe_engine.hpp) raises the same error."""
    for what, n in [("offset", offset)] + [("stride", s) for s in strides]:
        if abs(n) > MAX_REACH:
            raise pe.error(f"{kind} {what} {n} reaches beyond the PE's memory", node)


def check_extents(pe, kind: str, extents: list[int], node) -> None:
    """Extents of a DSD about to be used by an op: each fits the u16 field and a mem4d's
    element count stays under MAX_DSD_ELEMENTS. bindings/pe_engine.hpp (resolve) raises the
    same errors on the compiled path."""
    total = 1
    for n in extents:
        if not 0 <= n <= MAX_EXTENT:
            raise pe.error(f"{kind} extent {n} does not fit the DSD's u16 extent field "
                           f"(0..{MAX_EXTENT})", node)
        total *= n
    if total > MAX_DSD_ELEMENTS:
        raise pe.error(f"{kind} has {total} elements, more than the simulator's limit of "
                       f"{MAX_DSD_ELEMENTS} per DSD", node)


def op_length(ops: list) -> int | None:
    """The length of a DSD operation over ``ops`` (destination first): that of its first
    operand with a length (a memory DSD, not a ``*T`` pointer, or a fabric DSD), except
    that the first source with a length gives it before the destination when the
    destination is a fabout DSD or that source is a fabin DSD.

    The hardware's rule, as Cerebras' own allreduce library states it in a comment
    (benchmark-libs/allreduce/pe.csl): src0's length if non-zero, else src1's, else the
    destination's. The SDK's examples send a whole memory vector through a fabout DSD of
    ``.extent = 1`` (topic-13, game-of-life) and receive a fabin DSD's extent into a longer
    buffer (topic-16: ``@mov32(dest of 15, fabin of extent 2)`` takes 2 wavelets). Between a
    memory destination and a memory source the destination's length is kept: which CSL
    operand is src0 or src1 is not documented (doc-gap), and our kernels rely on a source
    DSD that is longer than the op. None: no operand has a length."""
    sized = [o for o in ops if isinstance(o, (FabIn, FabOut)) or
             (isinstance(o, MemOperand) and not o.pointer)]
    if not sized:
        return None
    srcs = [o for o in sized if o is not ops[0]]
    if srcs and (isinstance(ops[0], FabOut) or isinstance(srcs[0], FabIn)):
        return srcs[0].length
    return sized[0].length


def check_first(pe, op, n: int, node) -> None:
    """The bounds check of a memory operand resolved with ``check=False``, over the first
    ``n`` elements only: a source DSD longer than the op is not out of bounds for the
    elements the op never touches."""
    if isinstance(op, MemOperand) and op.base is not None:
        pe.check_access(op.addrs[:n], op.elem, node, op.kind, op.base)
        op.base = None


def resolve(pe, v: Val, node,
            check: bool = True) -> MemOperand | FabIn | FabOut | FifoOperand | Scalar:
    """Turn a DSD / pointer / scalar Val into an operand (see module docstring). With
    ``check=False`` a memory DSD's bounds are checked later, by check_first."""
    p = v.v
    if isinstance(v.type, T.PointerT) and not v.type.many:
        return MemOperand([p], v.type.elem, pointer=True)
    if isinstance(p, DsrVal):
        held = dsr_dsd(pe, p, node)
        return resolve(pe, Val(T.NAMED_TYPES.get(held.kind, T.NAMED_TYPES["fifo_handle"]),
                               held), node, check)
    if not isinstance(p, DsdVal):
        return Scalar(v)
    if p.kind == "fifo":
        gv = p.fields["buffer"].v.var
        return FifoOperand(pe.address_of(gv), gv.type.count, gv.type.elem)
    d = describe(pe, p, node)
    check_extents(pe, d.dsd_kind, d.extents if d.extents else [d.length], node)
    if p.kind == "fabin_dsd":
        return FabIn(d.queue, d.length, d.ut)
    if p.kind == "fabout_dsd":
        return FabOut(d.queue, d.color, d.length, d.ut, ctrl=d.control)
    base, elem, offset, strides, extents = d.base, d.elem, d.offset, d.strides, d.extents
    assert elem is not None     # describe sets it for every memory DSD
    check_reach(pe, d.dsd_kind, offset, strides[:len(extents)], node)
    ew = words_of(elem)
    if len(extents) == 1:      # mem1d (the common case): one arithmetic progression
        addrs = (base + (offset + np.arange(extents[0], dtype=np.int64) * strides[0]) * ew
                 ).tolist()
        if check:
            pe.check_access(addrs, elem, node, p.kind, base)
        return MemOperand(addrs, elem, index_offset=d.index_offset,
                          base=None if check else base, kind=p.kind)
    addrs = []
    # mem4d iteration: innermost-first extents; stride k applies when loop k advances.
    n_total = 1
    for e in extents:
        n_total *= e
    pos = offset
    counters = [0] * len(extents)
    for _ in range(n_total):
        addrs.append(base + pos * ew)
        k = 0
        while k < len(extents):
            counters[k] += 1
            if counters[k] < extents[k]:
                pos += strides[k]
                break
            counters[k] = 0
            k += 1
    if check:
        pe.check_access(addrs, elem, node, p.kind, base)
    return MemOperand(addrs, elem, index_offset=d.index_offset,
                      base=None if check else base, kind=p.kind)


# -- DSRs --------------------------------------------------------------------------------------
#
# A DSR (@get_dsr) holds the DSD that @load_to_dsr last loaded into it on this PE. An op given
# the DSR uses that DSD. With ``.save_address = true`` the DSR keeps the address where the
# op stopped: after an op over n elements, the next op through the DSR starts n strides
# further (WaferLLM's MeshGEMV walks the rows of its weight tile this way, one @fmach per
# @map element). Without it every op starts at the loaded DSD's first element. The state is
# per PE, kept across tasks and launches, like the registers. Only mem1d DSDs save an
# address here (a mem4d one is an error at its load); fabric DSDs have no address.
#
# A load may also carry the settings of the asynchronous operations that use the DSR:
# ``.async``, ``.activate``/``.unblock`` (the task the op's completion activates/unblocks)
# and ``.ut_id`` (its microthread). The SDK's spmv-hypersparse benchmark shows the meaning:
# ``@load_to_dsr(dest_dsr, fabout, .{ .async = true, .activate = t })`` then
# ``@mov32(dest_dsr, src1_dsr, .{ .async = true })`` replaces
# ``@mov32(fabout, mem, .{ .async = true, .activate = t })`` (its own comment); the docs'
# "Microthread IDs" page: an async op takes its ``.ut_id`` from its own options or from the
# ``@load_to_dsr`` of its DSR operands. An async op over such DSRs (builtins_rt.op_settings)
# completes with the union of its own and its DSRs' actions and runs on the microthread that
# they name. Doc-gaps, and "not supported by waferscale yet" errors rather than guesses: two
# different tasks for one action (or two microthreads) among the op and its DSRs, and a
# synchronous op over a DSR loaded with such settings. A top-level comptime block may load
# DSRs too (builtins._preload_dsr): the PE starts with them loaded (WaferLLM's MeshGEMM).

@dataclass
class DsrState:
    dsd: DsdVal
    save_address: bool
    asyn: bool = False               # .async = true
    activate: int | None = None      # task IDs
    unblock: int | None = None
    ut: int | None = None            # .ut_id

    @property
    def has_settings(self) -> bool:
        """Loaded with settings for asynchronous operations."""
        return self.asyn or self.activate is not None or self.unblock is not None \
            or self.ut is not None


def dsr_table(pe) -> dict[tuple[str, int], DsrState]:
    """The DSR contents of ``pe``, by (file, id)."""
    if pe.dsrs is None:
        pe.dsrs = {}
    return pe.dsrs


def load_dsr(pe, r: DsrVal, v: Val, save_address: bool, node,
             settings: tuple[bool, int | None, int | None, int | None] = (False, None, None,
                                                                            None)) -> None:
    """``@load_to_dsr(r, v, .{ .save_address, ... })`` on ``pe``: checks that the DSD fits
    the DSR's file (a destination DSR never holds a fabin, a src1 DSR never a fabout).
    ``settings``: (.async, .activate, .unblock, .ut_id) for the async ops using it."""
    p = v.v
    if not isinstance(p, DsdVal):
        raise pe.error(f"@load_to_dsr needs a DSD to load into {r}, found a value of type "
                       f"'{v.type}'", node)
    if p.kind == "fifo":
        raise pe.error("loading a FIFO into a DSR is not supported by waferscale yet", node)
    problem = dsr_load_problem(r, p.kind, save_address)
    if problem is not None:
        raise pe.error(problem, node)
    dsr_table(pe)[(r.file, r.id)] = DsrState(p, save_address and p.kind == "mem1d_dsd",
                                             *settings)


def dsr_dsd(pe, r: DsrVal, node) -> DsdVal:
    """The DSD that DSR ``r`` holds on ``pe`` (an error if none was loaded)."""
    st = dsr_table(pe).get((r.file, r.id))
    if st is None:
        raise pe.error(f"{r} is used before @load_to_dsr loaded a DSD into it", node)
    return st.dsd


def check_dsr_role(pe, v: Val, dest: bool, what: str, node) -> None:
    """A dsr_src1 is never a destination and a dsr_dest never a source (the docs' "DSR
    Types"); dsr_src0 may be either."""
    r = v.v
    if isinstance(r, DsrVal):
        if dest and r.file == "src1":
            raise pe.error(f"{what} destination is {r}; a dsr_src1 holds only sources", node)
        if not dest and r.file == "dest":
            raise pe.error(f"{what} source is {r}; a dsr_dest holds only destinations", node)


def advance_dsrs(pe, vals: list[Val], n: int, node) -> None:
    """After an op over ``n`` elements: each DSR operand loaded with ``.save_address = true``
    moves n strides on (once per DSR, even if the op names it twice)."""
    seen = set()
    for v in vals:
        r = v.v
        if not isinstance(r, DsrVal) or (r.file, r.id) in seen:
            continue
        seen.add((r.file, r.id))
        st = dsr_table(pe)[(r.file, r.id)]
        if not st.save_address:
            continue
        step = n * describe(pe, st.dsd, node).strides[0]
        mods = st.dsd.mods
        if mods and mods[-1][0] == "increment_offset":
            step += _int(mods[-1][1][0])
            mods = mods[:-1]
        st.dsd = DsdVal(st.dsd.kind, st.dsd.fields, mods + (("increment_offset", (step,)),))


def _flag(fields: dict, name: str) -> bool:
    v = fields.get(name)
    return bool(v.v) if isinstance(v, Val) else False


def apply_index(pe, op, index: int, node) -> None:
    """``.index = i`` on an op: a memory operand built with ``.wavelet_index_offset = true``
    starts ``i`` elements further (assumption: the docs say "a word offset", which is the same
    for 16-bit data; we read it as elements for 32-bit data too); a fabout carries ``i`` in
    the upper 16 bits of each wavelet."""
    if isinstance(op, MemOperand) and op.index_offset:
        ew = words_of(op.elem)
        base = op.addrs[0] if op.addrs else 0
        op.addrs = [a + index * ew for a in op.addrs]
        pe.check_access(op.addrs, op.elem, node, "DSD shifted by .index", base)
    elif isinstance(op, FabOut):
        op.index = index


def element_stride(op: MemOperand, ew: int) -> int | None:
    """The element stride of a memory operand whose addresses step evenly, else None (one
    element, a ``*T`` pointer, or an uneven mem4d walk)."""
    a = op.addrs
    if op.pointer or len(a) < 2:
        return None
    d = a[1] - a[0]
    if any(a[k + 1] - a[k] != d for k in range(1, len(a) - 1)):
        return None
    return d // ew if d % ew == 0 else d


def read_elem(pe, op, i: int, t: T.Type):
    """Element ``i`` of a source operand as a Python value of type ``t``."""
    if isinstance(op, Scalar):
        # A scalar source is used at the op's source type (an f32 register for @fmacs, say),
        # as the vectorized path does.
        v = op.value.v
        if isinstance(t, T.FloatT) and isinstance(v, (int, float)):
            return round_float(t, float(v))
        if isinstance(t, T.IntT) and isinstance(v, float):
            return int(v)
        return v
    if isinstance(op, MemOperand):
        return pe.mem.load(op.addrs[0 if op.pointer else i], t)
    if isinstance(op, FifoOperand):
        st = fifo_state(pe, op.base)
        pe.sync_time()
        pe.wait(lambda: st[1] > 0, message("wait_fifo_pop", base=op.base))
        value = pe.mem.load(op.base + st[0] * words_of(op.elem), t)
        st[0] = (st[0] + 1) % op.cap
        st[1] -= 1
        return value
    fab = pe.sim.fabric
    pe.sync_time()
    pe.wait(lambda: fab.iq_count(pe.x, pe.y, op.queue) > 0,
            message("wait_iq", queue=op.queue))
    if fab.ce_peek(pe.x, pe.y, op.queue)[1]:
        raise pe.error(f"a control wavelet heads input queue {op.queue} (control wavelets read "
                       "by a fabin DSD are not supported by waferscale yet)")
    payload, _ctrl = fab.ce_recv(pe.x, pe.y, op.queue)
    return decode(payload if words_of(t) == 2 else payload & 0xFFFF, t)


def write_elem(pe, op, i: int, t: T.Type, value) -> None:
    if isinstance(op, MemOperand):
        pe.mem.store(op.addrs[0 if op.pointer else i], t, value)
        return
    if isinstance(op, FifoOperand):
        st = fifo_state(pe, op.base)
        pe.sync_time()
        pe.wait(lambda: st[1] < op.cap, message("wait_fifo_push", base=op.base))
        pe.mem.store(op.base + ((st[0] + st[1]) % op.cap) * words_of(op.elem), t, value)
        st[1] += 1
        return
    fab = pe.sim.fabric
    bits = encode(value, t)
    if op.index is not None:
        bits = (bits & 0xFFFF) | ((op.index & 0xFFFF) << 16)
    pe.sync_time()
    pe.wait(lambda: fab.oq_free(pe.x, pe.y, op.queue) > 0,
            message("wait_oq", queue=op.queue, color=op.color))
    fab.ce_send(pe.x, pe.y, op.queue, op.color, bits, op.ctrl)


# -- vectorized execution -----------------------------------------------------------------------

_NP = {"f32": np.float32, "f16": np.float16}


def vectorizable(dest, srcs, n: int) -> TypeGuard[MemOperand]:
    """Whole-vector execution equals the element-by-element order exactly when every operand
    is memory or a scalar and each source either touches no address the destination writes,
    or reads each element exactly where the destination writes it (an in-place update)."""
    if not isinstance(dest, MemOperand) or dest.pointer or len(dest.addrs) < n:
        return False
    if len(set(dest.addrs[:n])) != n:
        return False            # the destination revisits an address: a reduction
    dset = set(dest.addrs[:n])
    for s in srcs:
        if isinstance(s, Scalar):
            continue
        if not isinstance(s, MemOperand) or s.pointer or len(s.addrs) < n:
            return False
        if s.addrs[:n] != dest.addrs[:n] and dset.intersection(s.addrs[:n]):
            return False
    return True


def _gather(pe, addrs: list[int], t: T.Type) -> np.ndarray:
    w = pe.mem.words
    a = np.asarray(addrs, dtype=np.int64)
    if words_of(t) == 2:
        bits = w[a].astype(np.uint32) | (w[a + 1].astype(np.uint32) << 16)
        return bits.view(np.float32) if t == T.F32 else bits.view(
            np.int32 if isinstance(t, T.IntT) and t.signed else np.uint32)
    bits = w[a]
    if t == T.F16:
        return bits.view(np.float16)
    return bits.view(np.int16) if isinstance(t, T.IntT) and t.signed else bits


def _scatter(pe, addrs: list[int], t: T.Type, values: np.ndarray) -> None:
    w = pe.mem.words
    a = np.asarray(addrs, dtype=np.int64)
    if words_of(t) == 2:
        bits = np.ascontiguousarray(values.astype(np.float32 if t == T.F32 else
                                                  values.dtype)).view(np.uint32)
        w[a] = (bits & 0xFFFF).astype(np.uint16)
        w[a + 1] = (bits >> 16).astype(np.uint16)
    elif t == T.F16:
        w[a] = np.ascontiguousarray(values.astype(np.float16)).view(np.uint16)
    else:
        w[a] = values.astype(np.int64).astype(np.uint16)


def run_vectorized(pe, op, dest: MemOperand, srcs: list, n: int) -> bool:
    """Execute a memory-only DSD op on whole vectors; False if the types are not handled."""
    if not all(isinstance(t, T.FloatT) and t.name in _NP or t in (T.U16, T.U32)
               for t in (op.dest, *op.srcs)):
        return False
    args = []
    for s, t in zip(srcs, op.srcs):
        if isinstance(s, Scalar):
            args.append(_NP[t.name](s.value.v) if isinstance(t, T.FloatT) else s.value.v)
        else:
            args.append(_gather(pe, s.addrs[:n], t))
    with np.errstate(all="ignore"):
        result = op.vector(*args)
    if isinstance(op.dest, T.FloatT):
        result = np.asarray(result, dtype=_NP[op.dest.name])
    _scatter(pe, dest.addrs[:n], op.dest, np.asarray(result))
    return True
