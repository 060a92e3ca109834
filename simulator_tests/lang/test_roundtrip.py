"""Round-trip properties of the parser and the pretty-printer on random trees:

- ``parse_expr(print_node(e)) == e`` and ``parse_source(print_module(m)) == m`` for every tree
  the parser can produce (``strategies`` builds only those);
- printing is idempotent on text: ``print(parse(print(t))) == print(t)``;
- literal spellings (``0xFF``, ``1_000``, ``0x1.8p3``, ``'\\x41'``) survive the trip;
- the same for whatever the parser makes of mutated real sources, and for the very long
  operator/postfix/else-if chains the parser builds without recursion.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import strategies
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from waferscale.lang import ast
from waferscale.lang.errors import CslError
from waferscale.lang.parser import parse_expr, parse_file, parse_source
from waferscale.lang.printer import print_module, print_node

RANDOM_TREES = settings(max_examples=300, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.data_too_large])

_LITERALS = (ast.IntLit, ast.FloatLit, ast.CharLit)


def same_tree(a: ast.Node, b: ast.Node, check_spelling: bool = True) -> str | None:
    """Iterative structural comparison (the parser accepts chains far deeper than the
    recursive dataclass ``==`` can follow). Compares exactly what ``==`` compares and, when
    ``check_spelling``, also the ``text`` of literals whose first tree has one. Returns None
    when equal, else a description of the first difference."""
    stack: list[tuple[object, object, str]] = [(a, b, "root")]
    while stack:
        x, y, where = stack.pop()
        if type(x) is not type(y):
            return f"{where}: {type(x).__name__} != {type(y).__name__}"
        if isinstance(x, list):
            assert isinstance(y, list)
            if len(x) != len(y):
                return f"{where}: {len(x)} items != {len(y)} items"
            stack.extend((p, q, f"{where}[{i}]") for i, (p, q) in enumerate(zip(x, y)))
        elif isinstance(x, ast.Node):
            if (check_spelling and isinstance(x, _LITERALS) and x.text is not None
                    and x.text != y.text):                              # type: ignore[union-attr]
                return f"{where}: spelling {x.text!r} != {y.text!r}"  # type: ignore[union-attr]
            for f in fields(x):
                if f.compare:
                    stack.append((getattr(x, f.name), getattr(y, f.name), f"{where}.{f.name}"))
        elif x != y:
            return f"{where}: {x!r} != {y!r}"
    return None


@RANDOM_TREES
@given(strategies.exprs())
def test_expression_roundtrip(e: ast.Expr) -> None:
    text = print_node(e)
    back = parse_expr(text)
    assert back == e, text
    assert same_tree(e, back) is None, text
    assert print_node(back) == text


@RANDOM_TREES
@given(strategies.modules())
def test_module_roundtrip(m: ast.Module) -> None:
    text = print_module(m)
    back = parse_source(text)
    assert back == m, text
    assert same_tree(m, back) is None, text


@settings(RANDOM_TREES, max_examples=150)
@given(strategies.stmts(strategies.MAX_DEPTH))
def test_statement_roundtrip(s: ast.Stmt) -> None:
    m = ast.Module([ast.FnDecl("f", [], ast.Ident("void"), ast.Block([s]))])
    text = print_module(m)
    assert parse_source(text) == m, text


@settings(RANDOM_TREES, max_examples=150)
@given(strategies.modules())
def test_printing_is_idempotent(m: ast.Module) -> None:
    text = print_module(m)
    assert print_module(parse_source(text)) == text


@settings(RANDOM_TREES, max_examples=200)
@given(strategies.mutated_sources())
def test_parsed_mutated_sources_roundtrip(text: str) -> None:
    # Trees taken from the parser itself (not from the generators): whatever a mutated real
    # file parses to must print and re-parse to the same tree.
    tree: ast.Module | None
    try:
        tree = parse_source(text)
    except CslError:
        tree = None
    assume(tree is not None)                # only a source that parses has a tree to print
    assert tree is not None
    printed = print_module(tree)
    back = parse_source(printed)
    assert same_tree(tree, back) is None, printed
    assert print_module(back) == printed


@pytest.mark.parametrize("name", sorted(strategies.SEED_SOURCES))
def test_seed_sources_roundtrip(name: str) -> None:
    original = parse_source(strategies.SEED_SOURCES[name], f"{name}.csl")
    text = print_module(original)
    back = parse_source(text, f"{name}.printed.csl")
    assert back == original
    assert same_tree(original, back) is None
    assert print_module(back) == text


REPO_KERNELS = sorted((Path(__file__).resolve().parents[2] / "csl").glob("**/*.csl"))


@pytest.mark.skipif(not REPO_KERNELS, reason="no kernels under csl/")
@pytest.mark.parametrize("path", REPO_KERNELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_repository_kernels_roundtrip(path: Path) -> None:
    original = parse_file(path)
    text = print_module(original)
    back = parse_source(text, f"{path}.printed")
    assert same_tree(original, back) is None
    assert print_module(back) == text


LONG_CHAINS = {
    "prefix operators": "!" * 3000 + "-" * 3000 + "x",
    "postfix chain": "a" + ".b[0]().*" * 2000,
    "binary chain": " + ".join(["a", "b * c"] * 2000),
    "mixed bitwise chain": "a" + " & b | c ^ d" * 1000,
    "pointer prefixes": "*const [*]" * 2000 + "T",
    "array prefixes": "[2]" * 3000 + "T",
    "else-if expression": " else ".join(f"if (c{i}) {i}" for i in range(3000)) + " else 0",
    "nested to the limit": "f(" * 90 + "a" + ")" * 90,
}


@pytest.mark.parametrize("name", sorted(LONG_CHAINS))
def test_long_chains_print_without_recursion(name: str) -> None:
    # The parser builds these chains iteratively, so their trees are far deeper than
    # Python's recursion limit; printing must still work and round-trip.
    tree = parse_expr(LONG_CHAINS[name])
    text = print_node(tree)
    back = parse_expr(text)
    assert same_tree(tree, back) is None
    assert print_node(back) == text


def test_long_else_if_statement_chain() -> None:
    chain = " else ".join(f"if (c{i}) x = {i}" for i in range(3000))
    m = parse_source(f"fn f() void {{\n  {chain};\n}}\n")
    text = print_module(m)
    back = parse_source(text)
    assert same_tree(m, back) is None
    assert print_module(back) == text


# Deep type expressions (issue 14): one wrapper per level, up to the parser's nesting limit.
_TYPE_WRAPPERS = {
    "if_else": ("if (c) ", " else u16"),        # an if-type whose then-branch nests
    "if_else_outer": ("if (c) u16 else ", ""),  # nesting in the else-branch
    "if_open": ("if (c) (", ")"),               # a then-branch with no else: parenthesized
    "ptr": ("*", ""),
    "many_ptr": ("[*]const ", ""),
    "array": ("[4]", ""),
    "fn_ret": ("fn(u16) ", ""),
    "paren": ("(", ")"),
}


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(sorted(_TYPE_WRAPPERS)), min_size=1, max_size=110),
       st.sampled_from(("var x: {} = 0;", "fn f(p: {}) void {{}}", "const s = struct {{ a: {} }};",
                        "var y: [2]{};", "fn g() {} {{}}")))
def test_deep_type_expressions_roundtrip(wrappers: list[str], decl: str) -> None:
    """Whatever deep type expression parses, its printed form parses to the same tree (99
    nested ``if (true)`` types used to print one parenthesis level too deep)."""
    head = "".join(_TYPE_WRAPPERS[w][0] for w in wrappers)
    tail = "".join(_TYPE_WRAPPERS[w][1] for w in reversed(wrappers))
    text = decl.format(head + "f32" + tail)
    try:
        tree = parse_source(text)
    except CslError:
        assume(False)           # too deep (or not a type position form) for the parser itself
        return
    printed = print_module(tree)
    back = parse_source(printed)
    assert same_tree(tree, back) is None, printed


@pytest.mark.parametrize("n", [50, 99])
def test_99_nested_if_types_print_within_the_nesting_limit(n: int) -> None:
    text = "var x: " + "if (true) " * n + "u16" + " else u16" * n + " = 0;\n"
    tree = parse_source(text)
    printed = print_module(tree)
    assert "(if" not in printed          # no parenthesis level added per if
    assert same_tree(tree, parse_source(printed)) is None
