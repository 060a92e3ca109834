"""Memoised compile-time calls (Interp.call): a pure function called again with the same
plain arguments gives the same value without running its body, and everything observable is
as if it had run: the value, the branch count, the quota and depth errors, and every call of
a function that is not pure (prints, layout builtins, new struct types) still runs."""

from __future__ import annotations

import pytest

from waferscale.lang import comptime as C
from waferscale.lang.comptime import EvalOptions, Interp, instantiate_source
from waferscale.lang.errors import CslError

SRC = """
fn block_len(total: u16, parts: u16, i: u16) u16 {
  var n: u16 = total / parts;
  if (i < total % parts) { n += 1; }
  return n;
}
fn twice(i: u16) u16 { return block_len(100, 7, i) + block_len(100, 7, i); }
const r = blk: {
  var sum: u32 = 0;
  for (@range(u16, 300)) |k| {
    sum += @as(u32, twice(k % 7));
  }
  break :blk sum;
};
"""


def run(src: str, memo: bool, monkeypatch: pytest.MonkeyPatch, quota: int = 2_000_000,
        depth: int = 150) -> tuple[object, int, Interp]:
    monkeypatch.setattr(Interp, "memoize_calls", memo)
    ip, mod = instantiate_source(src, path="t.csl",
                                 options=EvalOptions(branch_quota=quota, max_depth=depth))
    v = ip.global_value(mod, "r", None)
    return v.v, ip.ctx.branches, ip


def test_same_value_and_branch_count(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = run(SRC, False, monkeypatch)
    memo = run(SRC, True, monkeypatch)
    assert memo[:2] == plain[:2] == (2 * sum(100 // 7 + (k % 7 < 100 % 7) for k in range(300)),
                                     plain[1])
    # 7 distinct arguments: twice and block_len ran 7 times each, not 300 and 600.
    entries = memo[2].ctx.calls
    assert len(entries) == 14
    assert C.pure_function(memo[2].ctx, next(iter(entries.values()))[0],
                           next(iter(entries.values()))[1])


def test_quota_error_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    branches = run(SRC, False, monkeypatch)[1]
    msgs = []
    for memo in (False, True):
        with pytest.raises(CslError) as ei:
            run(SRC, memo, monkeypatch, quota=branches - 50)
        msgs.append(ei.value.render())
    assert msgs[0] == msgs[1] and "exceeded" in msgs[0]


def test_depth_error_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    src = """
fn down(n: u16) u16 { if (n == 0) { return 0; } return down(n - 1) + 1; }
const a = down(5);
const r = down(7);
"""
    msgs = []
    for memo in (False, True):
        monkeypatch.setattr(Interp, "memoize_calls", memo)
        ip, mod = instantiate_source(src, path="t.csl", options=EvalOptions(max_depth=7))
        assert ip.global_value(mod, "a", None).v == 5
        with pytest.raises(CslError) as ei:
            ip.global_value(mod, "r", None)
        msgs.append(ei.value.render())
    assert msgs[0] == msgs[1] and "depth" in msgs[0]


def test_impure_calls_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    src = """
fn noisy(i: u16) u16 { @comptime_print("call"); return i; }
fn via(i: u16) u16 { return noisy(i); }
fn Pair(comptime T: type) type { return struct { a: T, b: T }; }
const r = via(1) + via(1) + noisy(1);
const same = @is_same_type(Pair(u16), Pair(u16));
"""
    monkeypatch.setattr(Interp, "memoize_calls", True)
    ip, mod = instantiate_source(src, path="t.csl")
    assert ip.global_value(mod, "r", None).v == 3
    assert [text for _, text in ip.ctx.prints] == ["call"] * 3
    # A function that declares a type makes a new one per call, as without the memo.
    monkeypatch.setattr(Interp, "memoize_calls", False)
    ip2, mod2 = instantiate_source(src, path="t.csl")
    assert ip.global_value(mod, "same", None).v == ip2.global_value(mod2, "same", None).v


def test_memo_is_per_module_instance_and_plain_arguments_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = """
param k: u16;
fn add(i: u16) u16 { return i + k; }
fn first(s: anytype) u16 { return s.a; }
const S = struct { a: u16 };
const r = add(1) + first(S{ .a = 4 }) + first(S{ .a = 5 });
"""
    monkeypatch.setattr(Interp, "memoize_calls", True)
    from waferscale.lang import types as T
    from waferscale.lang.values import Val
    for k in (10, 20):
        ip, mod = instantiate_source(src, path="t.csl", params={"k": Val(T.COMPTIME_INT, k)})
        assert ip.global_value(mod, "r", None).v == 1 + k + 9
