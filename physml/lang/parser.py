"""Text → parse tree → statements (with SymPy expressions and positions).

The Transformer builds SymPy objects directly from tree nodes: numbers from NUMBER tokens,
symbols from NAME tokens, operators from operator nodes. No text is ever given to
``sympify``, ``eval`` or ``exec``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sympy
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import Indenter

from ..errors import OperatorError, Pos, SpecError, SpecSyntaxError, UnknownSymbolError, suggest
from ..symbolic.functions import FUNCTIONS, SpatialOperator

#: Guard against numbers whose exact value would take forever to compute (2^2^2^99).
_MAX_EXACT_BITS = 4096


class _PhyIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4


@lru_cache(maxsize=1)
def grammar() -> Lark:
    return Lark.open_from_package(
        "physml.lang", "physml.lark", parser="lalr", postlex=_PhyIndenter(),
        propagate_positions=True, maybe_placeholders=True,
    )


# ---------------------------------------------------------------------------------------
# Statements: what the Transformer hands to the builder.

@dataclass
class Ref:
    """A name used in an expression, with where it was used."""

    name: str
    pos: Pos


@dataclass
class CallRef:
    """A spatial operator call, with where it was written (for dimension checks)."""

    name: str
    node: sympy.Basic
    pos: Pos
    length: int


@dataclass
class Stmt:
    kind: str
    pos: Pos
    data: dict[str, Any]
    refs: list[Ref] = field(default_factory=list)
    calls: list[CallRef] = field(default_factory=list)
    body: list["Stmt"] = field(default_factory=list)


@dataclass
class Name:
    """A NAME token as a value (declarations), with its position."""

    text: str
    pos: Pos


class _ToStatements(Transformer):
    """Bottom-up: expressions become SymPy; statements collect the names they used."""

    def __init__(self, file: str, source: str):
        super().__init__()
        self.file = file
        self.source = source
        self._refs: list[Ref] = []
        self._calls: list[CallRef] = []

    # -- helpers ------------------------------------------------------------------------
    def _pos(self, item) -> Pos:
        if isinstance(item, Token):
            return Pos(self.file, item.line, item.column, item.end_column)
        return Pos(self.file, item.line, item.column, getattr(item, "end_column", None))

    def _err(self, cls, message, item, hint=None, length=None):
        if length is None:
            length = len(item) if isinstance(item, Token) else 1
        return cls(message, self._pos(item), self.source, hint=hint, length=length)

    def _stmt(self, kind, meta, body=None, **data) -> Stmt:
        stmt = Stmt(kind, Pos(self.file, meta.line, meta.column), data, self._refs,
                    self._calls, body or [])
        self._refs, self._calls = [], []
        return stmt

    def _name(self, tok: Token) -> Name:
        return Name(str(tok), self._pos(tok))

    # -- numbers and names --------------------------------------------------------------
    def number(self, children):
        (tok,) = children
        text = str(tok)
        if any(c in text for c in ".eE"):
            value = float(text)
            if not math.isfinite(value):
                raise self._err(SpecSyntaxError, f"number {text} is too large", tok)
            return sympy.Float(value)
        if len(text) > 300:
            raise self._err(SpecSyntaxError, f"number {text[:20]}… is too large", tok,
                            length=len(text))
        return sympy.Integer(int(text))

    def name(self, children):
        (tok,) = children
        text = str(tok)
        self._refs.append(Ref(text, self._pos(tok)))
        if text == "pi":
            return sympy.pi
        return sympy.Symbol(text)

    def func(self, children):
        tok, *args = children
        args = [a for a in args if a is not None]
        fname = str(tok)
        fdef = FUNCTIONS.get(fname)
        if fdef is None:
            if fname == "piecewise":  # only reached as a plain name in odd positions
                raise self._err(SpecSyntaxError, "piecewise needs branches", tok)
            raise self._err(UnknownSymbolError, f"unknown function '{fname}'", tok,
                            hint=suggest(fname, FUNCTIONS))
        if len(args) not in fdef.nargs:
            want = " or ".join(str(n) for n in fdef.nargs)
            raise self._err(OperatorError,
                            f"{fname}() takes {want} argument{'s' if fdef.nargs != (1,) else ''}, "
                            f"got {len(args)}", tok, length=len(fname))
        node = fdef.sympy(*args)
        if fdef.spatial:
            self._calls.append(CallRef(fname, node, self._pos(tok), len(fname)))
        return node

    # -- arithmetic ---------------------------------------------------------------------
    def add(self, c):
        return sympy.Add(c[0], c[1])

    def sub(self, c):
        return sympy.Add(c[0], -c[1])

    def mul(self, c):
        return sympy.Mul(c[0], c[1])

    def div(self, c):
        if c[1] == 0:
            raise SpecSyntaxError("division by zero", None)
        return sympy.Mul(c[0], sympy.Pow(c[1], -1))

    def neg(self, c):
        return -c[0]

    def unary(self, c):  # unary plus
        return c[0]

    def pow(self, c):
        base, _, exp = c
        if base.is_number and exp.is_number:
            try:
                b, e = abs(complex(base)), complex(exp).real
            except (TypeError, ValueError):
                b, e = 2.0, 1e9
            if b > 1 and abs(e) * math.log2(b) > _MAX_EXACT_BITS:
                raise SpecSyntaxError("number too large in a power", None)
            if b == 0 and e < 0:
                raise SpecSyntaxError("zero to a negative power", None)
        return sympy.Pow(base, exp)

    # -- conditions ---------------------------------------------------------------------
    def comparison(self, c):
        lhs, op, rhs = c
        return {"<": sympy.StrictLessThan, "<=": sympy.LessThan, ">": sympy.StrictGreaterThan,
                ">=": sympy.GreaterThan, "==": sympy.Eq, "!=": sympy.Ne}[str(op)](
            lhs, rhs, evaluate=False)

    def cond_or(self, c):
        return sympy.Or(c[0], c[1], evaluate=False)

    def cond_and(self, c):
        return sympy.And(c[0], c[1], evaluate=False)

    def cond_not(self, c):
        return sympy.Not(c[0], evaluate=False)

    def branch(self, c):
        return (c[0], c[1])

    @v_args(meta=True)
    def piecewise(self, meta, branches):
        pieces = []
        for i, (expr, cond) in enumerate(branches):
            last = i == len(branches) - 1
            if cond is None and not last:
                raise SpecSyntaxError(
                    "only the last branch of piecewise may omit its condition",
                    Pos(self.file, meta.line, meta.column), self.source, length=9)
            pieces.append((expr, sympy.true if cond is None else cond))
        if pieces[-1][1] is not sympy.true:
            raise SpecSyntaxError(
                "piecewise needs a last branch without condition (the 'otherwise' value), "
                "e.g. piecewise(1/tau_open, v < v_gate; -1/tau_close)",
                Pos(self.file, meta.line, meta.column), self.source, length=9)
        return sympy.Piecewise(*pieces, evaluate=False)

    # -- calls with keyword arguments ---------------------------------------------------
    def kwarg(self, c):
        return ("kw", self._name(c[0]), c[1])

    @v_args(meta=True)
    def call(self, meta, c):
        tok, *items = c
        args, kwargs, seen = [], [], set()
        for it in items:
            if it is None:
                continue
            if isinstance(it, tuple) and it and it[0] == "kw":
                _, key, value = it
                if key.text in seen:
                    raise SpecSyntaxError(f"argument '{key.text}' given twice", key.pos,
                                          self.source, length=len(key.text))
                seen.add(key.text)
                kwargs.append((key, _value(value)))
            else:
                if kwargs:
                    raise SpecSyntaxError("positional argument after keyword argument",
                                          self._pos(tok), self.source)
                args.append(_value(it))
        return {"name": self._name(tok), "args": args, "kwargs": kwargs,
                "pos": self._pos(tok)}

    # -- statements ---------------------------------------------------------------------
    @v_args(meta=True)
    def system_decl(self, meta, c):
        return self._stmt("system", meta, name=self._name(c[0]),
                          title=str(c[1])[1:-1] if c[1] is not None else "")

    @v_args(meta=True)
    def use_decl(self, meta, c):
        tok = c[0]
        return self._stmt("use", meta, target=str(tok), quoted=tok.type == "STRING",
                          tpos=self._pos(tok), length=len(tok))

    def interval(self, c):
        return (c[0], c[1])

    def bc_periodic(self, c):
        return ("periodic", None)

    def bc_neumann(self, c):
        return ("neumann", None)

    def bc_dirichlet(self, c):
        return ("dirichlet", c[0])

    def stencil_opt(self, c):
        return self._name(c[0])

    @v_args(meta=True)
    def domain_decl(self, meta, c):
        ints = [x for x in c if isinstance(x, Token) and x.type == "INT"]
        intervals = [x for x in c if isinstance(x, tuple) and len(x) == 2 and not isinstance(x[0], str)]
        bcs = [x for x in c if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)]
        stencil = [x for x in c if isinstance(x, Name)]
        return self._stmt("domain", meta, sizes=[(int(t), self._pos(t)) for t in ints],
                          intervals=intervals, bc=bcs[0] if bcs else None,
                          stencil=stencil[0] if stencil else None)

    def axis_bc(self, c):
        return (self._name(c[0]), c[1])

    @v_args(meta=True)
    def boundary_decl(self, meta, c):
        return self._stmt("boundary", meta, items=c)

    @v_args(meta=True)
    def state_decl(self, meta, c):
        return self._stmt("state", meta, names=[self._name(t) for t in c])

    @v_args(meta=True)
    def field_decl(self, meta, c):
        return self._stmt("field", meta, names=[self._name(t) for t in c])

    @v_args(meta=True)
    def mask_decl(self, meta, c):
        return self._stmt("mask", meta, name=self._name(c[0]), cond=c[1])

    def open_bound(self, c):
        return True

    def closed_bound(self, c):
        return False

    @v_args(meta=True)
    def bounds(self, meta, c):
        lo_open, lo, hi, hi_open = c
        return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
                "pos": Pos(self.file, meta.line, meta.column)}

    @v_args(meta=True)
    def param_decl(self, meta, c):
        return self._stmt("param", meta, name=self._name(c[0]), value=c[1], bounds=c[2],
                          vpos=Pos(self.file, meta.line, meta.column))

    @v_args(meta=True)
    def let_decl(self, meta, c):
        return self._stmt("let", meta, name=self._name(c[0]), expr=c[1])

    @v_args(meta=True)
    def equation(self, meta, c):
        return self._stmt("equation", meta, var=self._name(c[0]), rhs=c[1])

    @v_args(meta=True)
    def dynamics_block(self, meta, c):
        return self._stmt("dynamics", meta, body=list(c))

    # data block
    def split(self, c):
        return (int(c[0]), self._name(c[1]))

    @v_args(meta=True)
    def trajectories(self, meta, c):
        return self._stmt("trajectories", meta, splits=c)

    @v_args(meta=True)
    def time_range(self, meta, c):
        return self._stmt("time_range", meta, t0=c[0], t1=c[1], dt=c[2])

    @v_args(meta=True)
    def time_steps(self, meta, c):
        return self._stmt("time_steps", meta, steps=int(c[0]), dt=c[1])

    @v_args(meta=True)
    def history(self, meta, c):
        return self._stmt("history", meta, k=int(c[0]))

    def sampler(self, c):
        *names, call = c
        return {"names": [self._name(t) for t in names], "call": call}

    @v_args(meta=True)
    def initial(self, meta, c):
        return self._stmt("initial", meta, samplers=c)

    @v_args(meta=True)
    def noise(self, meta, c):
        return self._stmt("noise", meta, sigma=c[0])

    @v_args(meta=True)
    def data_solver(self, meta, c):
        return self._stmt("solver", meta, call=c[0])

    @v_args(meta=True)
    def seed(self, meta, c):
        return self._stmt("seed", meta, seed=int(c[0]))

    @v_args(meta=True)
    def data_file(self, meta, c):
        return self._stmt("file", meta, path=str(c[0])[1:-1])

    def map_item(self, c):
        return (self._name(c[0]), str(c[1])[1:-1])

    @v_args(meta=True)
    def data_map(self, meta, c):
        return self._stmt("map", meta, items=c)

    @v_args(meta=True)
    def warmup(self, meta, c):
        return self._stmt("warmup", meta, t=c[0])

    @v_args(meta=True)
    def data_block(self, meta, c):
        return self._stmt("data", meta, body=list(c))

    # prior block
    def learn_item(self, c):
        return (self._name(c[0]), c[1])

    @v_args(meta=True)
    def learn(self, meta, c):
        return self._stmt("learn", meta, items=c)

    @v_args(meta=True)
    def hamiltonian(self, meta, c):
        return self._stmt("hamiltonian", meta, call=c[0])

    @v_args(meta=True)
    def prior_stencil(self, meta, c):
        return self._stmt("stencil", meta, name=self._name(c[0]))

    @v_args(meta=True)
    def prior_block(self, meta, c):
        return self._stmt("prior", meta, body=list(c))

    # the rest
    @v_args(meta=True)
    def augment_decl(self, meta, c):
        item = c[0]
        if isinstance(item, Token):
            item = {"name": self._name(item), "args": [], "kwargs": [], "pos": self._pos(item)}
        return self._stmt("augment", meta, call=item)

    def assign(self, c):
        return (self._name(c[0]), c[1])

    @v_args(meta=True)
    def env_named(self, meta, c):
        return self._stmt("env", meta, name=self._name(c[0]), values=c[1:])

    def grid_axis(self, c):
        return (self._name(c[0]), c[1:])

    @v_args(meta=True)
    def env_grid(self, meta, c):
        return self._stmt("env_grid", meta, axes=c)

    @v_args(meta=True)
    def environments_block(self, meta, c):
        return self._stmt("environments", meta, body=list(c))

    @v_args(meta=True)
    def observe_decl(self, meta, c):
        return self._stmt("observe", meta, names=[self._name(t) for t in c])

    @v_args(meta=True)
    def encoder_decl(self, meta, c):
        return self._stmt("encoder", meta, call=c[0])

    def option(self, c):
        return (self._name(c[0]), _value(c[1]))

    @v_args(meta=True)
    def train_decl(self, meta, c):
        return self._stmt("train", meta, call=c[0], options=c[1:])

    def start(self, c):
        return [s for s in c if s is not None]


def _value(item):
    """An option value as written: numbers become int/float, bare words become strings."""
    if isinstance(item, Token):
        return str(item)[1:-1] if item.type == "STRING" else str(item)
    if isinstance(item, sympy.Symbol):
        return item.name
    if isinstance(item, dict):
        return item
    if isinstance(item, sympy.Basic):
        if item.is_Integer:
            return int(item)
        if item.is_number:
            value = complex(item)
            if value.imag == 0:
                return float(value.real)
        return item
    return item


# ---------------------------------------------------------------------------------------

def parse_statements(text: str, file: str = "<string>") -> list[Stmt]:
    """Parse spec text into statements, turning Lark's errors into :class:`SpecError`."""
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#")
                               for ln in text.splitlines()):
        raise SpecSyntaxError("empty spec: expected a `system` or a `use` line", Pos(file, 1, 1),
                              text)
    if not text.endswith("\n"):
        text = text + "\n"
    try:
        tree = grammar().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    except RecursionError:
        raise SpecSyntaxError("expression nested too deeply", Pos(file, 1, 1), text) from None
    try:
        return _ToStatements(file, text).transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        if isinstance(inner, SpecError):
            if inner.pos is None:
                meta = getattr(exc.obj, "meta", None)
                pos = Pos(file, getattr(meta, "line", 1), getattr(meta, "column", 1))
                raise type(inner)(inner.message, pos, text, hint=inner.hint) from None
            raise inner from None
        if isinstance(inner, RecursionError):
            raise SpecSyntaxError("expression nested too deeply", Pos(file, 1, 1), text) from None
        if isinstance(inner, (ValueError, TypeError, ArithmeticError, OverflowError)):
            meta = getattr(exc.obj, "meta", None)
            pos = Pos(file, getattr(meta, "line", 1), getattr(meta, "column", 1))
            raise SpecSyntaxError(f"cannot build this expression ({inner})", pos, text) from None
        raise
    except RecursionError:
        raise SpecSyntaxError("expression nested too deeply", Pos(file, 1, 1), text) from None


_TOKEN_WORDS = {
    "_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of block",
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a quoted string",
    "CMP": "a comparison", "POW": "'^'",
    "$END": "end of file",
}


def _describe_expected(expected, parser: Lark) -> tuple[list[str], list[str]]:
    """Human words for the expected terminals, and the keywords among them."""
    words, keywords = [], []
    for name in sorted(expected):
        if name in _TOKEN_WORDS:
            words.append(_TOKEN_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            words.append(name)
            continue
        value = getattr(pattern, "value", name)
        if pattern.type == "str":
            words.append(f"'{value}'")
            if value.isidentifier():
                keywords.append(value)
        else:
            words.append(name.lower())
    return sorted(set(words)), keywords


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> SpecSyntaxError:
    parser = grammar()
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    if isinstance(exc, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or set()
    words, keywords = _describe_expected(expected, parser)
    hint = None
    length = 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        got = str(tok)
        length = max(1, len(got))
        if tok.type in ("_INDENT",):
            message = "unexpected indentation"
        elif tok.type == "_DEDENT":
            message = "unexpected end of block"
        elif tok.type == "_NL":
            message = "unexpected end of line"
        elif tok.type == "$END":
            message = "unexpected end of file"
        else:
            message = f"unexpected '{got}'"
        if got.isidentifier() and keywords:
            hint = suggest(got, keywords)
    elif isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        message = f"unexpected character {char!r}"
        word_end = exc.pos_in_stream
        while word_end < len(text) and (text[word_end].isalnum() or text[word_end] == "_"):
            word_end += 1
        word = text[exc.pos_in_stream:word_end]
        if word and keywords:
            hint = suggest(word, keywords)
            length = len(word)
            message = f"unexpected '{word}'"
    else:
        message = "unexpected end of input"
    if words:
        shown = words if len(words) <= 8 else words[:8] + ["…"]
        message += "; expected " + ", ".join(shown)
    return SpecSyntaxError(message, Pos(file, line, column), text, hint=hint, length=length)
