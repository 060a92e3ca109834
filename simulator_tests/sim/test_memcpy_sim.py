"""memcpy through SdkRuntime on the simulator: every order, element width and rectangle
shape lands in PE memory where the official examples' layout says, and comes back equal (on
both PE paths: the ``engine`` fixture)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from waferscale.host import MemcpyDataType, MemcpyOrder, SdkRuntime, compile
from waferscale.sim.device import session
from waferscale.sim.fabric import cpp_available
from waferscale.sim.memory import WORDS, MemoryError_, PEMemory

PROGRAM = Path(__file__).parent / "programs" / "buffers" / "layout.csl"
GRID = (3, 2)


@pytest.fixture(scope="module", autouse=True, params=["python", "compiled"])
def engine(request):
    """Every test of this module runs on both PE paths."""
    if request.param == "compiled" and not cpp_available():
        pytest.skip("waferscale._fabric is not built (the compiled engine is C++)")
    with session({"engine": request.param}):
        yield request.param


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("buffers") / "out"
    return compile(PROGRAM, arch="wse3", params={"W": GRID[0], "H": GRID[1]}, memcpy=True,
                   channels=1, output=out)


def host_index(h: int, w: int, l: int, order: MemcpyOrder) -> np.ndarray:
    """idx[r, c, k] = position in the host array of element k of PE (c, r) of the ROI."""
    idx = np.empty((h, w, l), dtype=np.int64)
    for r in range(h):
        for c in range(w):
            for k in range(l):
                idx[r, c, k] = ((r * w + c) * l + k) if order == MemcpyOrder.ROW_MAJOR \
                    else ((k * w + c) * h + r)      # COL_MAJOR: h fastest (official helpers)
    return idx


@pytest.mark.parametrize("order", list(MemcpyOrder))
@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("roi", [(0, 0, 3, 2), (1, 0, 2, 2), (0, 1, 3, 1)])
def test_fixed_rois(out_dir, order, bits, roi):
    x, y, w, h = roi
    check(out_dir, x, y, w, h, 3, order, bits, seed=w * 10 + h)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(x=st.integers(0, GRID[0] - 1), y=st.integers(0, GRID[1] - 1), data=st.data(),
       l=st.integers(1, 16), order=st.sampled_from(list(MemcpyOrder)),
       bits=st.sampled_from([16, 32]), seed=st.integers(0, 2**16))
def test_round_trip_and_placement(out_dir, x, y, data, l, order, bits, seed):
    w = data.draw(st.integers(1, GRID[0] - x))
    h = data.draw(st.integers(1, GRID[1] - y))
    check(out_dir, x, y, w, h, l, order, bits, seed)


def check(out_dir, x, y, w, h, l, order, bits, seed) -> None:
    rng = np.random.default_rng(seed)
    if bits == 32:
        src = rng.standard_normal(w * h * l).astype(np.float32)
        dt, name = MemcpyDataType.MEMCPY_32BIT, "b32"
    else:
        src = rng.integers(0, 1 << 16, w * h * l).astype(np.uint32)   # values in the low half
        dt, name = MemcpyDataType.MEMCPY_16BIT, "b16"
    rt = SdkRuntime(str(out_dir))
    sym = rt.get_id(name)
    rt.load()
    rt.run()
    rt.memcpy_h2d(sym, src, x, y, w, h, l, streaming=False, order=order, data_type=dt,
                  nonblock=False)
    back = np.zeros_like(src)
    rt.memcpy_d2h(back, sym, x, y, w, h, l, streaming=False, order=order, data_type=dt,
                  nonblock=False)
    assert np.array_equal(back, src)
    idx = host_index(h, w, l, order)
    for r in range(h):
        for c in range(w):
            got = rt.read_symbol(x + c, y + r, name, dtype=np.float32 if bits == 32
                                 else np.uint16)
            want = src[idx[r, c]]
            assert np.array_equal(np.asarray(got)[:l].astype(want.dtype), want)
    rt.stop()


@settings(max_examples=200, deadline=None)
@given(addr=st.one_of(st.integers(-3, 40), st.integers(WORDS - 60, WORDS + 3)),
       nwords=st.sampled_from([1, 2]), n=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_block_copies_equal_word_by_word_copies(addr, nwords, n, seed):
    """PEMemory.store_block / load_block (host copies) against a loop of store_bits /
    load_bits: same words written, same values read, same error at the same element."""
    bits = np.random.default_rng(seed).integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    mask = 0xFFFF if nwords == 1 else 0xFFFFFFFF
    loop, block = PEMemory(), PEMemory()
    errs = []
    for store in (lambda: [loop.store_bits(addr + k * nwords, nwords, int(w) & mask)
                           for k, w in enumerate(bits)],
                  lambda: block.store_block(addr, nwords, bits)):
        try:
            store()
            errs.append(None)
        except MemoryError_ as e:
            errs.append(str(e))
    assert errs[0] == errs[1] and np.array_equal(loop.words, block.words)
    try:
        expect = [loop.load_bits(addr + k * nwords, nwords) for k in range(n)]
    except MemoryError_ as e:
        with pytest.raises(MemoryError_, match=re.escape(str(e))):
            block.load_block(addr, nwords, n)
    else:
        assert block.load_block(addr, nwords, n).tolist() == expect
