"""Hand-written recursive-descent parser for CSL.

Entry points: :func:`parse_source`, :func:`parse_file` and :func:`parse_expr`. The result is
the tree of :mod:`waferscale.lang.ast`; every node carries the span of the source text it came
from (first to last token, parentheses around an expression excluded).

Protocol and limits:

- Every failure is a :class:`~waferscale.lang.errors.CslSyntaxError` (or, from
  :func:`parse_file`, a :class:`~waferscale.lang.errors.CslImportError` when the file cannot be
  read). No other exception escapes for any input: nesting deeper than :data:`MAX_DEPTH`
  levels is reported as "nested too deeply", and every loop consumes a token or stops.
- Expression precedence is Zig's (tightest first): postfix ``x() x[] x.y x.*``; ``T{...}``
  init; prefix ``! - ~ &``; ``* / %``; ``+ -``; ``<< >>``; ``& ^ |``; comparisons (not
  chainable: ``a < b < c`` is an error); ``and``; ``or``. Assignment is a statement.
- ``{`` after an expression is an initializer only when the expression can name a type (a
  name, field access, call, builtin call, array or struct type) and the brace is followed by
  ``.name =`` or ``}``; after an array type any braced list is an initializer. Positions that
  take a bare type (return types, declared types, struct field types, parameter types) never
  take an initializer, so ``fn f() T {}`` is a function with an empty body.
- Enum literals ``.name`` (as in ``.simd_mode = .simd_32``) have no node of their own in the
  AST; they are represented as ``Ident(".name")``, which prints back as written.
- Statement-position ``switch`` and labeled blocks become ``ExprStmt`` (see ast.py); a switch
  prong body in a statement switch is a statement (a Block, an Assign...), in an expression
  switch an expression (an unlabeled block there becomes ``BlockExpr``).
- ``asm`` (experimental in CSL) is rejected with "inline asm is not supported".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, TypeVar

from . import ast
from .errors import CslImportError, CslSyntaxError
from .lexer import Token, describe, tokenize
from .source import SourceFile, Span

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["parse_source", "parse_file", "parse_expr", "Parser", "MAX_DEPTH"]

MAX_DEPTH = 100
"""Maximum nesting of expressions, blocks and statements. Real kernels stay far below it; the
limit keeps the parser's Python recursion bounded (at most about six frames per level)."""

_IDENT = Token.IDENT
_EOF = Token.EOF

# Binary operators: token kind -> precedence (higher binds tighter).
_PREC_OR, _PREC_AND, _PREC_CMP = 1, 2, 3
_BINARY_PREC: dict[str, int] = {
    "or": _PREC_OR,
    "and": _PREC_AND,
    "==": _PREC_CMP, "!=": _PREC_CMP, "<": _PREC_CMP, ">": _PREC_CMP, "<=": _PREC_CMP,
    ">=": _PREC_CMP,
    "&": 4, "^": 4, "|": 4,
    "<<": 5, ">>": 5,
    "+": 6, "-": 6,
    "*": 7, "/": 7, "%": 7,
}
_COMPARISONS = frozenset(k for k, p in _BINARY_PREC.items() if p == _PREC_CMP)
_PREFIX_OPS = frozenset({"!", "-", "~", "&"})
_ASSIGN_OPS = frozenset({"=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^="})
# Expression nodes after which '{' may open an initializer.
_TYPE_LIKE = (ast.Ident, ast.FieldAccess, ast.Call, ast.BuiltinCall, ast.ArrayType,
              ast.StructType)
# Tokens that end a statement whose value is optional (return, break).
_VALUE_END = frozenset({";", ",", "}", ")", "else", _EOF})
_LITERAL_KINDS = frozenset({Token.INT, Token.FLOAT, Token.CHAR, Token.STRING, Token.MLSTRING})


class Parser:
    """Parser state over one token list. Use the module functions rather than this class."""

    def __init__(self, src: SourceFile) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.pos = 0
        self.depth = 0

    # ------------------------------------------------------------------------------------------
    # Token helpers

    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def peek(self, k: int = 1) -> Token:
        i = self.pos + k
        toks = self.toks
        return toks[i] if i < len(toks) else toks[-1]

    def advance(self) -> Token:
        tok = self.toks[self.pos]
        if tok.kind != _EOF:
            self.pos += 1
        return tok

    def accept(self, kind: str) -> Token | None:
        tok = self.toks[self.pos]
        if tok.kind == kind:
            self.pos += 1
            return tok
        return None

    def expect(self, kind: str, context: str) -> Token:
        tok = self.toks[self.pos]
        if tok.kind == kind:
            self.pos += 1
            return tok
        what = "identifier" if kind == _IDENT else f"'{kind}'"
        raise self.error_expected(f"{what} {context}")

    def expect_ident(self, context: str) -> Token:
        tok = self.toks[self.pos]
        if tok.kind == _IDENT:
            self.pos += 1
            return tok
        if tok.kind.isalpha() and tok.kind == tok.text and tok.kind != _EOF:
            raise self.error(f"expected identifier {context}, found keyword '{tok.text}'", tok)
        raise self.error_expected(f"identifier {context}")

    def span_from(self, start: int) -> Span:
        """Span from offset ``start`` to the end of the last consumed token."""
        end = self.toks[self.pos - 1].end if self.pos > 0 else start
        return Span(self.src, start, max(start, end))

    def error(self, message: str, tok: Token | None = None) -> CslSyntaxError:
        tok = tok or self.tok
        return CslSyntaxError(message, Span(self.src, tok.start, max(tok.end, tok.start + 1)))

    def error_expected(self, what: str) -> CslSyntaxError:
        """``expected X, found Y``. When Y starts a later line than the previous token ends
        (a forgotten ';'), the caret goes right after the previous token, like clang does."""
        tok = self.tok
        message = f"expected {what}, found {describe(tok)}"
        if self.pos > 0:
            prev_end = self.toks[self.pos - 1].end
            if tok.kind == _EOF or "\n" in self.src.text[prev_end:tok.start]:
                return CslSyntaxError(message, Span(self.src, prev_end, prev_end + 1))
        return self.error(message, tok)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"code is nested too deeply (more than {MAX_DEPTH} levels)")

    # ------------------------------------------------------------------------------------------
    # Top level

    def parse_module(self) -> ast.Module:
        decls: list[ast.Stmt] = []
        while self.tok.kind != _EOF:
            decls.append(self.parse_top_decl())
        return ast.Module(decls, path=self.src.path, span=Span(self.src, 0, len(self.src.text)))

    def parse_top_decl(self) -> ast.Stmt:
        tok = self.tok
        kind = tok.kind
        if kind == "comptime" and self.peek().kind == "{":
            return self.parse_comptime_block()
        if kind == "layout" and self.peek().kind == "{":
            self.advance()
            block = self.parse_block()
            self.accept(";")
            return ast.LayoutBlock(block, span=self.span_from(tok.start))
        if (kind == _IDENT and tok.text == "color" and self.peek().kind == _IDENT
                and self.peek(2).kind == ";"):
            self.advance()
            name = self.advance().text
            self.advance()
            return ast.ColorDecl(name, span=self.span_from(tok.start))
        decl = self.parse_decl(top_level=True)
        if decl is None:
            if kind == ";":
                raise self.error("unexpected ';' at top level")
            if kind == _IDENT and tok.text == "pub" and self.peek().kind in (
                    "fn", "const", "var", "inline", "noinline", "export", "extern"):
                raise self.error("'pub' is not a CSL keyword; remove it")
            raise self.error(f"expected a declaration, found {describe(tok)}")
        return decl

    def parse_comptime_block(self) -> ast.ComptimeBlock:
        start = self.expect("comptime", "").start
        block = self.parse_block()
        self.accept(";")
        return ast.ComptimeBlock(block, span=self.span_from(start))

    def parse_decl(self, top_level: bool) -> ast.Decl | None:
        """A var/const/param or fn/task declaration with its modifiers, or None (nothing
        consumed) when the current token cannot start one."""
        start_pos = self.pos
        start = self.tok.start
        is_export = is_extern = False
        if self.tok.kind == "export":
            self.advance()
            is_export = True
        elif self.tok.kind == "extern":
            self.advance()
            is_extern = True
        inline: str | None = None
        if self.tok.kind in ("inline", "noinline"):
            inline = self.advance().kind
        kind = self.tok.kind
        if kind in ("fn", "task"):
            return self.parse_fn_decl(start, is_export, is_extern, inline)
        if inline is not None:
            raise self.error_expected(f"'fn' or 'task' after '{inline}'")
        is_comptime = False
        if kind == "comptime" and self.peek().kind in ("var", "const"):
            self.advance()
            is_comptime = True
            kind = self.tok.kind
        if kind in ("var", "const", "param"):
            if kind == "param" and not top_level:
                raise self.error("'param' declarations are only allowed at file scope")
            return self.parse_var_decl(start, is_export, is_extern, is_comptime)
        if self.pos != start_pos:
            raise self.error_expected("a declaration ('const', 'var', 'param', 'fn' or 'task')")
        return None

    def parse_var_decl(self, start: int, is_export: bool, is_extern: bool,
                       is_comptime: bool) -> ast.VarDecl:
        kind = self.advance().kind
        name = self.expect_ident(f"after '{kind}'").text
        type_: ast.Expr | None = None
        if self.accept(":"):
            type_ = self.parse_type_expr()
        align = self._paren_attr("align")
        linksection = self._paren_attr("linksection")
        linkname = self._paren_attr("linkname")
        init: ast.Expr | None = None
        if self.accept("="):
            init = self.parse_expr()
        if self.tok.kind != ";":
            what = "'=' or ';'" if init is None else "';'"
            raise self.error_expected(f"{what} after declaration")
        self.advance()
        return ast.VarDecl(kind, name, type_, init, is_comptime=is_comptime,
                           is_export=is_export, is_extern=is_extern, align=align,
                           linksection=linksection, linkname=linkname,
                           span=self.span_from(start))

    def _paren_attr(self, keyword: str) -> ast.Expr | None:
        if self.tok.kind != keyword:
            return None
        self.advance()
        self.expect("(", f"after '{keyword}'")
        value = self.parse_expr()
        self.expect(")", f"to close '{keyword}('")
        return value

    def parse_fn_decl(self, start: int, is_export: bool, is_extern: bool,
                      inline: str | None) -> ast.FnDecl:
        is_task = self.advance().kind == "task"
        what = "task" if is_task else "function"
        name = self.expect_ident(f"after '{'task' if is_task else 'fn'}'").text
        self.expect("(", f"after {what} name")
        params: list[ast.FnParam] = []
        while self.tok.kind != ")":
            params.append(self.parse_param())
            if not self.accept(","):
                break
        self.expect(")", "after parameters")
        linkname = self._paren_attr("linkname")
        ret: ast.Expr | None = None
        if self.tok.kind not in ("{", ";") or not is_task:
            if self.tok.kind in ("{", ";"):
                raise self.error_expected(f"return type of function '{name}'")
            ret = self.parse_type_expr()
        body: ast.Block | None = None
        if self.tok.kind == "{":
            body = self.parse_block()
            for p in params:
                if p.name is None:
                    raise CslSyntaxError(
                        f"parameter of {what} '{name}' needs a name (only prototypes without "
                        "a body may list bare types)", p.span)
        elif self.tok.kind == ";":
            self.advance()
        else:
            raise self.error_expected(f"'{{' or ';' after {what} signature")
        return ast.FnDecl(name, params, ret, body, is_task=is_task, is_export=is_export,
                          is_extern=is_extern, inline=inline, linkname=linkname,
                          span=self.span_from(start))

    def parse_param(self) -> ast.FnParam:
        start = self.tok.start
        is_comptime = bool(self.accept("comptime"))
        name: str | None = None
        if self.tok.kind == _IDENT and self.peek().kind == ":":
            name = self.advance().text
            self.advance()
        if self.tok.kind == "anytype":
            self.advance()
            type_: ast.Expr = ast.AnyType(span=self.span_from(self.toks[self.pos - 1].start))
        else:
            if self.tok.kind in (")", ","):
                raise self.error_expected("parameter type")
            type_ = self.parse_type_expr()
        return ast.FnParam(name, type_, is_comptime, span=self.span_from(start))

    # ------------------------------------------------------------------------------------------
    # Statements

    def parse_block(self, label: str | None = None, start: int | None = None) -> ast.Block:
        """``{ stmt* }``; ``start`` is where a label began, if any."""
        self.enter()
        open_tok = self.expect("{", "to open a block")
        stmts: list[ast.Stmt] = []
        while True:
            kind = self.tok.kind
            if kind == "}":
                break
            if kind == _EOF:
                raise self.error("expected '}' to close the block, found end of file").with_note(
                    "block opened here", open_tok.span)
            stmts.append(self.parse_statement())
        self.advance()
        self.depth -= 1
        return ast.Block(stmts, label, span=self.span_from(open_tok.start if start is None
                                                            else start))

    def parse_statement(self) -> ast.Stmt:
        self.enter()
        try:
            return self._statement()
        finally:
            self.depth -= 1

    def _statement(self) -> ast.Stmt:
        tok = self.tok
        kind = tok.kind
        if kind == "{":
            return self.parse_block()
        if kind == "comptime" and self.peek().kind == "{":
            return self.parse_comptime_block()
        if kind == "if":
            return self.parse_if_stmt()
        if kind in ("while", "for"):
            return self.parse_loop(None, tok.start)
        if kind == "switch":
            sw = self.parse_switch(stmt=True)
            return ast.ExprStmt(sw, span=sw.span)
        if kind == _IDENT and self.peek().kind == ":":
            after = self.peek(2).kind
            if after in ("while", "for"):
                label = self.advance().text
                self.advance()
                return self.parse_loop(label, tok.start)
            if after == "{":
                label = self.advance().text
                self.advance()
                block = self.parse_block(label, tok.start)
                return ast.ExprStmt(ast.BlockExpr(block, span=block.span), span=block.span)
        if kind in ("var", "const", "param", "export", "extern", "inline", "noinline", "fn",
                    "task") or (kind == "comptime" and self.peek().kind in ("var", "const")):
            if kind in ("inline", "noinline") and self.peek().kind in ("for", "while"):
                raise self.error(f"'{kind} {self.peek().kind}' loops are not supported")
            if kind in ("fn", "task", "inline", "noinline", "export", "extern"):
                raise self.error(f"'{kind}' declarations are only allowed at file scope or in "
                                 "a struct")
            decl = self.parse_decl(top_level=False)
            assert decl is not None
            return decl
        if kind == ";":
            raise self.error("unexpected ';' (empty statements are not allowed)")
        stmt = self.parse_simple_statement()
        if self.tok.kind != ";":
            raise self.error_expected(f"';' after {_stmt_name(stmt)}")
        self.advance()
        return stmt

    def parse_simple_statement(self) -> ast.Stmt:
        """return / break / continue / assignment / expression, without the final ';'."""
        tok = self.tok
        kind = tok.kind
        start = tok.start
        if kind == "return":
            self.advance()
            value = None if self.tok.kind in _VALUE_END else self.parse_expr()
            return ast.Return(value, span=self.span_from(start))
        if kind == "break":
            self.advance()
            label = self._jump_label()
            value = None if self.tok.kind in _VALUE_END else self.parse_expr()
            return ast.Break(label, value, span=self.span_from(start))
        if kind == "continue":
            self.advance()
            label = self._jump_label()
            return ast.Continue(label, span=self.span_from(start))
        target = self.parse_expr()
        op_kind = self.tok.kind
        if op_kind in _ASSIGN_OPS:
            self.advance()
            value = self.parse_expr()
            return ast.Assign(target, op_kind, value, span=self.span_from(start))
        return ast.ExprStmt(target, span=target.span)

    def _jump_label(self) -> str | None:
        if self.tok.kind != ":":
            return None
        self.advance()
        return self.expect_ident("after ':' (a label)").text

    def parse_body(self) -> tuple[ast.Stmt, bool]:
        """Body of if/while/for/else: a block, or one statement whose ';' is left to the
        caller. Returns (statement, needs_semicolon)."""
        kind = self.tok.kind
        if kind == "{":
            return self.parse_block(), False
        if kind in ("if", "while", "for", "switch") or (
                kind == _IDENT and self.peek().kind == ":" and self.peek(2).kind in (
                    "while", "for", "{")) or (kind == "comptime" and self.peek().kind == "{"):
            return self.parse_statement(), False
        if kind in ("var", "const", "param", "fn", "task"):
            raise self.error(f"a '{kind}' declaration cannot be the body of a statement; "
                             "wrap it in '{ }'")
        self.enter()
        try:
            return self.parse_simple_statement(), True
        finally:
            self.depth -= 1

    def parse_if_stmt(self) -> ast.Stmt:
        # An else-if chain is collected iteratively and nested from the end, so long chains
        # do not consume recursion depth.
        links: list[tuple[int, ast.Expr, ast.Stmt]] = []
        final_else: ast.Stmt | None = None
        needs_semi = False
        while True:
            start = self.expect("if", "").start
            cond = self._paren_cond("if")
            then, needs_semi = self.parse_body()
            links.append((start, cond, then))
            if self.tok.kind != "else":
                break
            self.advance()
            if self.tok.kind == "if":
                continue
            final_else, needs_semi = self.parse_body()
            break
        if needs_semi:
            if self.tok.kind != ";":
                last = final_else if final_else is not None else links[-1][2]
                raise self.error_expected(f"';' after {_stmt_name(last)}")
            self.advance()
            if self.tok.kind == "else" and final_else is None:
                raise self.error("'else' cannot follow ';': write 'if (c) a else b;' or use "
                                 "blocks", self.toks[self.pos - 1])
        result = final_else
        for start, cond, then in reversed(links):
            result = ast.If(cond, then, result, span=self.span_from(start))
        assert isinstance(result, ast.If)
        return result

    def _paren_cond(self, keyword: str) -> ast.Expr:
        self.expect("(", f"after '{keyword}'")
        cond = self.parse_expr()
        self.expect(")", f"after {keyword} condition")
        return cond

    def parse_loop(self, label: str | None, start: int) -> ast.Stmt:
        keyword = self.advance().kind
        if keyword == "while":
            cond = self._paren_cond("while")
            cont: ast.Stmt | None = None
            if self.accept(":"):
                self.expect("(", "to open the while continue expression")
                cont = self.parse_simple_statement()
                if not isinstance(cont, (ast.Assign, ast.ExprStmt)):
                    raise CslSyntaxError("the while continue expression must be an assignment "
                                         "or an expression", cont.span)
                self.expect(")", "to close the while continue expression")
            body, needs_semi = self.parse_body()
            if needs_semi:
                self.expect(";", f"after {_stmt_name(body)}")
            if self.tok.kind == "else":
                raise self.error("'while ... else' is not supported")
            return ast.While(cond, body, cont, label, span=self.span_from(start))
        iterable = self._paren_cond("for")
        captures: list[str] = []
        self.expect("|", "to open the for loop captures (|x| or |x, i|)")
        while True:
            if self.tok.kind == "*":
                raise self.error("pointer captures '|*x|' are not supported")
            if len(captures) == 2:
                raise self.error("a for loop takes one or two captures (|elem| or "
                                 "|elem, index|)")
            captures.append(self.expect_ident("in for loop capture").text)
            if not self.accept(","):
                break
            if self.tok.kind == "|":
                break
        self.expect("|", "to close the for loop captures")
        body, needs_semi = self.parse_body()
        if needs_semi:
            self.expect(";", f"after {_stmt_name(body)}")
        if self.tok.kind == "else":
            raise self.error("'for ... else' is not supported")
        return ast.For(iterable, captures, body, label, span=self.span_from(start))

    # ------------------------------------------------------------------------------------------
    # Switch

    def parse_switch(self, stmt: bool) -> ast.Switch:
        """``switch (x) { a, b => body, else => body }``; prong bodies are statements when
        ``stmt`` is true and expressions otherwise."""
        self.enter()
        start = self.expect("switch", "").start
        subject = self._paren_cond("switch")
        open_tok = self.expect("{", "to open the switch body")
        prongs: list[ast.SwitchProng] = []
        while self.tok.kind != "}":
            if self.tok.kind == _EOF:
                raise self.error("expected '}' to close the switch, found end of file"
                                 ).with_note("switch body opened here", open_tok.span)
            prong_start = self.tok.start
            cases: list[ast.Expr] = []
            is_else = False
            if self.tok.kind == "else":
                self.advance()
                is_else = True
            else:
                while True:
                    cases.append(self.parse_expr())
                    if not self.accept(","):
                        break
                    if self.tok.kind == "=>":
                        break
            self.expect("=>", "after switch case")
            body: ast.Node
            block_body = self.tok.kind == "{"
            if stmt:
                body, _ = self.parse_body()
            elif block_body:
                block = self.parse_block()
                body = ast.BlockExpr(block, span=block.span)
            else:
                body = self.parse_expr()
            prongs.append(ast.SwitchProng(cases, body, is_else, span=self.span_from(prong_start)))
            if self.accept(","):
                continue
            if self.tok.kind != "}" and not block_body:
                raise self.error_expected("',' or '}' after switch prong")
        self.advance()
        self.depth -= 1
        return ast.Switch(subject, prongs, span=self.span_from(start))

    # ------------------------------------------------------------------------------------------
    # Expressions

    def parse_expr(self) -> ast.Expr:
        self.enter()
        try:
            return self._binary()
        finally:
            self.depth -= 1

    def _binary(self) -> ast.Expr:
        """Binary operators by operator-precedence parsing with explicit stacks (left
        associative; comparisons refuse to chain), so that operator chains cost no recursion."""
        toks = self.toks
        prec_table = _BINARY_PREC
        first = toks[self.pos].start
        node = self._prefix()
        # Operand stack entries: (node, start offset, end offset, made by a comparison).
        operands: list[tuple[ast.Expr, int, int, bool]] = [
            (node, first, toks[self.pos - 1].end, False)]
        operators: list[tuple[str, int]] = []

        def reduce() -> None:
            op, prec = operators.pop()
            rhs, _, rhs_end, _ = operands.pop()
            lhs, lhs_start, _, _ = operands.pop()
            operands.append((ast.Binary(op, lhs, rhs, span=Span(self.src, lhs_start, rhs_end)),
                             lhs_start, rhs_end, prec == _PREC_CMP))

        while True:
            tok = toks[self.pos]
            prec = prec_table.get(tok.kind)
            if prec is None:
                break
            while operators and operators[-1][1] >= prec:
                reduce()
            if prec == _PREC_CMP and operands[-1][3]:
                raise self.error("comparison operators cannot be chained; use 'and' or "
                                 "parentheses", tok)
            operators.append((tok.kind, prec))
            self.pos += 1
            start = toks[self.pos].start
            node = self._prefix()
            operands.append((node, start, toks[self.pos - 1].end, False))
        while operators:
            reduce()
        return operands[0][0]

    def _prefix(self) -> ast.Expr:
        tok = self.toks[self.pos]
        if tok.kind not in _PREFIX_OPS:
            return self._curly_suffix(self._suffix(self._primary(), tok.start), tok.start)
        # Collect prefix operators iteratively so '!!!!x' costs no recursion.
        ops: list[Token] = []
        while self.toks[self.pos].kind in _PREFIX_OPS:
            ops.append(self.toks[self.pos])
            self.pos += 1
        operand_start = self.toks[self.pos].start
        expr = self._curly_suffix(self._suffix(self._primary(), operand_start), operand_start)
        for op in reversed(ops):
            expr = ast.Unary(op.kind, expr, span=self.span_from(op.start))
        return expr

    def parse_type_expr(self) -> ast.Expr:
        """A type in a declaration position: prefix type operators and a suffix expression,
        never followed by an initializer."""
        self.enter()
        try:
            return self._suffix(self._primary(), self.toks[self.pos].start)
        finally:
            self.depth -= 1

    def _curly_suffix(self, expr: ast.Expr, start: int) -> ast.Expr:
        if self.toks[self.pos].kind != "{" or not isinstance(expr, _TYPE_LIKE):
            return expr
        if not isinstance(expr, ast.ArrayType):
            nxt = self.peek()
            if not (nxt.kind == "}" or (nxt.kind == "." and self.peek(2).kind == _IDENT
                                        and self.peek(3).kind == "=")):
                return expr
        return self.parse_init_list(expr, start)

    def parse_init_list(self, type_: ast.Expr | None, start: int) -> ast.InitList:
        """``{ .a = x, .b = y }`` or ``{ x, y }`` or ``{}`` (the '.' of an anonymous literal
        is already consumed)."""
        self.enter()
        open_tok = self.expect("{", "to open the initializer")
        fields: list[ast.FieldInit] = []
        items: list[ast.Expr] = []
        while self.tok.kind != "}":
            if self.tok.kind == "." and self.peek().kind == _IDENT and self.peek(2).kind == "=":
                if items:
                    raise self.error("cannot mix field initializers '.name = value' and "
                                     "positional items in one initializer")
                fstart = self.advance().start
                name = self.advance().text
                self.advance()
                value = self.parse_expr()
                fields.append(ast.FieldInit(name, value, span=self.span_from(fstart)))
            else:
                if fields:
                    if self.tok.kind == _EOF:
                        raise self.error_expected("'}' to close the initializer")
                    raise self.error_expected("field initializer '.name = value'")
                if self.tok.kind == _EOF:
                    raise self.error("expected '}' to close the initializer, found end of file"
                                     ).with_note("initializer opened here", open_tok.span)
                items.append(self.parse_expr())
            if not self.accept(","):
                break
        if self.tok.kind != "}":
            raise self.error_expected("',' or '}' in initializer")
        self.advance()
        self.depth -= 1
        return ast.InitList(type_, fields, items, span=self.span_from(start))

    def _suffix(self, expr: ast.Expr, start: int) -> ast.Expr:
        """Apply postfix operators to ``expr``, whose first token starts at ``start``."""
        toks = self.toks
        while True:
            kind = toks[self.pos].kind
            if kind == ".":
                nxt = toks[self.pos + 1]
                if nxt.kind != _IDENT:
                    self.pos += 1
                    raise self.error_expected("field name after '.'")
                self.pos += 2
                expr = ast.FieldAccess(expr, nxt.text, span=Span(self.src, start, nxt.end))
            elif kind == ".*":
                end = toks[self.pos].end
                self.pos += 1
                expr = ast.Deref(expr, span=Span(self.src, start, end))
            elif kind == "(":
                args = self._call_args()
                expr = ast.Call(expr, args, span=self.span_from(start))
            elif kind == "[":
                self.pos += 1
                indices = [self.parse_expr()]
                while self.accept(","):
                    indices.append(self.parse_expr())
                self.expect("]", "to close the index")
                expr = ast.Index(expr, indices, span=self.span_from(start))
            else:
                return expr

    def _call_args(self) -> list[ast.Expr]:
        open_tok = self.expect("(", "")
        args: list[ast.Expr] = []
        while self.tok.kind != ")":
            if self.tok.kind == _EOF:
                raise self.error("expected ')' to close the argument list, found end of file"
                                 ).with_note("argument list opened here", open_tok.span)
            args.append(self.parse_expr())
            if not self.accept(","):
                break
        self.expect(")", "after arguments")
        return args

    def _primary(self) -> ast.Expr:
        tok = self.toks[self.pos]
        kind = tok.kind
        start = tok.start
        if kind == _IDENT:
            if self.toks[self.pos + 1].kind == ":" and self.peek(2).kind == "{":
                self.pos += 2
                block = self.parse_block(tok.text, start)
                return ast.BlockExpr(block, span=block.span)
            if tok.text == "packed" and self.peek().kind in ("struct", "union"):
                self.pos += 1
                return self.parse_container("packed", start)
            self.pos += 1
            return ast.Ident(tok.text, span=tok.span)
        if kind in _LITERAL_KINDS:
            self.pos += 1
            if kind == Token.INT:
                return ast.IntLit(tok.value, tok.text, span=tok.span)  # type: ignore[arg-type]
            if kind == Token.FLOAT:
                return ast.FloatLit(tok.value, tok.text, span=tok.span)  # type: ignore[arg-type]
            if kind == Token.CHAR:
                return ast.CharLit(tok.value, tok.text, span=tok.span)  # type: ignore[arg-type]
            return ast.StringLit(tok.value, kind == Token.MLSTRING,  # type: ignore[arg-type]
                                 span=tok.span)
        if kind == Token.BUILTIN:
            self.pos += 1
            if self.tok.kind != "(":
                raise self.error_expected(f"'(' after builtin '{tok.text}'")
            args = self._call_args()
            name: str = tok.value  # type: ignore[assignment]
            return ast.BuiltinCall(name, args, span=self.span_from(start))
        if kind == "{" and self.peek().kind == "}":
            # `{}`: the empty block, whose value is the void value (Zig), as in the SDK's
            # `param USER_IN_1 = {};` tested with `@type_of(USER_IN_1) != void`.
            block = self.parse_block()
            return ast.BlockExpr(block, span=block.span)
        if kind == "(":
            self.pos += 1
            inner = self.parse_expr()
            self.expect(")", "to close the parenthesized expression")
            return inner
        if kind == "true" or kind == "false":
            self.pos += 1
            return ast.BoolLit(kind == "true", span=tok.span)
        if kind == ".":
            nxt = self.peek()
            if nxt.kind == "{":
                self.pos += 1
                return self.parse_init_list(None, start)
            if nxt.kind == _IDENT:
                self.pos += 2
                return ast.Ident("." + nxt.text, span=self.span_from(start))
            self.pos += 1
            raise self.error_expected("'{' or a name after '.'")
        if kind == "[" or kind == "*":
            return self._prefix_type()
        if kind == "if":
            return self.parse_if_expr()
        if kind == "switch":
            return self.parse_switch(stmt=False)
        if kind == "comptime":
            self.pos += 1
            inner = self.parse_expr()
            return ast.ComptimeExpr(inner, span=self.span_from(start))
        if kind == "|":
            return self.parse_tensor_access()
        if kind in ("fn", "task"):
            return self.parse_fn_type()
        if kind in ("struct", "union"):
            return self.parse_container(None, start)
        if kind == "extern" and self.peek().kind in ("struct", "union"):
            self.pos += 1
            return self.parse_container("extern", start)
        if kind == "enum":
            return self.parse_enum()
        if kind == "asm":
            raise self.error("inline asm is not supported")
        if kind == "anytype":
            raise self.error("'anytype' is only allowed as a parameter type")
        if kind == "{":
            raise self.error("expected an expression, found '{' (an anonymous initializer is "
                             "written '.{ ... }')")
        raise self.error_expected("an expression")

    def _prefix_type(self) -> ast.Expr:
        """``[N, M]T``, ``[*]T``, ``[*]const T``, ``*T``, ``*const T`` (iterative over chains
        of prefixes; the element is a type expression)."""
        prefixes: list[tuple[int, str, list[ast.Expr], bool]] = []
        toks = self.toks
        while True:
            tok = toks[self.pos]
            if tok.kind == "*":
                self.pos += 1
                is_const = bool(self.accept("const"))
                prefixes.append((tok.start, "ptr", [], is_const))
            elif tok.kind == "[":
                self.pos += 1
                if self.tok.kind == "*" and self.peek().kind == "]":
                    self.pos += 2
                    is_const = bool(self.accept("const"))
                    prefixes.append((tok.start, "many", [], is_const))
                else:
                    if self.tok.kind == "]":
                        raise self.error("slice types '[]T' are not supported; use '[N]T' or "
                                         "'[*]T'")
                    dims = [self.parse_expr()]
                    while self.accept(","):
                        dims.append(self.parse_expr())
                    self.expect("]", "to close the array dimensions")
                    prefixes.append((tok.start, "array", dims, False))
            else:
                break
            if self.tok.kind == "volatile":
                raise self.error("'volatile' pointers are not supported")
        elem = self._suffix(self._primary(), self.toks[self.pos].start)
        for start, what, dims, is_const in reversed(prefixes):
            span = self.span_from(start)
            if what == "array":
                elem = ast.ArrayType(dims, elem, span=span)
            else:
                elem = ast.PointerType(elem, many=(what == "many"), const=is_const, span=span)
        return elem

    def parse_if_expr(self) -> ast.Expr:
        links: list[tuple[int, ast.Expr, ast.Expr]] = []
        final: ast.Expr | None = None
        while True:
            start = self.expect("if", "").start
            cond = self._paren_cond("if")
            then = self.parse_expr()
            links.append((start, cond, then))
            if self.tok.kind != "else":
                break
            self.advance()
            if self.tok.kind == "if":
                continue
            final = self.parse_expr()
            break
        result = final
        for start, cond, then in reversed(links):
            result = ast.IfExpr(cond, then, result, span=self.span_from(start))
        assert result is not None
        return result

    def parse_tensor_access(self) -> ast.TensorAccess:
        start = self.expect("|", "").start
        names: list[str] = []
        while True:
            names.append(self.expect_ident("as a tensor access index variable").text)
            if not self.accept(","):
                break
        self.expect("|", "after tensor access index variables")
        self.expect("{", "to open the tensor access extents")
        extents: list[ast.Expr] = []
        while True:
            extents.append(self.parse_expr())
            if not self.accept(","):
                break
        self.expect("}", "to close the tensor access extents")
        if len(extents) != len(names):
            raise CslSyntaxError(
                f"tensor access has {len(names)} index variable(s) but {len(extents)} "
                "extent(s)", self.span_from(start))
        self.expect("->", "after tensor access extents")
        access = self.parse_expr()
        return ast.TensorAccess(names, extents, access, span=self.span_from(start))

    def parse_fn_type(self) -> ast.FnType:
        is_task = self.tok.kind == "task"
        start = self.advance().start
        self.expect("(", f"after '{'task' if is_task else 'fn'}' in a function type")
        params: list[ast.Expr] = []
        while self.tok.kind != ")":
            if self.tok.kind == _IDENT and self.peek().kind == ":":
                raise self.error("parameters of a function type are written as bare types")
            params.append(self.parse_type_expr())
            if not self.accept(","):
                break
        self.expect(")", "after function type parameters")
        if self.tok.kind in ("{", ";", ",", ")", _EOF):
            raise self.error_expected("return type of function type")
        ret = self.parse_type_expr()
        return ast.FnType(params, ret, is_task=is_task, span=self.span_from(start))

    def parse_container(self, layout: str | None, start: int) -> ast.StructType:
        kind = self.advance().kind
        if kind == "union" and self.tok.kind == "(":
            raise self.error("tagged unions 'union(...)' are not supported")
        open_tok = self.expect("{", f"after '{kind}'")
        self.enter()
        fields: list[ast.ContainerField] = []
        decls: list[ast.Stmt] = []
        while self.tok.kind != "}":
            tok = self.tok
            if tok.kind == _EOF:
                raise self.error(f"expected '}}' to close the {kind}, found end of file"
                                 ).with_note(f"{kind} opened here", open_tok.span)
            if tok.kind == _IDENT and self.peek().kind == ":":
                self.advance()
                self.advance()
                ftype = self.parse_type_expr()
                default = self.parse_expr() if self.accept("=") else None
                fields.append(ast.ContainerField(tok.text, ftype, default,
                                                 span=self.span_from(tok.start)))
                if not self.accept(",") and self.tok.kind != "}":
                    raise self.error_expected(f"',' or '}}' after {kind} field")
                continue
            if tok.kind == "comptime" and self.peek().kind == "{":
                decls.append(self.parse_comptime_block())
                continue
            decl = self.parse_decl(top_level=False)
            if decl is None:
                raise self.error_expected(f"a field 'name: type' or a declaration in {kind}")
            decls.append(decl)
        self.advance()
        self.depth -= 1
        return ast.StructType(fields, decls, kind=kind, layout=layout,
                              span=self.span_from(start))

    def parse_enum(self) -> ast.EnumType:
        start = self.expect("enum", "").start
        tag: ast.Expr | None = None
        if self.accept("("):
            tag = self.parse_type_expr()
            self.expect(")", "after enum tag type")
        open_tok = self.expect("{", "to open the enum body")
        self.enter()
        members: list[ast.EnumMember] = []
        decls: list[ast.Stmt] = []
        while self.tok.kind != "}":
            tok = self.tok
            if tok.kind == _EOF:
                raise self.error("expected '}' to close the enum, found end of file"
                                 ).with_note("enum opened here", open_tok.span)
            if tok.kind == _IDENT:
                self.advance()
                value = self.parse_expr() if self.accept("=") else None
                members.append(ast.EnumMember(tok.text, value, span=self.span_from(tok.start)))
                if not self.accept(",") and self.tok.kind != "}":
                    raise self.error_expected("',' or '}' after enum member")
                continue
            decl = self.parse_decl(top_level=False)
            if decl is None:
                raise self.error_expected("an enum member or a declaration")
            decls.append(decl)
        self.advance()
        self.depth -= 1
        return ast.EnumType(tag, members, decls, span=self.span_from(start))


def _stmt_name(stmt: ast.Stmt) -> str:
    if isinstance(stmt, ast.Return):
        return "return statement"
    if isinstance(stmt, ast.Break):
        return "break"
    if isinstance(stmt, ast.Continue):
        return "continue"
    if isinstance(stmt, ast.Assign):
        return "assignment"
    if isinstance(stmt, ast.VarDecl):
        return "declaration"
    return "expression statement"


# ----------------------------------------------------------------------------------------------
# Public API


def _guarded(parser: Parser, parse: Callable[[], _T]) -> _T:
    """Run ``parse``; a Python RecursionError (possible only when the caller is itself deep
    in the stack, since MAX_DEPTH bounds the parser's own recursion) becomes a diagnostic."""
    try:
        return parse()
    except RecursionError:
        raise parser.error("code is nested too deeply for the parser") from None


def parse_source(text: str, path: str = "<string>") -> ast.Module:
    """Parse a whole CSL file given as text; ``path`` is what diagnostics print."""
    parser = Parser(SourceFile(path, text))
    module = _guarded(parser, parser.parse_module)
    logger.debug("parsed %s: %d top-level declarations", path, len(module.decls))
    return module


def parse_file(path: str | Path) -> ast.Module:
    """Read (UTF-8) and parse a CSL file. A missing or unreadable file raises CslImportError."""
    try:
        src = SourceFile.read(path)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CslImportError(f"cannot read CSL file '{path}': {reason}") from None
    parser = Parser(src)
    return _guarded(parser, parser.parse_module)


def parse_expr(text: str, path: str = "<string>") -> ast.Expr:
    """Parse exactly one expression spanning the whole input."""
    parser = Parser(SourceFile(path, text))
    expr = _guarded(parser, parser.parse_expr)
    if parser.tok.kind != _EOF:
        raise parser.error_expected("end of expression")
    return expr
