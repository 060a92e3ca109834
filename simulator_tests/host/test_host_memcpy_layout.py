"""Host-array layouts of memcpy (waferscale.host.memcpy_layout) against an independent
formulation: the logical tensor A[h][w][l] built element by element with explicit loops and
index formulas taken from the official examples, never with the reshape the implementation
uses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from waferscale.host.device import DeviceError
from waferscale.host.memcpy_layout import (
    MemcpyDataType,
    MemcpyOrder,
    check_roi,
    colbcast_blocks,
    d2h_fill,
    d2h_words,
    h2d_blocks,
    host_words,
    roi_pes,
    rowbcast_blocks,
)

ROW, COL = MemcpyOrder.ROW_MAJOR, MemcpyOrder.COL_MAJOR
B32, B16 = MemcpyDataType.MEMCPY_32BIT, MemcpyDataType.MEMCPY_16BIT


def flatten_loops(tensor: np.ndarray, order: MemcpyOrder) -> np.ndarray:
    """The host 1-D array of a (h, w, l) tensor, built by loops.

    ROW_MAJOR: for h: for w: for l (gemv tutorials). COL_MAJOR: for l: for w: for h (the
    official bandwidth-test helper hwl_2_oned_colmajor)."""
    h, w, l = tensor.shape
    out = []
    if order == ROW:
        for r in range(h):
            for c in range(w):
                for k in range(l):
                    out.append(tensor[r, c, k])
    else:
        for k in range(l):
            for c in range(w):
                for r in range(h):
                    out.append(tensor[r, c, k])
    return np.array(out, dtype=tensor.dtype)


def expected_blocks(tensor: np.ndarray) -> dict[tuple[int, int], list[int]]:
    """Per ROI-relative PE (c, r): the l elements it holds."""
    h, w, _ = tensor.shape
    return {(c, r): [int(v) for v in tensor[r, c, :]] for r in range(h) for c in range(w)}


def as_dict(blocks: np.ndarray, w: int, h: int) -> dict[tuple[int, int], list[int]]:
    pes = roi_pes(0, 0, w, h)
    return {pe: [int(v) for v in blocks[i]] for i, pe in enumerate(pes)}


rois = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5))
orders = st.sampled_from([ROW, COL])


@settings(max_examples=60, deadline=None)
@given(rois, orders, st.sampled_from([B32, B16]), st.randoms(use_true_random=False))
def test_h2d_matches_loop_formulation_and_round_trips(roi, order, dt, rnd) -> None:
    w, h, l = roi
    words = np.array([rnd.getrandbits(32) for _ in range(h * w * l)], dtype=np.uint32)
    tensor = words.reshape(h, w, l)          # only to hold distinct values per (r, c, k)
    src = flatten_loops(tensor, order)
    blocks = h2d_blocks(src, w, h, l, order=order, data_type=dt)
    assert blocks.shape == (h * w, l) and blocks.dtype == np.uint32
    want = expected_blocks(tensor & np.uint32(0xFFFF) if dt == B16 else tensor)
    assert as_dict(blocks, w, h) == want
    back = d2h_words(blocks, w, h, l, order=order, data_type=dt)
    expect_back = src & np.uint32(0xFFFF) if dt == B16 else src
    np.testing.assert_array_equal(back, expect_back)


@settings(max_examples=40, deadline=None)
@given(rois, orders)
def test_index_formulas(roi, order) -> None:
    """flat = (r*w + c)*l + k for ROW_MAJOR; (k*w + c)*h + r for COL_MAJOR."""
    w, h, l = roi
    src = np.arange(w * h * l, dtype=np.uint32)
    blocks = h2d_blocks(src, w, h, l, order=order, data_type=B32)
    for r in range(h):
        for c in range(w):
            for k in range(l):
                flat = (r * w + c) * l + k if order == ROW else (k * w + c) * h + r
                assert blocks[r * w + c, k] == flat


def test_col_major_small_example_by_hand() -> None:
    # w=2, h=2, l=2: COL_MAJOR is h fastest, then w, then l.
    src = np.array([0, 1, 2, 3, 4, 5, 6, 7], dtype=np.uint32)
    blocks = h2d_blocks(src, 2, 2, 2, order=COL, data_type=B32)
    # PE (0,0): k=0 -> 0, k=1 -> 4; PE (0,1) [row 1, col 0]: 1, 5; PE (1,0): 2, 6; PE (1,1): 3, 7
    assert blocks.tolist() == [[0, 4], [2, 6], [1, 5], [3, 7]]
    assert roi_pes(0, 0, 2, 2) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    row = h2d_blocks(src, 2, 2, 2, order=ROW, data_type=B32)
    assert row.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_h2d_blocks_never_alias_the_source() -> None:
    src = np.arange(6, dtype=np.uint32)
    made = [h2d_blocks(src, 3, 2, 1, order=ROW, data_type=B32, streaming=True),
            h2d_blocks(src, 3, 2, 1, order=ROW, data_type=B32),
            rowbcast_blocks(src[:2], 3, 2, 1, order=ROW, data_type=B32, streaming=True),
            colbcast_blocks(src[:3], 3, 2, 1, order=ROW, data_type=B32, streaming=True)]
    for blocks in made:
        assert not np.shares_memory(blocks, src)


def test_device_data_must_be_uint32() -> None:
    with pytest.raises(DeviceError, match="returned int64 data"):
        d2h_words(np.zeros((1, 1), np.int64), 1, 1, 1, order=ROW, data_type=B32)


def test_float_bit_patterns_survive() -> None:
    words = np.array([0x7FC12345, 0xFF800001, 0x00000001, 0x80000000], dtype=np.uint32)
    src = words.view(np.float32)
    blocks = h2d_blocks(src, 2, 1, 2, order=ROW, data_type=B32)
    assert blocks.reshape(-1).tolist() == words.tolist()
    dest = np.zeros(4, np.float32)
    d2h_fill(dest, blocks, 2, 1, 2, order=ROW, data_type=B32)
    assert dest.view(np.uint32).tolist() == words.tolist()


def test_sixteen_bit_copy_masks_streaming_keeps_words() -> None:
    src = np.array([0x0001_3C00, 0xFFFF_4000], dtype=np.uint32)
    copy = h2d_blocks(src, 1, 1, 2, order=ROW, data_type=B16)
    stream = h2d_blocks(src, 1, 1, 2, order=ROW, data_type=B16, streaming=True)
    assert copy.tolist() == [[0x3C00, 0x4000]]
    assert stream.tolist() == [[0x0001_3C00, 0xFFFF_4000]]
    dest = np.full(2, 0xFFFFFFFF, np.uint32)
    d2h_fill(dest, np.array([[0xABCD_1234, 0x0000_5678]], np.uint32), 1, 1, 2, order=ROW,
             data_type=B16)
    assert dest.tolist() == [0x1234, 0x5678]


@settings(max_examples=40, deadline=None)
@given(rois, orders)
def test_rowbcast_replicates_column_across_width(roi, order) -> None:
    """Official row-col-broadcast: B = A[py:py+ph, 0:1, :] (h x 1 x l); ROW: B.ravel(),
    COL: B.T.ravel(); every PE of ROI row r gets B[r]."""
    w, h, l = roi
    b = np.arange(1, h * l + 1, dtype=np.uint32).reshape(h, 1, l)
    src = b.ravel() if order == ROW else b.T.ravel()
    blocks = rowbcast_blocks(src, w, h, l, order=order, data_type=B32)
    got = as_dict(blocks, w, h)
    for r in range(h):
        for c in range(w):
            assert got[(c, r)] == [int(v) for v in b[r, 0, :]]


@settings(max_examples=40, deadline=None)
@given(rois, orders)
def test_colbcast_replicates_row_down_height(roi, order) -> None:
    """B = A[0:1, px:px+pw, :] (1 x w x l); every PE of ROI column c gets B[0, c]."""
    w, h, l = roi
    b = np.arange(1, w * l + 1, dtype=np.uint32).reshape(1, w, l)
    src = b.ravel() if order == ROW else b.T.ravel()
    blocks = colbcast_blocks(src, w, h, l, order=order, data_type=B32)
    got = as_dict(blocks, w, h)
    for r in range(h):
        for c in range(w):
            assert got[(c, r)] == [int(v) for v in b[0, c, :]]


def test_broadcast_sixteen_bit_masks() -> None:
    src = np.array([0x0005_0001, 0x0007_0002], np.uint32)
    assert rowbcast_blocks(src, 3, 2, 1, order=ROW, data_type=B16).tolist() == [
        [1], [1], [1], [2], [2], [2]]
    assert colbcast_blocks(src, 2, 2, 1, order=ROW, data_type=B16).tolist() == [
        [1], [2], [1], [2]]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(1, 7), st.data())
def test_check_roi_accepts_exactly_the_subrectangles(width, height, data) -> None:
    x = data.draw(st.integers(-1, width))
    y = data.draw(st.integers(-1, height))
    w = data.draw(st.integers(0, width + 1))
    h = data.draw(st.integers(0, height + 1))
    inside = x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= width and y + h <= height
    if inside:
        assert check_roi(x, y, w, h, 1, width, height) == (x, y, w, h, 1)
        pes = roi_pes(x, y, w, h)
        assert len(pes) == w * h and all(0 <= px < width and 0 <= py < height
                                          for px, py in pes)
    else:
        with pytest.raises(DeviceError):
            check_roi(x, y, w, h, 1, width, height)


@pytest.mark.parametrize("args, match", [
    ((0, 0, 2, 1, 0), "elements per PE must be at least 1"),
    ((0, 0, 0, 1, 1), "positive size"),
    ((-1, 0, 1, 1, 1), "inside the core rectangle"),
    ((3, 0, 2, 1, 1), "columns 3..4"),
    ((0, 2, 1, 2, 1), "rows 2..3"),
    ((1.0, 0, 1, 1, 1), "x must be an integer"),
    ((True, 0, 1, 1, 1), "got a bool"),
    ((0, 0, 1, 1, "4"), "elements per PE must be an integer"),
])
def test_check_roi_errors(args, match) -> None:
    with pytest.raises(DeviceError, match=match):
        check_roi(*args, 4, 3)


def test_numpy_integers_are_accepted() -> None:
    assert check_roi(np.int64(1), np.int16(0), np.uint8(2), 1, np.int32(3), 4, 3) == (
        1, 0, 2, 1, 3)


@pytest.mark.parametrize("arr, match", [
    ([1, 2, 3, 4], "must be a numpy array"),
    (np.zeros(4, np.float64), "dtype float64"),
    (np.zeros(4, np.float16), "low half"),
    (np.zeros(4, np.bool_), "dtype bool"),
    (np.zeros(3, np.float32), "has 3 elements but the memcpy moves 4"),
])
def test_source_array_errors(arr, match) -> None:
    with pytest.raises(DeviceError, match=match):
        h2d_blocks(arr, 2, 2, 1, order=ROW, data_type=B32)


def test_sizes_of_broadcast_sources_are_explained() -> None:
    with pytest.raises(DeviceError, match=r"rowbcast sends one column: h\*l = 2\*3"):
        rowbcast_blocks(np.zeros(12, np.uint32), 2, 2, 3, order=ROW, data_type=B32)
    with pytest.raises(DeviceError, match=r"colbcast sends one row: w\*l = 4\*1"):
        colbcast_blocks(np.zeros(3, np.uint32), 4, 2, 1, order=ROW, data_type=B32)


def test_multidimensional_source_is_read_in_c_order() -> None:
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(host_words(a, 6), np.arange(6, dtype=np.uint32))
    t = a.T                                   # non-contiguous: still C order of its shape
    np.testing.assert_array_equal(host_words(t, 6), t.ravel().view(np.uint32))


def test_destination_errors() -> None:
    blocks = np.zeros((2, 2), np.uint32)
    with pytest.raises(DeviceError, match="read-only"):
        ro = np.zeros(4, np.float32)
        ro.flags.writeable = False
        d2h_fill(ro, blocks, 2, 1, 2, order=ROW, data_type=B32)
    with pytest.raises(DeviceError, match="not C-contiguous"):
        d2h_fill(np.zeros(8, np.float32)[::2], blocks, 2, 1, 2, order=ROW, data_type=B32)
    with pytest.raises(DeviceError, match="has 5 elements"):
        d2h_fill(np.zeros(5, np.float32), blocks, 2, 1, 2, order=ROW, data_type=B32)
    with pytest.raises(DeviceError, match=r"shape \(1, 2\), expected \(2, 2\)"):
        d2h_words(np.zeros((1, 2), np.uint32), 2, 1, 2, order=ROW, data_type=B32)


def test_fill_is_in_place_for_any_four_byte_dtype() -> None:
    blocks = np.array([[1, 2], [3, 0xFFFFFFFF]], np.uint32)
    for dt in (np.uint32, np.int32, np.float32):
        dest = np.zeros((2, 2), dt)           # 2-D C-contiguous destinations are fine too
        d2h_fill(dest, blocks, 2, 1, 2, order=ROW, data_type=B32)
        assert dest.reshape(-1).view(np.uint32).tolist() == [1, 2, 3, 0xFFFFFFFF]


@pytest.mark.parametrize("kw, match", [
    ({"order": 2, "data_type": B32}, "Illegal order option"),
    ({"order": "ROW_MAJOR", "data_type": B32}, "Illegal order option"),
    ({"order": ROW, "data_type": 7}, "Illegal data type option"),
    ({"order": ROW, "data_type": True}, "Illegal data type option"),
])
def test_enum_errors(kw, match) -> None:
    with pytest.raises(DeviceError, match=match):
        h2d_blocks(np.zeros(1, np.uint32), 1, 1, 1, **kw)


def test_enums_have_the_sdk_values() -> None:
    assert (MemcpyDataType.MEMCPY_32BIT, MemcpyDataType.MEMCPY_16BIT) == (0, 1)
    assert (MemcpyOrder.ROW_MAJOR, MemcpyOrder.COL_MAJOR) == (0, 1)
    # Plain ints with the SDK's values are accepted like the enum members.
    assert h2d_blocks(np.arange(2, dtype=np.uint32), 2, 1, 1, order=1, data_type=0).tolist() == [
        [0], [1]]
