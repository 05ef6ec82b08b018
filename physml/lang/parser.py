"""Text → parse tree → statements (with SymPy expressions and positions).

The Transformer builds SymPy objects directly from tree nodes: numbers from NUMBER tokens,
symbols from NAME tokens, operators from operator nodes. No text is ever given to
``sympify``, ``eval`` or ``exec``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sympy
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.indenter import Indenter

from .. import limits
from ..errors import OperatorError, Pos, SpecError, SpecSyntaxError, UnknownSymbolError, suggest
from ..symbolic.functions import FUNCTIONS, TORCH_FUNCTIONS, SpatialOperator

#: Guard against numbers whose exact value would take forever to compute (9^9^9^9): exact
#: integers and rationals stay below 2^2048, far beyond any physical constant.
_MAX_EXACT_BITS = 2048

#: A constant argument of a function is folded only if it is this simple; anything else is
#: evaluated in floating point, because SymPy's arbitrary-precision evaluation of, e.g.,
#: sign(sin(exp(10^10))) may run for hours.
_SIMPLE_MAGNITUDE = 1e6
#: what ``constraint ... hard`` parses to (a marker where ``weight W`` puts a number)
_HARD = object()

#: Largest exponent of a power of a variable (x^1000 is already far from physics).
_MAX_EXPONENT = 1000

_MATH = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "log": math.log,
    "sqrt": math.sqrt, "tanh": math.tanh, "sinh": math.sinh, "cosh": math.cosh,
    "Abs": abs, "atan": math.atan, "sign": lambda v: float((v > 0) - (v < 0)),
    "Min": min, "Max": max,
}


def approx(expr) -> float:
    """The float value of a constant SymPy expression, in bounded time.

    Unlike ``sympy.N`` this never raises the working precision: it evaluates the tree in
    IEEE doubles (the precision every later stage uses anyway). Returns ``nan`` for values
    that are not real or not defined, ``±inf`` for overflow.
    """
    try:
        return float(_approx(expr))
    except (OverflowError, ValueError, ZeroDivisionError, TypeError, RecursionError):
        return math.nan


def _big(p: int) -> float:
    try:
        return float(p)
    except OverflowError:
        return math.inf if p > 0 else -math.inf


def _approx(e) -> float:
    if isinstance(e, (int, float)):
        return float(e)
    if e.is_Integer:
        return _big(int(e))
    if e.is_Rational:
        p, q = int(e.p), int(e.q)
        try:
            return p / q
        except OverflowError:
            return math.inf if p > 0 else -math.inf
    if e.is_Float:
        return float(e)
    if e is sympy.zoo or e is sympy.nan:
        return math.nan
    if e is sympy.oo:
        return math.inf
    if e is sympy.S.NegativeInfinity:
        return -math.inf
    if isinstance(e, sympy.NumberSymbol):
        return float(e)
    if e.is_Add:
        return math.fsum(_approx(a) for a in e.args)
    if e.is_Mul:
        out = 1.0
        for a in e.args:
            out *= _approx(a)
        return out
    if e.is_Pow:
        b, x = _approx(e.base), _approx(e.exp)
        try:
            return math.pow(b, x)
        except OverflowError:
            return math.inf
    if isinstance(e, SpatialOperator):
        return 0.0
    if isinstance(e, sympy.Piecewise):
        for value, cond in e.args:
            if _truth(cond):
                return _approx(value)
        return math.nan
    name = type(e).__name__
    args = [_approx(a) for a in e.args]
    if name in _MATH:
        try:
            return _MATH[name](*args)
        except OverflowError:
            return math.inf
    fn = TORCH_FUNCTIONS.get(name)
    if fn is None:
        return math.nan
    import torch

    return float(fn(*[torch.tensor(a, dtype=torch.float64) for a in args]))


def _truth(cond) -> bool:
    if cond is sympy.true or cond is True:
        return True
    if cond is sympy.false or cond is False:
        return False
    if isinstance(cond, sympy.And):
        return all(_truth(c) for c in cond.args)
    if isinstance(cond, sympy.Or):
        return any(_truth(c) for c in cond.args)
    if isinstance(cond, sympy.Not):
        return not _truth(cond.args[0])
    lhs, rhs = _approx(cond.lhs), _approx(cond.rhs)
    return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs,
            "==": lhs == rhs, "!=": lhs != rhs}[cond.rel_op]


def _real_pow(b: float, e: float) -> float | None:
    try:
        return math.pow(b, e)
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError):
        return None if b < 0 else math.inf


def _apply_float(fname: str, fdef, args) -> float:
    """A function of constants, evaluated in doubles (``nan`` if not real)."""
    values = [approx(a) for a in args]
    if any(math.isnan(v) for v in values):
        return math.nan
    fn = _MATH.get(getattr(fdef.sympy, "__name__", fname)) or _MATH.get(fname)
    try:
        if fn is not None:
            return float(fn(*values))
        import torch

        return float(fdef.torch(*[torch.tensor(v, dtype=torch.float64) for v in values]))
    except OverflowError:
        return math.inf
    except (ValueError, ZeroDivisionError, TypeError):
        return math.nan


def _simple_number(e) -> bool:
    """A constant SymPy evaluates instantly: a small rational, a float, pi, E or q*pi."""
    if e.is_Rational or e.is_Float or isinstance(e, sympy.NumberSymbol):
        return abs(_approx(e)) < _SIMPLE_MAGNITUDE
    if e.is_Mul and len(e.args) == 2 and e.args[0].is_Rational and \
            isinstance(e.args[1], sympy.NumberSymbol):
        return abs(_approx(e)) < _SIMPLE_MAGNITUDE
    return False


class _IndentProblem(Exception):
    """Raised by the indenter (outside Lark's error types) with where the problem is."""

    def __init__(self, message: str, line: int, column: int, length: int = 1, hint=None):
        super().__init__(message)
        self.message, self.line, self.column, self.length, self.hint = \
            message, line, column, length, hint


class _PhyIndenter(Indenter):
    """Lark's indenter with positions on INDENT/DEDENT and errors that say where.

    Lark's own version raises a bare ``DedentError`` (no position) on an inconsistent
    dedent and asserts on a stray closing bracket; both become :class:`_IndentProblem`.
    """

    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4

    def _marker(self, kind: str, indent_str: str, token: Token) -> Token:
        # Point at the first character of the indented line, not at the previous newline.
        tok = Token.new_borrow_pos(kind, indent_str, token)
        tok.line = tok.end_line = token.end_line
        tok.column = len(indent_str) + 1
        tok.end_column = tok.column
        return tok

    def handle_NL(self, token: Token):
        if self.paren_level > 0:
            return
        yield token
        indent_str = token.rsplit("\n", 1)[1]
        indent = indent_str.count(" ") + indent_str.count("\t") * self.tab_len
        if indent > self.indent_level[-1]:
            self.indent_level.append(indent)
            yield self._marker(self.INDENT_type, indent_str, token)
            return
        levels = list(self.indent_level)
        while indent < self.indent_level[-1]:
            self.indent_level.pop()
            yield self._marker(self.DEDENT_type, indent_str, token)
        if indent != self.indent_level[-1]:
            raise _IndentProblem(
                f"inconsistent indentation: this line is indented by {indent}, which matches "
                f"no enclosing block (indentations in use: {', '.join(map(str, levels))})",
                token.end_line, len(indent_str) + 1,
                hint="indent every line of a block by the same amount (4 spaces)")

    def _process(self, stream):
        token = None
        for token in stream:
            if token.type == self.NL_type:
                yield from self.handle_NL(token)
            else:
                yield token
            if token.type in self.OPEN_PAREN_types:
                self.paren_level += 1
            elif token.type in self.CLOSE_PAREN_types:
                if self.paren_level == 0:
                    raise _IndentProblem(f"unmatched '{token}'", token.line, token.column,
                                         hint="remove it, or add the opening bracket it closes")
                self.paren_level -= 1
        while len(self.indent_level) > 1:
            self.indent_level.pop()
            yield Token.new_borrow_pos(self.DEDENT_type, "", token) if token else \
                Token(self.DEDENT_type, "", 0, 1, 1, 1, 1, 0)


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
            raise self._err(UnknownSymbolError, f"unknown function '{fname}'", tok,
                            hint=suggest(fname, [*FUNCTIONS, "piecewise"]))
        if len(args) not in fdef.nargs:
            want = " or ".join(str(n) for n in fdef.nargs)
            raise self._err(OperatorError,
                            f"{fname}() takes {want} argument{'s' if fdef.nargs != (1,) else ''}, "
                            f"got {len(args)}", tok, length=len(fname))
        if not fdef.spatial and args and all(a.is_number for a in args) and \
                not all(_simple_number(a) for a in args):
            # A constant too complicated for SymPy to evaluate cheaply: fold it to a float.
            value = _apply_float(fname, fdef, args)
            if not math.isfinite(value):
                raise self._err(SpecSyntaxError, f"the value of {fname}(…) is not a finite real "
                                "number", tok, length=len(fname))
            return sympy.Float(value)
        if fdef.sympy in (sympy.Min, sympy.Max) and not all(a.is_number for a in args):
            # Min/Max query the assumptions of their arguments, which can crawl on odd input.
            node = fdef.sympy(*args, evaluate=False)
        else:
            node = fdef.sympy(*args)
        self._check_exact(node)
        if not fdef.spatial and node.is_number and not math.isfinite(approx(node)):
            raise self._err(SpecSyntaxError, f"the value of {fname}(…) is not a finite real "
                            "number", tok, length=len(fname))
        if fdef.spatial:
            self._calls.append(CallRef(fname, node, self._pos(tok), len(fname)))
        return node

    # -- arithmetic ---------------------------------------------------------------------
    @staticmethod
    def _check_exact(node):
        """Numbers SymPy would crawl on: exact rationals beyond :data:`_MAX_EXACT_BITS`, and
        huge exponents of symbols (SymPy's assumptions expand them as polynomials)."""
        if isinstance(node, sympy.Rational) and \
                max(abs(int(node.p)).bit_length(), int(node.q).bit_length()) > _MAX_EXACT_BITS:
            raise SpecSyntaxError("number too large", None)
        for part in (node, *node.args):
            if part.is_Pow and not part.base.is_number and part.exp.is_number and \
                    not abs(approx(part.exp)) <= _MAX_EXPONENT:
                raise SpecSyntaxError(f"exponent too large (at most {_MAX_EXPONENT} for a "
                                      "power of a variable)", None)
        return node

    def add(self, c):
        return self._check_exact(sympy.Add(c[0], c[1]))

    def sub(self, c):
        return self._check_exact(sympy.Add(c[0], -c[1]))

    def mul(self, c):
        return self._check_exact(sympy.Mul(c[0], c[1]))

    def div(self, c):
        if c[1] == 0:
            raise SpecSyntaxError("division by zero", None)
        return self._check_exact(sympy.Mul(c[0], sympy.Pow(c[1], -1)))

    def sum_chain(self, c):
        """``a + b - c …`` (flattened by :func:`_flatten_chains`): one SymPy Add, built
        once, so a sum of n terms costs O(n), not O(n²)."""
        terms = [c[0]] + [t if op == "+" else -t for op, t in zip(c[1::2], c[2::2])]
        return self._check_exact(sympy.Add(*terms))

    def prod_chain(self, c):
        """``a * b / c …``: one SymPy Mul."""
        factors = [c[0]]
        for op, f in zip(c[1::2], c[2::2]):
            if op == "/":
                if f == 0:
                    raise SpecSyntaxError("division by zero", None)
                f = sympy.Pow(f, -1)
            factors.append(f)
        return self._check_exact(sympy.Mul(*factors))

    def neg(self, c):
        return -c[0]

    def unary(self, c):  # unary plus
        return c[0]

    def pow(self, c):
        base, _, exp = c
        if base.is_number and exp.is_number:
            b, e = approx(base), approx(exp)
            if math.isnan(b) or math.isnan(e) or _real_pow(b, e) is None:
                raise SpecSyntaxError("this power has no real value", None)
            if b == 0 and e < 0:
                raise SpecSyntaxError("zero to a negative power", None)
            if abs(b) not in (0.0, 1.0) and (math.isinf(b) or math.isinf(e) or
                                            abs(e * math.log2(abs(b))) > _MAX_EXACT_BITS):
                raise SpecSyntaxError("number too large in a power", None)
        return self._check_exact(sympy.Pow(base, exp))

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
        return (int(c[0]), self._name(c[1]), self._pos(c[0]), len(c[0]))

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
        return self._stmt("history", meta, k=int(c[0]), kpos=self._pos(c[0]), length=len(c[0]))

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
        return self._stmt("solver", meta, call=self._bare_call(c[0]))

    @v_args(meta=True)
    def seed(self, meta, c):
        return self._stmt("seed", meta, seed=int(c[0]), spos=self._pos(c[0]), length=len(c[0]))

    @v_args(meta=True)
    def data_file(self, meta, c):
        return self._stmt("file", meta, path=str(c[0])[1:-1], ppos=self._pos(c[0]),
                          length=len(c[0]))

    @v_args(meta=True)
    def data_split(self, meta, c):
        return self._stmt("split", meta, at=c[0])

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
        return (self._name(c[0]), c[2], c[1])

    def per_env(self, c):
        return True

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
    def _bare_call(self, item):
        """A bare name where a call may stand (`augment none`, `train physics`)."""
        if isinstance(item, Token):
            return {"name": self._name(item), "args": [], "kwargs": [], "pos": self._pos(item)}
        return item

    @v_args(meta=True)
    def augment_decl(self, meta, c):
        on = next((x[1] for x in c[1:] if x[0] == "on"), [])
        with_ = next((x[1] for x in c[1:] if x[0] == "with"), [])
        return self._stmt("augment", meta, call=self._bare_call(c[0]), on=on, with_=with_)

    @v_args(meta=True)
    def per_environment_decl(self, meta, c):
        return self._stmt("per_environment", meta, call=self._bare_call(c[0]))

    def augment_on(self, c):
        return ("on", [self._name(t) for t in c])

    def augment_with(self, c):
        return ("with", [self._name(t) for t in c])

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
    def discover_default(self, meta, c):
        return ("default", Pos(self.file, meta.line, meta.column), None)

    @v_args(meta=True)
    def discover_poly(self, meta, c):
        return ("poly", Pos(self.file, meta.line, meta.column), (int(c[0]), len(c[0])))

    @v_args(meta=True)
    def discover_term(self, meta, c):
        return ("term", Pos(self.file, meta.line, meta.column), c[0])

    @v_args(meta=True)
    def discover_decl(self, meta, c):
        return self._stmt("discover", meta, items=c)

    @v_args(meta=True)
    def observe_decl(self, meta, c):
        return self._stmt("observe", meta, exprs=list(c))

    @v_args(meta=True)
    def encoder_decl(self, meta, c):
        return self._stmt("encoder", meta, call=c[0], given=c[1] if len(c) > 1 else [])

    def encoder_given(self, c):
        return [self._name(t) for t in c]

    @v_args(meta=True)
    def constraint_decl(self, meta, c):
        hard = c[-1] is _HARD
        weight = c[3] if len(c) > 3 and c[3] is not _HARD else None
        return self._stmt("constraint", meta, lhs=c[0], rhs=c[1], cond=c[2], weight=weight,
                          hard=hard)

    def constraint_weight(self, c):
        return c[0]

    def constraint_hard(self, c):
        return _HARD

    def option(self, c):
        return (self._name(c[0]), _value(c[1]))

    @v_args(meta=True)
    def solver_option(self, meta, c):
        """``solver NAME(key=value, …)``: the value is the call (a bare name or a string
        is a call without options)."""
        key = Name("solver", Pos(self.file, meta.line, meta.column))
        item = c[0]
        if isinstance(item, Token) and item.type == "STRING":
            item = Token("NAME", str(item)[1:-1], line=item.line, column=item.column + 1)
        return (key, self._bare_call(item))

    @v_args(meta=True)
    def step_option(self, meta, c):
        return (Name("step", Pos(self.file, meta.line, meta.column)), _value(c[0]))

    @v_args(meta=True)
    def train_decl(self, meta, c):
        return self._stmt("train", meta, call=self._bare_call(c[0]), options=c[1:])

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
            value = approx(item)
            if not math.isnan(value):
                return value
        return item
    return item


# ---------------------------------------------------------------------------------------

#: Deepest expression nesting accepted (see :mod:`physml.limits`). Deeper trees would
#: overflow Python's recursion in the Transformer or in SymPy; no physical model needs more
#: than a few levels. Chains of ``+ -`` and of ``* /`` are flattened first, so a long flat
#: sum counts as one level.
MAX_DEPTH = limits.MAX_NESTING

#: Parse-tree nodes that belong to expressions (for the expression-size limit).
_EXPR_NODES = frozenset({"add", "sub", "sum_chain", "mul", "div", "prod_chain", "neg", "pow",
                         "number", "name", "func", "piecewise", "branch", "comparison",
                         "cond_or", "cond_and", "cond_not"})
_CHAINS = {"add": "sum_chain", "sub": "sum_chain", "mul": "prod_chain", "div": "prod_chain"}
_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _flatten_chains(node: Tree) -> None:
    """Rewrite a left-recursive chain ``((a + b) - c) + d`` (one node per operator, as the
    LALR grammar builds it) into one ``sum_chain`` node ``[a, '+', b, '-', c, '+', d]``;
    likewise ``prod_chain`` for ``* /``. In place; ``node`` heads a chain."""
    chain = _CHAINS[node.data]
    pairs = []
    cur = node
    while isinstance(cur, Tree) and _CHAINS.get(cur.data) == chain:
        left, right = cur.children
        pairs.append((Token("_OP", _OPS[cur.data]), right))
        cur = left
    children = [cur]
    for op, term in reversed(pairs):
        children += [op, term]
    node.data = chain
    node.children = children


def _walk(tree: Tree, file: str, text: str) -> None:
    """One iterative pass over the tree: flatten operator chains, then enforce the nesting
    and expression-size limits with a located error (never recursive, so a hostile file
    cannot overflow the stack before it is refused)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Tree, int, Tree | None]] = [(tree, 0, None)]
    while stack:
        node, depth, owner = stack.pop()
        if node.data in _CHAINS:
            _flatten_chains(node)
        if depth > MAX_DEPTH:
            raise _limit_error(f"expression nested too deeply (more than {MAX_DEPTH} levels)",
                               node, file, text, "split it with `let` definitions")
        if node.data in _EXPR_NODES:
            owner = owner or node
            n = sizes[id(owner)] = sizes.get(id(owner), 0) + 1
            if n > limits.MAX_EXPR_NODES:
                raise _limit_error(f"expression too large (more than {limits.MAX_EXPR_NODES} "
                                   "terms and operations)", owner, file, text,
                                   "split it with `let` definitions")
        else:
            owner = None
        stack.extend((c, depth + 1, owner) for c in node.children if isinstance(c, Tree))


def _limit_error(message: str, node: Tree, file: str, text: str, hint: str) -> SpecSyntaxError:
    meta = node.meta
    return SpecSyntaxError(message, Pos(file, getattr(meta, "line", 1),
                                        getattr(meta, "column", 1)), text, hint=hint)


def _prescan(text: str, file: str) -> None:
    """Limits checked on the raw text before Lark sees it, in one linear pass: the length
    of each line and the depth of brackets (a hundred thousand nested parentheses are
    refused at the first one too many, not after the parser built them all)."""
    if len(text) > limits.MAX_SPEC_BYTES:
        raise SpecSyntaxError(f"spec too large ({len(text)} characters; at most "
                              f"{limits.MAX_SPEC_BYTES})", Pos(file, 1, 1),
                              hint="a spec describes a system in a few lines; generate "
                              "large parameter tables as data instead")
    start = 0
    for number, line in enumerate(text.split("\n"), 1):
        if len(line) > limits.MAX_LINE_CHARS:
            raise SpecSyntaxError(f"line too long ({len(line)} characters; at most "
                                  f"{limits.MAX_LINE_CHARS})", Pos(file, number,
                                                                  limits.MAX_LINE_CHARS + 1),
                                  text, hint="break it with a backslash at the end of a line, or "
                                  "split it with `let` definitions")
        start += len(line) + 1
    depth, line, col, i, n = 0, 1, 1, 0, len(text)
    # Brackets inside comments and strings do not count (same rules as the lexer).
    token = re.compile(r'[()\[\]\n#"]')
    while True:
        m = token.search(text, i)
        if m is None:
            return
        j = m.start()
        col += j - i
        ch = text[j]
        i = j + 1
        if ch == "\n":
            line, col = line + 1, 1
            continue
        if ch == "#":
            k = text.find("\n", i)
            i = n if k == -1 else k
            col += i - j
            continue
        if ch == '"':
            k = text.find('"', i)
            nl = text.find("\n", i)
            if k != -1 and (nl == -1 or k < nl):
                col += k - j + 1
                i = k + 1
                continue
        elif ch in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecSyntaxError(f"expression nested too deeply (more than {MAX_DEPTH} "
                                      "levels)", Pos(file, line, col), text,
                                      hint="split the expression with `let` definitions")
        elif depth > 0:
            depth -= 1
        col += 1


def _is_blank(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.split("\n"))


def parse_statements(text: str, file: str = "<string>") -> list[Stmt]:
    """Parse spec text into statements, turning Lark's errors into :class:`SpecError`.

    Bounded: the limits of :mod:`physml.limits` (file size, line length, nesting,
    expression size) are checked in linear time, each with a located error.
    """
    if _is_blank(text):
        what = "only comments" if text.strip() else "nothing"
        raise SpecSyntaxError(f"empty spec: the file contains {what}", Pos(file, 1, 1), text,
                              hint="a system file starts with `system NAME`, an experiment "
                              "with `use NAME`")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise SpecSyntaxError("the file contains a NUL byte (is it a binary file?)",
                              Pos(file, line, 1), text)
    _prescan(text, file)
    if not text.endswith("\n"):
        text = text + "\n"
    try:
        tree = grammar().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text, file) from None
    except _IndentProblem as exc:
        raise SpecSyntaxError(exc.message, Pos(file, exc.line, exc.column), text,
                              hint=exc.hint, length=exc.length) from None
    _walk(tree, file, text)
    try:
        return _ToStatements(file, text).transform(tree)
    except VisitError as exc:
        inner = exc.orig_exc
        meta = getattr(exc.obj, "meta", None)
        pos = Pos(file, getattr(meta, "line", 1), getattr(meta, "column", 1))
        length = 1
        if meta is not None and getattr(meta, "end_line", None) == getattr(meta, "line", 0):
            length = max(1, meta.end_column - meta.column)
        if isinstance(inner, SpecError):
            if inner.pos is None:
                raise type(inner)(inner.message, pos, text, hint=inner.hint,
                                  length=length) from None
            raise inner from None
        if isinstance(inner, RecursionError):
            raise SpecSyntaxError("expression nested too deeply", pos, text) from None
        if isinstance(inner, (ValueError, TypeError, ArithmeticError, OverflowError)):
            raise SpecSyntaxError(f"cannot build this expression ({inner})", pos, text,
                                  length=length) from None
        raise


#: Expected terminals, grouped into the words a person would use.
_EXPR_START = {"NAME", "NUMBER", "LPAR", "MINUS", "PLUS", "PIECEWISE"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "POW"}
_TOKEN_WORDS = {
    "_NL": "the end of the line", "$END": "the end of the file",
    "_INDENT": "an indented block", "NAME": "a name", "NUMBER": "a number",
    "INT": "a whole number", "STRING": 'a quoted "string"', "CMP": "a comparison (< <= > >= == !=)",
    "POW": "'^'", "D": "an equation d(VAR)/dt = …",
}
#: Keyword groups in grammar order: a long list of keywords reads as "a statement".
_KEYWORD_GROUPS = [
    ("a statement", ["system", "use", "domain", "boundary", "state", "field", "mask", "param",
                     "let", "dynamics", "data", "prior", "augment", "per_environment",
                     "environments", "observe", "encoder", "constraint", "discover",
                     "train"]),
    ("a `data:` entry", ["trajectories", "time", "initial", "noise", "solver", "seed", "file",
                         "map", "history", "warmup", "split"]),
    ("a `prior:` entry", ["d", "let", "param", "learn", "hamiltonian", "stencil"]),
]


def _join(words: list[str], last: str = "or") -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {last} " + words[-1]


def _describe_expected(expected, parser: Lark) -> tuple[str, list[str]]:
    """English for the expected terminals, and the keywords among them (for suggestions)."""
    expected = set(expected)
    words: list[str] = []
    keywords = []
    for name in expected:
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str" and pattern.value.isidentifier():
            keywords.append(pattern.value)
    for label, group in _KEYWORD_GROUPS:
        found = [k for k in group if k in keywords]
        if len(found) >= 3 and len(found) >= len(keywords) - 1:
            shown = ", ".join("d(VAR)/dt = …" if k == "d" else k for k in found)
            words.append(f"{label} ({shown})")
            expected -= {k.upper() for k in found}
            break
    if {"NAME", "NUMBER"} <= expected:
        words.append("an expression")
        expected -= _EXPR_START
    if len(expected & _OPERATORS) >= 3:
        words.append("an operator (+ - * / ^)")
        expected -= _OPERATORS
    if "_NL" in expected or "$END" in expected:
        expected -= {"_DEDENT"}
    if "_NL" in expected or words:  # "or the end of the file" only when nothing else fits
        expected -= {"$END"}
    for name in sorted(expected):
        if name in _TOKEN_WORDS:
            words.append(_TOKEN_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        if pattern.type == "str":
            words.append(f"'{pattern.value}'")
    # Keep the order stable and readable: symbols and words first, end of line last.
    end = [w for w in words if w.startswith("the end")]
    words = list(dict.fromkeys(w for w in words if not w.startswith("the end"))) + end[:1]
    return _join(words), keywords


def _unclosed_bracket(text: str, upto: int) -> tuple[int, int, str] | None:
    """(line, column, char) of the last bracket still open at offset ``upto``, if any."""
    stack: list[tuple[int, int, str]] = []
    line, col, i = 1, 1, 0
    pairs = {")": "(", "]": "["}
    while i < min(upto, len(text)):
        ch = text[i]
        if ch == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if ch == '"':
            j = text.find('"', i + 1)
            nl = text.find("\n", i + 1)
            if j != -1 and (nl == -1 or j < nl):
                col += j - i + 1
                i = j + 1
                continue
        if ch in "([":
            stack.append((line, col, ch))
        elif ch in ")]" and stack and stack[-1][2] == pairs[ch]:
            stack.pop()
        if ch == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack[-1] if stack else None


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    return sum(len(ln) + 1 for ln in lines[:line - 1]) + column - 1


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> SpecSyntaxError:
    parser = grammar()
    line = getattr(exc, "line", None) or 1
    column = getattr(exc, "column", None) or 1
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken)
                                          and exc.token.type == "$END"):
        lines = text.rstrip("\n").split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    try:  # the precise set: which tokens the parser would really accept here
        expected = exc.interactive_parser.accepts() if exc.interactive_parser else None
    except Exception:  # noqa: BLE001 - accepts() is best effort; fall back to Lark's set
        expected = None
    if not expected:
        expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None) or set()
    described, keywords = _describe_expected(expected, parser)
    hint = None
    length = 1
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        got = str(tok)
        length = max(1, len(got))
        if tok.type == "_INDENT":
            message = "unexpected indentation"
            line, column, length = tok.line, 1, max(1, len(got))
        elif tok.type == "_DEDENT":
            message = "unexpected end of block"
            line, column = tok.line, tok.column
        elif tok.type == "_NL":
            message = "unexpected end of line"
            length = 1
        elif tok.type == "$END":
            message = "unexpected end of file"
        else:
            message = f"unexpected '{got}'"
        if got.isidentifier() and keywords:
            hint = suggest(got, keywords)
    elif isinstance(exc, UnexpectedCharacters):
        start = exc.pos_in_stream
        char = text[start] if start < len(text) else ""
        word_end = start
        while word_end < len(text) and (text[word_end].isalnum() or text[word_end] == "_"):
            word_end += 1
        word = text[start:word_end]
        if word and (word[0].isalpha() or word[0] == "_"):
            message = f"unexpected '{word}'"
            length = len(word)
            if keywords:
                hint = suggest(word, keywords)
        elif char == '"':
            message = "unterminated string (a string ends with \" on the same line)"
        elif char.isdigit() or char.isnumeric():
            message = (f"unexpected character {char!r}: numbers are written with the ASCII "
                       "digits 0-9")
        elif char in "`'":
            message = f"unexpected character {char!r}: strings are written in double quotes"
        else:
            message = f"unexpected character {char!r}"
    else:
        message = "unexpected end of input"
    if described:
        message += f"; expected {described}"
    opened = _unclosed_bracket(text, _offset(text, line, column))
    if opened is not None and opened[0] < line and opened == _unclosed_bracket(text, len(text)):
        # Newlines inside brackets do not end a statement, so a bracket left open makes the
        # parser fail lines later; the bracket is what the person has to fix.
        closer = ")" if opened[2] == "(" else "]"
        return SpecSyntaxError(f"'{opened[2]}' is never closed", Pos(file, opened[0],
                               opened[1]), text, hint=f"add the missing '{closer}'")
    if opened is not None and message.startswith("unexpected end"):
        closer = ")" if opened[2] == "(" else "]"
        if opened[0] < line:
            return SpecSyntaxError(f"'{opened[2]}' is never closed", Pos(file, opened[0],
                                   opened[1]), text, hint=f"add the missing '{closer}'")
        hint = hint or f"the '{opened[2]}' at column {opened[1]} is never closed; add '{closer}'"
    return SpecSyntaxError(message, Pos(file, line, column), text, hint=hint, length=length)
