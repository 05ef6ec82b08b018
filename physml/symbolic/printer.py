"""A :class:`~physml.symbolic.spec.Spec` written back as ``.phy`` text.

:func:`format_spec` is the inverse of the parser: ``parse_spec(format_spec(spec))``
equals ``spec`` (positions and the original text aside). Expressions are written in the
language's own spelling — ``^`` for powers, ``abs``, ``min``, ``max``, ``sqrt``,
``piecewise(a, c; b)``, ``and``/``or``/``not`` — and every number exactly (a float as its
shortest round-tripping ``repr``), so a written spec parses to the same SymPy trees.

Expressions are written from the grammar's precedence levels (``sum`` ⊃ ``product`` ⊃
``unary`` ⊃ ``power`` ⊃ ``atom``): a subexpression is parenthesised only where its level
is lower than the one its position asks for.
"""
from __future__ import annotations

import math

import sympy

from .functions import FUNCTIONS, SpatialOperator
from .spec import Call, DataSpec, DiscoverSpec, Param, PriorSpec, Spec, System

# Precedence levels of the grammar (physml.lark, "expressions").
_SUM, _PRODUCT, _UNARY, _POWER, _ATOM = range(5)
# Condition levels: or ⊃ and ⊃ not ⊃ comparison (conditions have no brackets).
_OR, _AND, _NOT, _CMP = range(4)

_RELATION_OPS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
                 sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!="}


class PrintError(ValueError):
    """A spec part the language cannot write (a SymPy form no ``.phy`` text parses to)."""


def _function_names() -> dict[str, str]:
    """SymPy class name → the language's name (``Abs`` → ``abs``)."""
    out = {}
    for name, fdef in FUNCTIONS.items():
        node = getattr(fdef.sympy, "__name__", None)
        if node:
            out.setdefault(node, name)
    return out


def number(x: float | int) -> str:
    """A float or int, exactly (``6`` for 6.0, ``0.001``, ``1e-05``, ``inf``)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        raise PrintError("NaN has no spelling in the language")
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


class _ExprPrinter:
    def __init__(self):
        self.functions = _function_names()

    # Each method returns (text, level): the level at which the text parses as written.
    def __call__(self, expr, level: int = _SUM) -> str:
        text, own = self._print(expr)
        return f"({text})" if own < level else text

    def _print(self, e) -> tuple[str, int]:
        if e is sympy.pi:
            return "pi", _ATOM
        if e is sympy.E:
            return "exp(1)", _ATOM
        if e.is_Integer:
            n = int(e)
            return (str(n), _ATOM) if n >= 0 else (str(n), _UNARY)
        if e.is_Rational:
            p, q = int(e.p), int(e.q)
            return f"{p}/{q}", _PRODUCT
        if e.is_Float:
            text = repr(float(e))
            if text in ("inf", "-inf", "nan"):
                raise PrintError(f"the number {e} has no spelling in the language")
            return text, (_UNARY if text.startswith("-") else _ATOM)
        if e.is_Symbol:
            return e.name, _ATOM
        if e.is_Add:
            return self._add(e), _SUM
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        if isinstance(e, sympy.Piecewise):
            return self._piecewise(e), _ATOM
        if isinstance(e, SpatialOperator):
            return f"{type(e).__name__}({', '.join(self(a) for a in e.args)})", _ATOM
        if isinstance(e, (sympy.Function, sympy.Min, sympy.Max)):
            cls = type(e).__name__
            name = self.functions.get(cls)
            if name is None:
                raise PrintError(f"the function {cls}() is not part of the language; register "
                                 "it with physml.symbolic.register_function")
            return f"{name}({', '.join(self(a) for a in e.args)})", _ATOM
        raise PrintError(f"cannot write {type(e).__name__} ({e}) in the language")

    def _add(self, e) -> str:
        terms = list(e.as_ordered_terms())
        out = [self(terms[0], _SUM)]
        for t in terms[1:]:
            if _negative(t):
                out.append(f"- {self(-t, _PRODUCT)}")
            else:
                out.append(f"+ {self(t, _PRODUCT)}")
        return " ".join(out)

    def _mul(self, e) -> tuple[str, int]:
        coeff, rest = e.as_coeff_Mul()
        # SymPy's own reading order (u^2*v, not v*u^2), the numeric coefficient apart
        factors = rest.as_ordered_factors() if rest.is_Mul else [rest]
        num, den = [], []
        for f in factors:
            if f.is_Pow and f.exp.is_number and f.exp.is_negative:
                den.append(sympy.Pow(f.base, -f.exp))
            else:
                num.append(f)
        sign = ""
        if coeff.is_Rational and not coeff.is_Integer:
            p, q = int(coeff.p), int(coeff.q)
            if p < 0:
                sign, p = "-", -p
            head = [] if p == 1 else [str(p)]
            den.insert(0, sympy.Integer(q))
        elif coeff == -1 and coeff.is_Integer:
            sign, head = "-", []
        elif coeff == 1 and coeff.is_Integer:
            head = []
        else:  # an Integer other than ±1 or a Float
            text = self(coeff, _UNARY)
            if text.startswith("-"):
                sign, text = "-", text[1:]
            head = [text]
        parts = head + [self(f, _UNARY) for f in num]
        if not parts or (sign and not head and num[0].is_Add):
            # `-(a + b)*c` would negate the bracket first (SymPy then distributes the
            # sign over it); `-1*(a + b)*c` is one product, as the tree is.
            parts.insert(0, "1")
        text = sign + "*".join(parts)
        for d in den:
            text += f"/{self(d, _UNARY)}"
        return text, _PRODUCT

    def _pow(self, e) -> tuple[str, int]:
        base, exp = e.base, e.exp
        if exp.is_number and exp.is_negative:
            return f"1/{self(sympy.Pow(base, -exp), _UNARY)}", _PRODUCT
        if exp == sympy.Rational(1, 2):
            return f"sqrt({self(base)})", _ATOM
        return f"{self(base, _ATOM)}^{self(exp, _UNARY)}", _POWER

    def _piecewise(self, e) -> str:
        parts = []
        for i, (value, cond) in enumerate(e.args):
            last = i == len(e.args) - 1
            if cond is sympy.true and last:
                parts.append(self(value))
            else:
                parts.append(f"{self(value)}, {self.condition(cond)}")
        if e.args[-1][1] is not sympy.true:
            raise PrintError("a piecewise needs a last branch without condition")
        return f"piecewise({'; '.join(parts)})"

    def condition(self, c, level: int = _OR) -> str:
        text, own = self._cond(c)
        if own < level:
            raise PrintError(f"the condition {c} needs brackets, which conditions cannot have")
        return text

    def _cond(self, c) -> tuple[str, int]:
        if isinstance(c, sympy.Or):
            return " or ".join(self.condition(a, _AND) if i else self.condition(a, _OR)
                               for i, a in enumerate(c.args)), _OR
        if isinstance(c, sympy.And):
            return " and ".join(self.condition(a, _NOT) if i else self.condition(a, _AND)
                                for i, a in enumerate(c.args)), _AND
        if isinstance(c, sympy.Not):
            return f"not {self.condition(c.args[0], _NOT)}", _NOT
        op = _RELATION_OPS.get(type(c))
        if op is None:
            raise PrintError(f"cannot write the condition {c} in the language")
        return f"{self(c.lhs)} {op} {self(c.rhs)}", _CMP


def _negative(term) -> bool:
    """A sum's term written with ``-``: a negative number or a negative coefficient."""
    if term.is_number and term.is_real:
        return bool(term.is_negative)
    coeff, _ = term.as_coeff_Mul()
    return bool(coeff.is_number and coeff.is_negative)


_PRINTER: _ExprPrinter | None = None


def format_expr(expr: sympy.Basic) -> str:
    """One expression in the language (parses back to the same SymPy tree)."""
    global _PRINTER
    if _PRINTER is None:
        _PRINTER = _ExprPrinter()
    if isinstance(expr, (sympy.Rel, sympy.And, sympy.Or, sympy.Not)):
        return _PRINTER.condition(expr)
    return _PRINTER(expr)


# ---------------------------------------------------------------------------------------
# Statements

def _string(text: str) -> str:
    if '"' in text or "\n" in text:
        raise PrintError(f"the string {text!r} cannot be written (no quotes or newlines)")
    return f'"{text}"'


def _value(v) -> str:
    """An argument or option value: numbers exactly, words quoted."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return number(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, sympy.Basic):
        return format_expr(v)
    raise PrintError(f"cannot write the value {v!r}")


def format_call(call: Call) -> str:
    """``name(arg, key=value)``; a call without arguments is its bare name."""
    items = [_value(a) for a in call.args] + [f"{k}={_value(v)}" for k, v in call.kwargs]
    return f"{call.name}({', '.join(items)})" if items else call.name


def _param(p: Param) -> str:
    line = f"param {p.name} = {number(p.value)}"
    if p.lower != -math.inf or p.upper != math.inf:
        lo = "(" if p.lower_open else "["
        hi = ")" if p.upper_open else "]"
        line += f" in {lo}{number(p.lower)}, {number(p.upper)}{hi}"
    return line


def _system(s: System) -> list[str]:
    lines = []
    if s.name.isidentifier():
        lines.append(f"system {s.name}" + (f" {_string(s.title)}" if s.title else ""))
    if s.domain is not None:
        d = s.domain
        sizes = " x ".join(str(n) for n in d.shape)
        box = " x ".join(f"[{number(a)}, {number(b)}]" for a, b in d.bounds)
        kinds = set(d.boundaries)
        line = f"domain {sizes} over {box}"
        if len(kinds) == 1:
            line += f" {_bc(d.boundaries[0])}"
        line += f" stencil {d.stencil}"
        lines.append(line)
        if len(kinds) > 1:
            lines.append("boundary " + ", ".join(f"{ax} {_bc(b)}"
                                                 for ax, b in zip(d.axes, d.boundaries)))
        lines.append(f"field {', '.join(s.fields)}")
    else:
        lines.append(f"state {', '.join(s.states)}")
    lines += [_param(p) for p in s.params]
    lines += [f"mask {m.name} = {format_expr(m.condition)}" for m in s.masks]
    lines += [f"let {let.name} = {format_expr(let.expr)}" for let in s.lets]
    lines.append("dynamics:")
    lines += [f"    d({eq.var})/dt = {format_expr(eq.rhs)}" for eq in s.equations]
    return lines


def _bc(b) -> str:
    return f"dirichlet {number(b.value)}" if b.kind == "dirichlet" else b.kind


def _data(d: DataSpec) -> list[str]:
    body = []
    if d.splits:
        body.append("trajectories " + ", ".join(f"{n} {name}" for name, n in d.splits))
    if d.t0 is not None:
        body.append(f"time {number(d.t0)} .. {number(d.t1)} step {number(d.dt)}")
    if d.history:
        body.append(f"history {d.history}")
    for s in d.initial:
        body.append(f"initial {', '.join(s.variables)} ~ {format_call(s.call)}")
    if d.noise:
        body.append(f"noise {number(d.noise)}")
    if d.solver is not None:
        body.append(f"solver {format_call(d.solver)}")
    if d.file is not None:
        body.append(f"file {_string(d.file)}")
    if d.mapping:
        body.append("map " + ", ".join(f"{k} = {_string(v)}" for k, v in d.mapping))
    if d.warmup:
        body.append(f"warmup {number(d.warmup)}")
    if d.split_time is not None:
        body.append(f"split time {number(d.split_time)}")
    if d.seed or not body:
        body.append(f"seed {d.seed}")
    return ["data:"] + ["    " + b for b in body]


def _prior(p: PriorSpec) -> list[str]:
    body = [_param(q) for q in p.params]
    body += [f"let {let.name} = {format_expr(let.expr)}" for let in p.lets]
    body += [f"d({eq.var})/dt = {format_expr(eq.rhs)}" for eq in p.equations]
    if p.hamiltonian is not None:
        body.append(f"hamiltonian {format_call(p.hamiltonian)}")
    if p.learn:
        per = set(p.per_environment)

        def item(name, v):  # `learn alpha per environment from 0.5` (LEADS, §3.4)
            out = name + (" per environment" if name in per else "")
            return out if v is None else f"{out} from {number(v)}"
        items = [item(name, v) for name, v in p.learn]
        last, v_last = p.learn[-1]
        if last in per and v_last is None and not per >= {n for n, _ in p.learn}:
            # `per environment` ending a line covers every name on it: one line each.
            body += [f"learn {i}" for i in items]
        else:
            body.append("learn " + ", ".join(items))
    if p.stencil is not None:
        body.append(f"stencil {p.stencil}")
    return ["prior:"] + ["    " + b for b in body]


def _environments(envs) -> list[str]:
    if all(e.name.isidentifier() for e in envs):
        return ["environments:"] + [
            f"    {e.name}: " + ", ".join(f"{k} = {number(v)}" for k, v in e.values)
            for e in envs]
    # Names like "alpha=0.5,gamma=1" come from a `grid` line: write the grid back.
    import itertools

    keys = [k for k, _ in envs[0].values]
    axes: dict[str, list[float]] = {k: [] for k in keys}
    for e in envs:
        for k, v in e.values:
            if k in axes and v not in axes[k]:
                axes[k].append(v)
    rebuilt = [",".join(f"{k}={v:g}" for k, v in combo) for combo in
               itertools.product(*[[(k, v) for v in axes[k]] for k in keys])]
    if rebuilt != [e.name for e in envs]:
        raise PrintError("these environments are neither named nor one grid")
    return ["environments:", "    grid " + ", ".join(
        f"{k} = [{', '.join(number(v) for v in axes[k])}]" for k in keys)]


def _discover(d: DiscoverSpec) -> str:
    items = (["default"] if d.default else []) + \
        ([f"poly({d.degree})"] if d.degree is not None else []) + \
        [format_expr(t) for t in d.terms]
    return "discover terms " + ", ".join(items)


def _train_option(key: str, value) -> str:
    if isinstance(value, str) and value.isidentifier():
        return f"{key} {value}"
    return f"{key} {_value(value)}"


def format_constraint(c) -> str:
    """``RESIDUAL = 0 where CONDITION weight W`` (``X = VALUE where CONDITION hard``): a
    ``constraint`` line without its keyword."""
    if c.hard:
        weight = f" weight {number(c.weight)}" if c.penalised else ""
        return (f"{c.variable} = {format_expr(c.value)} where {format_expr(c.condition)}"
                f"{weight} hard")
    return (f"{format_expr(c.residual)} = 0 where {format_expr(c.condition)} "
            f"weight {number(c.weight)}")


def format_spec(spec: Spec) -> str:
    """The ``.phy`` text of ``spec``, which the parser reads back to an equal Spec."""
    lines: list[str] = []
    if spec.uses is not None:
        target = spec.uses
        lines.append(f"use {target}" if target.isidentifier() else f"use {_string(target)}")
    else:
        lines += _system(spec.system)
    if spec.data is not None:
        lines += _data(spec.data)
    if spec.prior is not None:
        lines += _prior(spec.prior)
    if spec.augment is not None:
        line = f"augment {format_call(spec.augment)}"
        if spec.augment_on:
            line += f" on {', '.join(spec.augment_on)}"
        if spec.augment_with:
            line += f" with {', '.join(spec.augment_with)}"
        lines.append(line)
    if spec.per_environment is not None:
        lines.append(f"per_environment {format_call(spec.per_environment)}")
    if spec.environments:
        lines += _environments(spec.environments)
    if spec.observe:  # variables, or the text of each measured linear map (`u + 2*v`)
        lines.append(f"observe {', '.join(spec.observe)}")
    if spec.encoder is not None:
        line = f"encoder {format_call(spec.encoder)}"
        if spec.encoder_given:
            line += f" given {', '.join(spec.encoder_given)}"
        lines.append(line)
    lines += [f"constraint {format_constraint(c)}" for c in spec.constraints]
    if spec.discover is not None:
        lines.append(_discover(spec.discover))
    if spec.train is not None:
        line = f"train {format_call(spec.train.method)}"
        for key, value in spec.train.options:
            line += " " + _train_option(key, value)
        lines.append(line)
    return "\n".join(lines) + "\n"


__all__ = ["format_spec", "format_constraint", "format_expr", "format_call", "number",
           "PrintError"]
