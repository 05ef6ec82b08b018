"""Statements → :class:`~physml.symbolic.spec.Spec`, with every check a person needs.

Each check raises a :class:`~physml.errors.SpecError` subclass at the position of the
offending text: duplicated or undeclared names, bad bounds, spatial operators without a
domain or on scalars, unknown options, missing or cyclic ``use``.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import sympy

from .. import limits
from ..errors import (BoundsError, DeclarationError, OperatorError, OptionError, Pos,
                      SpecSyntaxError, UnknownSymbolError, UseError, suggest)
from ..symbolic.functions import FUNCTIONS, RESERVED, SpatialOperator, div, grad
from ..symbolic.spec import (AXES, Boundary, Call, Constraint, DataSpec, DiscoverSpec, Domain,
                             Environment, Equation, Let, Mask, Param, PriorSpec, Sampler, Spec,
                             System, TrainSpec)
from . import budget, schema
from .parser import Name, Stmt, approx, parse_statements

_SYSTEM_KINDS = ("system", "domain", "boundary", "state", "field", "mask", "param", "let",
                 "dynamics")
#: Most time steps (or history frames) in a data block; the memory budget usually binds first.
_MAX_STEPS = 1e12

_ONCE = ("system", "domain", "dynamics", "data", "prior", "augment", "per_environment",
         "environments", "observe", "encoder", "train", "use", "discover")


def library_path(name: str) -> Path | None:
    """Path of a built-in system ``equations/NAME.phy``, or None."""
    ref = resources.files("physml.equations") / f"{name}.phy"
    return Path(str(ref)) if ref.is_file() else None


def library_names() -> list[str]:
    root = resources.files("physml.equations")
    return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".phy"))


def library_root() -> Path:
    """The folder of the built-in systems (``equations/``, installed as physml.equations)."""
    return Path(str(resources.files("physml.equations"))).resolve()


def use_roots(path: str | Path | None, allow_paths: Iterable[str | Path] = ()
              ) -> tuple[Path, ...]:
    """The folders `use "file.phy"` may reach from the spec at ``path``: the spec's own
    folder tree, the built-in library, the folders in ``allow_paths`` and those in
    ``$PHYSML_USE_PATH`` (``os.pathsep``-separated). Paths are compared after resolving
    ``..`` and symbolic links, so neither leads out of these trees."""
    base = Path(path).parent if path not in (None, "<string>") else Path.cwd()
    env = [p for p in os.environ.get(limits.USE_PATH_ENV, "").split(os.pathsep) if p]
    roots = [base, library_root(), *map(Path, allow_paths), *map(Path, env)]
    return tuple(dict.fromkeys(Path(os.path.abspath(r)).resolve() for r in roots))


def load_spec(path: str | Path, allow_paths: Iterable[str | Path] = (), *,
              vocabulary: schema.Vocabulary | None = None,
              _roots: tuple[Path, ...] | None = None, _stack: tuple[str, ...] = ()) -> Spec:
    """Read and check a spec file. Raises :class:`~physml.errors.SpecError` on bad input.

    ``allow_paths``: extra folders that ``use "path.phy"`` may reach besides the spec's
    own folder tree and the built-in library (see :func:`use_roots`). ``vocabulary``: the
    method, network, solver and option names to check the experiment blocks against
    (:func:`physml.experiment.vocabulary`); without it they are unchecked.
    """
    path = Path(path)
    try:
        if not path.exists():
            raise FileNotFoundError
        if not path.is_file():
            raise SpecSyntaxError(f"cannot read {path}: not a regular file", Pos(str(path), 1, 1))
        size = path.stat().st_size
        if size > limits.MAX_SPEC_BYTES:
            raise SpecSyntaxError(f"spec file too large ({size} bytes; at most "
                                  f"{limits.MAX_SPEC_BYTES})", Pos(str(path), 1, 1),
                                  hint="a spec describes a system in a few lines")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UseError(f"no such spec file: {path}") from None
    except OSError as exc:
        raise SpecSyntaxError(f"cannot read {path}: {exc.strerror or exc}",
                              Pos(str(path), 1, 1)) from None
    text = _decode(raw, str(path))
    roots = _roots if _roots is not None else use_roots(path, allow_paths)
    return parse_spec(text, str(path), vocabulary=vocabulary, _roots=roots,
                      _stack=_stack)


def _decode(raw: bytes, file: str) -> str:
    """UTF-8 text, or an error at the line and column of the first bad byte (the line is
    not quoted: it may not be text at all)."""
    try:
        return raw[:limits.MAX_SPEC_BYTES + 1].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        raise SpecSyntaxError(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                              Pos(file, line, column),
                              hint="save the spec as UTF-8 text") from None


def parse_spec(text: str, path: str = "<string>", allow_paths: Iterable[str | Path] = (), *,
               vocabulary: schema.Vocabulary | None = None,
               _roots: tuple[Path, ...] | None = None, _stack: tuple[str, ...] = ()) -> Spec:
    """Parse and check spec text (``path`` is used in messages and to resolve ``use``;
    ``allow_paths`` as for :func:`load_spec`)."""
    stmts = parse_statements(text, path)
    roots = _roots if _roots is not None else use_roots(path, allow_paths)
    return _Builder(text, path, _stack, roots, vocabulary).build(stmts)


def _flatten(stmts):
    for s in stmts:
        yield s
        yield from _flatten(s.body)


class _Builder:
    def __init__(self, text: str, path: str, stack: tuple[str, ...], roots: tuple[Path, ...],
                 vocabulary: schema.Vocabulary | None = None):
        self.text = text
        self.path = path
        self.stack = stack
        self.roots = roots
        self.vocab = vocabulary

    # -- errors -------------------------------------------------------------------------
    def err(self, cls, message, pos, hint=None, length=1):
        return cls(message, pos, self.text, hint=hint, length=length)

    def name_err(self, cls, message, name: Name, hint=None):
        return cls(message, name.pos, self.text, hint=hint, length=len(name.text))

    def number(self, expr, pos, what: str, allow_inf: bool = False) -> float:
        inf = sympy.Symbol("inf")
        if allow_inf and expr.has(inf):
            if expr == inf:
                return math.inf
            if expr == -inf:
                return -math.inf
        free = sorted(s.name for s in expr.free_symbols)
        if free:
            raise self.err(SpecSyntaxError, f"{what} must be a number, not an expression "
                           f"of '{free[0]}'", pos)
        value = approx(expr)
        if math.isnan(value):
            raise self.err(SpecSyntaxError, f"{what} is not a real number", pos)
        if not math.isfinite(value):
            raise self.err(SpecSyntaxError, f"{what} is not finite", pos)
        return value

    # -- entry point --------------------------------------------------------------------
    def build(self, stmts: list[Stmt]) -> Spec:
        seen: dict[str, Stmt] = {}
        for s in stmts:
            if s.kind in _ONCE:
                if s.kind in seen:
                    first = seen[s.kind].pos.line
                    raise self.err(DeclarationError, f"duplicate `{s.kind}` (first at line "
                                   f"{first})", s.pos, length=len(s.kind))
                seen[s.kind] = s
        if self.vocab is not None:
            for kind, what in self.vocab.unavailable.items():
                if kind in seen:
                    raise self.err(OptionError, f"`{kind}` ({what}) is not available in this "
                                   "version of physml", seen[kind].pos, length=len(kind),
                                   hint="remove it; available experiment blocks: "
                                   "data, prior, augment, environments, train")
        system_stmts = [s for s in stmts if s.kind in _SYSTEM_KINDS]
        uses = seen.get("use")
        if uses is not None:
            if system_stmts:
                s = system_stmts[0]
                raise self.err(DeclarationError, f"this spec takes its system from `use "
                               f"{uses.data['target']}`; it cannot also declare `{s.kind}`",
                               s.pos, hint="move the declaration into the system file, or "
                               "drop the `use` line", length=len(s.kind))
            system = self.load_use(uses)
        else:
            if "dynamics" not in seen:
                raise self.err(DeclarationError, "no system: expected a `dynamics:` block or a "
                               "`use NAME` line", stmts[0].pos if stmts else Pos(self.path, 1, 1))
            system = self.build_system(stmts, seen)
        ctx = _Context(system)
        spec = Spec(
            system=system,
            data=self.build_data(seen["data"], system) if "data" in seen else None,
            prior=self.build_prior(seen["prior"], system, ctx) if "prior" in seen else None,
            augment=self.network(seen["augment"].data["call"], "augmentation")
            if "augment" in seen else None,
            augment_on=self.build_augment_on(seen["augment"], system)
            if "augment" in seen else (),
            augment_with=self.build_augment_with(seen["augment"], system)
            if "augment" in seen else (),
            per_environment=self.network(seen["per_environment"].data["call"],
                                         "per-environment network")
            if "per_environment" in seen else None,
            environments=self.build_envs(seen["environments"], system)
            if "environments" in seen else (),
            **self.observe_fields(seen.get("observe"), system),
            encoder=self.call(seen["encoder"].data["call"], "encoders", "encoder")
            if "encoder" in seen else None,
            encoder_given=tuple(n.text for n in seen["encoder"].data["given"])
            if "encoder" in seen else (),
            train=self.build_train(seen["train"]) if "train" in seen else None,
            discover=self.build_discover(seen["discover"], ctx) if "discover" in seen else None,
            path=self.path, text=self.text,
            uses=uses.data["target"].strip('"') if uses else None,
        )
        if spec.encoder is not None:
            self.check_encoder(seen["encoder"], spec)
        constraints = [st for st in stmts if st.kind == "constraint"]
        if constraints:  # after the Spec: a condition may read measured variables only
            spec = dataclasses.replace(spec, constraints=tuple(
                self.build_constraint(st, spec) for st in constraints))
        try:
            budget.check_budget(system, spec.data, len(spec.environments), self.text)
        except ValueError as exc:  # a malformed $PHYSML_MEMORY_BUDGET
            raise BoundsError(str(exc)) from None
        return spec

    # -- use ----------------------------------------------------------------------------
    def load_use(self, s: Stmt) -> System:
        target = s.data["target"]
        tpos, length = s.data["tpos"], s.data["length"]
        if s.data["quoted"]:
            rel = Path(target[1:-1])
            base = Path(self.path).parent if self.path != "<string>" else Path.cwd()
            path = rel if rel.is_absolute() else base / rel
            # Refuse before touching the file: `use` must not become a way to read (and
            # quote in an error) files that are not specs, such as /etc/passwd.
            if path.suffix != ".phy":
                raise self.err(UseError, f"`use`: {target} is not a .phy spec file", tpos,
                               hint="`use` takes a built-in system name or the path of a "
                               ".phy file", length=length)
            resolved = Path(os.path.abspath(path)).resolve()
            if not any(resolved.is_relative_to(root) for root in self.roots):
                raise self.err(UseError, f"`use`: {target} lies outside the folders `use` may "
                               f"reach ({self.roots[0]} and the built-in library)", tpos,
                               hint="allow its folder with --allow-path DIR or "
                               f"{limits.USE_PATH_ENV}=DIR", length=length)
            if not resolved.is_file():
                raise self.err(UseError, f"`use`: no file {path}", tpos, length=length)
        else:
            path = library_path(target)
            if path is None:
                hint = suggest(target, library_names()) or (
                    "built-in systems: " + ", ".join(library_names()))
                raise self.err(UseError, f"`use`: no built-in system '{target}'", tpos,
                               hint=hint, length=length)
        key = str(path.resolve())
        here = str(Path(self.path).resolve()) if self.path != "<string>" else self.path
        stack = self.stack + (here,)
        if key in stack:
            chain = " → ".join(Path(p).name for p in stack[stack.index(key):]) + \
                f" → {Path(key).name}"
            raise self.err(UseError, f"`use` cycle: {chain}", tpos, length=length)
        return load_spec(path, _roots=self.roots, _stack=stack).system

    # -- system -------------------------------------------------------------------------
    def declare(self, table: dict, name: Name, kind: str, coords: tuple[str, ...]):
        text = name.text
        if text.startswith("__"):
            raise self.name_err(DeclarationError, f"names beginning with '__' are not "
                                f"allowed: '{text}'", name)
        if text in FUNCTIONS or text == "piecewise":
            raise self.name_err(DeclarationError, f"'{text}' shadows the function {text}()",
                                name, hint="choose another name")
        if text in RESERVED:
            raise self.name_err(DeclarationError, f"'{text}' is a word of the language",
                                name, hint="choose another name (reserved: "
                                f"{', '.join(RESERVED)}, and the function names)")
        if text in coords:
            raise self.name_err(DeclarationError, f"'{text}' shadows the coordinate {text} of "
                                "the domain", name, hint="choose another name")
        if text in table:
            kind0, pos0 = table[text]
            where = f"as {kind0} at line {pos0.line}" if pos0 is not None else "in the system"
            raise self.name_err(DeclarationError, f"duplicate name '{text}' (already declared "
                                f"{where})", name, hint=None if pos0 is not None else
                                "choose another name")
        table[text] = (kind, name.pos)

    def build_system(self, stmts: list[Stmt], seen: dict[str, Stmt]) -> System:
        sys_stmt = seen.get("system")
        name = sys_stmt.data["name"].text if sys_stmt else Path(self.path).stem
        title = sys_stmt.data["title"] if sys_stmt else ""
        domain = self.build_domain(seen["domain"], [s for s in stmts if s.kind == "boundary"]) \
            if "domain" in seen else None
        if domain is None:
            for s in stmts:
                if s.kind == "boundary":
                    raise self.err(DeclarationError, "`boundary` needs a `domain` line", s.pos,
                                   length=8)
        coords = domain.axes if domain else ()
        table: dict[str, tuple[str, Pos]] = {}
        states, fields, params, masks = [], [], [], []
        for s in stmts:
            if s.kind == "state":
                if domain is not None:
                    raise self.err(DeclarationError, "a system with a domain has `field` "
                                   "variables, not `state`", s.pos, length=5)
                for n in s.data["names"]:
                    self.declare(table, n, "state", coords)
                    states.append(n.text)
            elif s.kind == "field":
                if domain is None:
                    raise self.err(DeclarationError, "`field` needs a `domain` line (fields live "
                                   "on a grid); use `state` for ODE variables", s.pos, length=5)
                for n in s.data["names"]:
                    self.declare(table, n, "field", coords)
                    fields.append(n.text)
        for s in stmts:
            if s.kind == "param":
                self.declare(table, s.data["name"], "param", coords)
                params.append(self.build_param(s))
        # Lets may come at top level or inside `dynamics:`; both in order of appearance.
        dyn = seen["dynamics"]
        let_stmts = [s for s in _flatten(stmts) if s.kind == "let"]
        for s in stmts:
            if s.kind == "mask":
                if domain is None:
                    raise self.err(OperatorError, "`mask` needs a `domain` line", s.pos, length=4)
                self.declare(table, s.data["name"], "mask", coords)
        ctx = _Context.for_names(table, coords, domain)
        for s in stmts:
            if s.kind == "mask":
                self.check_refs(s, ctx, allowed={k for k, (kind, _) in table.items()
                                                 if kind == "param"} | set(coords) | {"pi"},
                                why="mask conditions may use only coordinates and parameters")
                masks.append(Mask(s.data["name"].text, s.data["cond"], s.pos))
        lets = []
        for s in let_stmts:
            self.declare(table, s.data["name"], "let", coords)
        defined = {k for k, (kind, _) in table.items() if kind != "let"}
        later = {x.data["name"].text: x for x in let_stmts}  # built once: linear in the lets
        for s in let_stmts:
            self.check_expr(s, ctx, defined, later=later)
            expr = s.data["expr"]
            lets.append(Let(s.data["name"].text, expr, s.pos))
            defined.add(s.data["name"].text)
            ctx.add_let(s.data["name"].text, expr)
        variables = fields if domain is not None else states
        if not variables:
            raise self.err(DeclarationError, "no variables: declare `state a, b` (ODE) or "
                           "`field u, v` (grid PDE)", dyn.pos, length=8)
        equations = self.build_equations([b for b in dyn.body if b.kind == "equation"],
                                         variables, ctx, defined, dyn.pos, "dynamics")
        return System(name=name, title=title, states=tuple(states), fields=tuple(fields),
                      domain=domain, params=tuple(params), lets=tuple(lets), masks=tuple(masks),
                      equations=equations, source=self.path,
                      pos=sys_stmt.pos if sys_stmt else None)

    def build_domain(self, s: Stmt, boundary_stmts: list[Stmt]) -> Domain:
        sizes = s.data["sizes"]
        intervals = s.data["intervals"]
        if len(sizes) > 3:
            raise self.err(SpecSyntaxError, "domains have 1, 2 or 3 axes", s.pos, length=6)
        if len(intervals) != len(sizes):
            raise self.err(SpecSyntaxError, f"the domain has {len(sizes)} axes but "
                           f"{len(intervals)} intervals", s.pos, length=6)
        for n, pos in sizes:
            if n < 3:
                raise self.err(SpecSyntaxError, f"a grid axis needs at least 3 points, got {n}",
                               pos, length=len(str(n)))
            if n > 1 << 14:
                raise self.err(SpecSyntaxError, f"grid axis of {n} points is too large", pos,
                               length=len(str(n)))
        bounds = []
        for lo, hi in intervals:
            a = self.number(lo, s.pos, "a domain bound")
            b = self.number(hi, s.pos, "a domain bound")
            if not a < b:
                raise self.err(BoundsError, f"empty domain interval [{a:g}, {b:g}]", s.pos,
                               length=6)
            bounds.append((a, b))
        ndim = len(sizes)
        default = self.boundary(s.data["bc"], s.pos) if s.data["bc"] else None
        per_axis: dict[str, Boundary] = {}
        for b in boundary_stmts:
            for axis, bc in b.data["items"]:
                if axis.text not in AXES[:ndim]:
                    raise self.name_err(DeclarationError, f"'{axis.text}' is not an axis of this "
                                        f"{ndim}-D domain (axes: {', '.join(AXES[:ndim])})", axis)
                if axis.text in per_axis:
                    raise self.name_err(DeclarationError, f"boundary of axis {axis.text} given "
                                        "twice", axis)
                per_axis[axis.text] = self.boundary(bc, b.pos)
        bcs = []
        for ax in AXES[:ndim]:
            bc = per_axis.get(ax, default)
            if bc is None:
                raise self.err(SpecSyntaxError, f"no boundary condition for axis {ax}", s.pos,
                               hint="end the domain line with periodic, neumann or "
                               "dirichlet VALUE", length=6)
            bcs.append(bc)
        stencil = "central2"
        if s.data["stencil"] is not None:
            stencil = self.stencil_name(s.data["stencil"])
        return Domain(tuple(n for n, _ in sizes), tuple(bounds), tuple(bcs), stencil)

    def stencil_name(self, name: Name) -> str:
        from ..symbolic.stencils import STENCILS  # torch: only for a spec naming a stencil

        if name.text not in STENCILS:
            raise self.name_err(OptionError, f"unknown stencil '{name.text}'", name,
                                hint=suggest(name.text, STENCILS) or
                                "stencils: " + ", ".join(STENCILS))
        return name.text

    def boundary(self, bc, pos) -> Boundary:
        kind, value = bc
        if kind == "dirichlet":
            return Boundary(kind, self.number(value, pos, "a dirichlet value"))
        return Boundary(kind)

    def build_param(self, s: Stmt) -> Param:
        name = s.data["name"]
        value = self.number(s.data["value"], name.pos, f"the value of '{name.text}'")
        b = s.data["bounds"]
        if b is None:
            return Param(name.text, value, pos=name.pos)
        lo = self.number(b["lo"], b["pos"], "a lower bound", allow_inf=True)
        hi = self.number(b["hi"], b["pos"], "an upper bound", allow_inf=True)
        if lo == math.inf or hi == -math.inf:
            raise self.err(BoundsError, "bounds run from low to high: (lo, hi)", b["pos"])
        if not lo < hi:
            raise self.err(BoundsError, f"empty bounds for '{name.text}': lower {lo:g} is not "
                           f"below upper {hi:g}", b["pos"])
        p = Param(name.text, value, lo, hi, b["lo_open"] or lo == -math.inf,
                  b["hi_open"] or hi == math.inf, name.pos)
        if not p.contains(value):
            raise self.err(BoundsError, f"default {value:g} of '{name.text}' lies outside its "
                           f"bounds {p.bounds_text()}", name.pos, length=len(name.text))
        return p

    # -- expressions --------------------------------------------------------------------
    def check_refs(self, s: Stmt, ctx: "_Context", allowed: set[str], why: str | None = None):
        for ref in s.refs:
            if ref.name == "pi" or ref.name in allowed:
                continue
            if why and ref.name in ctx.known:
                raise self.err(UnknownSymbolError, f"'{ref.name}' cannot be used here: {why}",
                               ref.pos, length=len(ref.name))
            raise self.err(UnknownSymbolError, f"unknown symbol '{ref.name}'", ref.pos,
                           hint=suggest(ref.name, allowed | {"pi"}), length=len(ref.name))

    def check_expr(self, s: Stmt, ctx: "_Context", defined: set[str], later=None):
        extra = {*ctx.coords, "t", "pi"}
        for ref in s.refs:
            if ref.name in defined or ref.name in extra:
                continue
            if ref.name.startswith("__"):
                raise self.err(UnknownSymbolError, f"names beginning with '__' are not allowed: "
                               f"'{ref.name}'", ref.pos, length=len(ref.name))
            if later and ref.name in later:
                raise self.err(UnknownSymbolError, f"'{ref.name}' is used before its `let` "
                               f"(line {later[ref.name].pos.line})", ref.pos,
                               hint="move the `let` above its first use", length=len(ref.name))
            raise self.err(UnknownSymbolError, f"unknown symbol '{ref.name}'", ref.pos,
                           hint=suggest(ref.name, (defined | extra) - {"t"}),
                           length=len(ref.name))
        for call in s.calls:
            self.check_operator(call, ctx)
        expr = s.data.get("rhs", s.data.get("expr"))
        for g in expr.atoms(grad) if expr is not None else ():
            pos = next((c.pos for c in s.calls if c.name == "grad"), s.pos)
            raise self.err(OperatorError, "grad(...) is a vector; use it as div(grad(u))", pos,
                           length=4)
        if expr is not None and expr.has(sympy.zoo, sympy.nan):
            raise self.err(SpecSyntaxError, "expression is undefined (division by zero?)", s.pos)

    def check_operator(self, call, ctx: "_Context"):
        name = call.name
        domain = ctx.domain
        if domain is None:
            raise self.err(OperatorError, f"spatial operator {name}() needs a domain", call.pos,
                           hint="declare `domain N x M over [a, b] x [c, d] periodic` and "
                           "`field` variables", length=call.length)
        op = type(call.node) if isinstance(call.node, SpatialOperator) else FUNCTIONS[name].sympy
        axis = getattr(op, "axis", None)
        if axis is not None and axis >= domain.ndim:
            raise self.err(OperatorError, f"{name}() differentiates along {AXES[axis]}, which a "
                           f"{domain.ndim}-D domain does not have", call.pos, length=call.length)
        if name == "inv_lap" and not domain.periodic:
            raise self.err(OperatorError, "inv_lap() is spectral and needs a periodic domain",
                           call.pos, length=call.length)
        if name == "div":
            n = len(call.node.args) if not isinstance(call.node, SpatialOperator) or \
                call.node.func is div else 1
            if isinstance(call.node, div) and n != domain.ndim:
                raise self.err(OperatorError, f"div() takes {domain.ndim} components on this "
                               f"{domain.ndim}-D domain, got {n}", call.pos, length=call.length)
        args = call.node.args if isinstance(call.node, sympy.Basic) else ()
        for arg in args:
            if arg.is_number:
                continue
            if not ctx.is_field(arg):
                raise self.err(OperatorError, f"{name}() applied to a scalar "
                               f"'{sympy.sstr(arg)}'; spatial operators act on fields",
                               call.pos, length=call.length)

    def build_equations(self, eq_stmts, variables, ctx, defined, block_pos, block) -> tuple:
        eqs: dict[str, Equation] = {}
        for s in eq_stmts:
            var = s.data["var"]
            if var.text not in variables:
                kind = "declared variable"
                raise self.name_err(DeclarationError, f"equation for '{var.text}', which is not a "
                                    f"{kind}", var, hint=suggest(var.text, variables) or
                                    "variables: " + ", ".join(variables))
            if var.text in eqs:
                raise self.name_err(DeclarationError, f"second equation for '{var.text}' (first "
                                    f"at line {eqs[var.text].pos.line})", var)
            self.check_expr(s, ctx, defined)
            eqs[var.text] = Equation(var.text, s.data["rhs"], s.pos)
        missing = [v for v in variables if v not in eqs]
        if missing:
            raise self.err(DeclarationError, f"`{block}:` has no equation for "
                           f"{', '.join(repr(m) for m in missing)}", block_pos,
                           hint="write d(" + missing[0] + ")/dt = … (use 0 if it does not change)",
                           length=len(block))
        return tuple(eqs[v] for v in variables)

    # -- experiment blocks --------------------------------------------------------------
    def build_prior(self, s: Stmt, system: System, ctx: "_Context") -> PriorSpec:
        table = {n: ("declared", None) for n in ctx.known}
        coords = ctx.coords
        defined = set(ctx.known)
        params: list[Param] = []
        for b in s.body:
            if b.kind == "param":  # parameters only the prior has (absorbed terms)
                self.declare(table, b.data["name"], "param", coords)
                params.append(self.build_param(b))
                defined.add(params[-1].name)
                ctx.known.add(params[-1].name)
        lets = []
        for b in s.body:
            if b.kind == "let":
                self.declare(table, b.data["name"], "let", coords)
                self.check_expr(b, ctx, defined)
                lets.append(Let(b.data["name"].text, b.data["expr"], b.pos))
                defined.add(b.data["name"].text)
                ctx.add_let(b.data["name"].text, b.data["expr"])
        learn, learned, hamiltonian, stencil = [], set(), None, None
        per_env: list[tuple[str, Pos]] = []
        every = {p.name: p for p in (*system.params, *params)}
        names = list(every)
        for b in s.body:
            if b.kind == "learn":
                items = b.data["items"]
                # `per environment` ending the line (no `from` after it) covers every name
                # on the line; written after one name, followed by `from` or `,`, that name.
                whole_line = bool(items[-1][2]) and items[-1][1] is None
                for name, init, per in items:
                    if per or whole_line:
                        per_env.append((name.text, name.pos))
                    if name.text not in names:
                        raise self.name_err(UnknownSymbolError, f"`learn`: '{name.text}' is not a "
                                            "parameter", name, hint=suggest(name.text, names))
                    if name.text in learned:
                        raise self.name_err(DeclarationError, f"'{name.text}' is learned twice",
                                            name)
                    learned.add(name.text)
                    value = None
                    if init is not None:
                        value = self.number(init, name.pos, f"the start of '{name.text}'")
                        p = every[name.text]
                        if not p.contains(value):
                            raise self.name_err(BoundsError, f"start {value:g} of '{name.text}' "
                                                f"lies outside its bounds {p.bounds_text()}", name)
                    learn.append((name.text, value))
            elif b.kind == "hamiltonian":
                if hamiltonian is not None:
                    raise self.err(DeclarationError, "duplicate `hamiltonian`", b.pos, length=11)
                hamiltonian = self.network(b.data["call"], "hamiltonian")
            elif b.kind == "stencil":
                if system.domain is None:
                    raise self.err(OperatorError, "`stencil` needs a domain", b.pos, length=7)
                stencil = self.stencil_name(b.data["name"])
        eq_stmts = [b for b in s.body if b.kind == "equation"]
        if hamiltonian is not None:
            if eq_stmts:
                raise self.err(DeclarationError, "a prior is either a `hamiltonian` or equations, "
                               "not both", eq_stmts[0].pos, length=1)
            if len(system.states) != 2:
                raise self.err(DeclarationError, "a hamiltonian prior needs exactly two state "
                               "variables (q, p)", s.pos, length=5)
            equations = ()
        else:
            equations = self.build_equations(eq_stmts, system.variables, ctx, defined, s.pos,
                                             "prior")
        if per_env and hamiltonian is not None:
            name, pos = per_env[0]
            raise self.err(DeclarationError, f"'{name}' per environment: a hamiltonian prior "
                           "has no parameters to learn per environment", pos, length=len(name))
        used = set().union(*(e.rhs.free_symbols for e in equations)) if equations else set()
        for let in (*system.lets, *lets):  # a let may carry it (omega0 = 2*pi/T0)
            used |= let.expr.free_symbols
        used = {str(x) for x in used}
        for name, pos in per_env:
            if name not in used:
                raise self.err(DeclarationError, f"'{name}' is learned per environment but the "
                               "prior does not use it, so nothing learns it", pos,
                               length=len(name), hint="remove it from the `learn` line, or "
                               "write it in the prior's equations")
        return PriorSpec(equations, tuple(lets), tuple(params), tuple(learn), hamiltonian,
                         stencil, s.pos,
                         per_environment=tuple(n for n, _ in per_env),
                         per_environment_pos=tuple(per_env))

    def build_discover(self, s: Stmt, ctx: "_Context") -> DiscoverSpec:
        """``discover terms …``: every term is an expression of the variables (and of the
        coordinates, parameters and lets) that the compiler can evaluate."""
        default, degree, terms, seen = False, None, [], set()
        defined = set(ctx.known) | {"t"}
        for kind, pos, value in s.data["items"]:
            if kind == "default":
                if default:
                    raise self.err(DeclarationError, "`default` listed twice", pos, length=7)
                default = True
            elif kind == "poly":
                n, length = value
                if degree is not None:
                    raise self.err(DeclarationError, "`poly(d)` given twice", pos, length=4)
                if not 1 <= n <= 6:
                    raise self.err(BoundsError, f"poly({n}): the degree lies in 1 … 6", pos,
                                   length=6 + length, hint="degree 3 holds cubic terms "
                                   "such as u^3 and u^2*v")
                degree = n
            else:
                if value.is_number:
                    value = sympy.Integer(1) if value != 0 else value
                if value == 0:
                    raise self.err(SpecSyntaxError, "the term 0 cannot be fitted", pos)
                if value in seen:
                    raise self.err(DeclarationError, f"the term {sympy.sstr(value)} is listed "
                                   "twice", pos)
                seen.add(value)
                terms.append(value)
        # Names and operators are checked at the place they were written.
        self.check_expr(s, ctx, defined)
        return DiscoverSpec(default, degree, tuple(terms), s.pos)

    def network(self, call: dict, what: str) -> Call:
        c = self.call(call, "networks", what)
        return c

    def call(self, call: dict, table: str, what: str) -> Call:
        """A ``name(args, key=value)`` checked against the vocabulary's ``table``."""
        name: Name = call["name"]
        if self.vocab is None:  # syntax only
            return Call(name.text, tuple(_plain(a) for a in call["args"]),
                        tuple((k.text, _plain(v)) for k, v in call["kwargs"]), name.pos)
        table = getattr(self.vocab, table)
        if name.text not in table:
            raise self.name_err(OptionError, f"unknown {what} '{name.text}'", name,
                                hint=suggest(name.text, table) or
                                f"choices: {', '.join(table)}")
        allowed = table[name.text]
        kwargs = []
        for key, value in call["kwargs"]:
            if key.text not in allowed:
                hint = suggest(key.text, allowed) or (
                    f"{name.text} takes: {', '.join(allowed)}" if allowed
                    else f"{name.text} takes no options")
                raise self.name_err(OptionError, f"unknown option '{key.text}' for {name.text}",
                                    key, hint=hint)
            kwargs.append((key.text, _plain(value)))
        return Call(name.text, tuple(_plain(a) for a in call["args"]), tuple(kwargs), name.pos)

    def build_data(self, s: Stmt, system: System) -> DataSpec:
        out: dict[str, Any] = {"pos": s.pos}
        once: dict[str, Stmt] = {}
        samplers, covered = [], {}
        variables = system.variables
        for b in s.body:
            key = "time" if b.kind.startswith("time") else b.kind
            if key != "initial" and key in once:
                raise self.err(DeclarationError, f"duplicate `{key}` in the data block (first at "
                               f"line {once[key].pos.line})", b.pos, length=len(key))
            once[key] = b
            if b.kind == "trajectories":
                splits = []
                for n, name, npos, nlen in b.data["splits"]:
                    if n < 1:
                        raise self.err(BoundsError, f"split '{name.text}' needs at least one "
                                       "trajectory", npos, length=nlen,
                                       hint="leave the split out instead of giving it 0")
                    if name.text not in schema.SPLITS:
                        raise self.name_err(OptionError, f"unknown split '{name.text}'", name,
                                            hint=suggest(name.text, schema.SPLITS) or
                                            "splits: train, val, test")
                    if name.text in dict(splits):
                        raise self.name_err(DeclarationError, f"split '{name.text}' given twice",
                                            name)
                    splits.append((name.text, n))
                out["splits"] = tuple(splits)
            elif b.kind == "time_range":
                t0 = self.number(b.data["t0"], b.pos, "the start time")
                t1 = self.number(b.data["t1"], b.pos, "the end time")
                dt = self.number(b.data["dt"], b.pos, "the time step")
                if dt <= 0 or t1 <= t0:
                    raise self.err(BoundsError, "the time grid needs start < end and step > 0",
                                   b.pos, length=4)
                steps = (t1 - t0) / dt
                if not steps < _MAX_STEPS:
                    raise self.err(BoundsError, f"the time grid has {steps:.3g} steps (at most "
                                   f"{_MAX_STEPS:.0e})", b.pos, length=4,
                                   hint="use a larger step or a shorter time span")
                if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
                    raise self.err(BoundsError, f"the step {dt:g} does not divide "
                                   f"[{t0:g}, {t1:g}] into whole steps", b.pos, length=4)
                out.update(t0=t0, t1=t1, dt=dt)
            elif b.kind == "time_steps":
                dt = self.number(b.data["dt"], b.pos, "the time step")
                if dt <= 0 or b.data["steps"] < 1:
                    raise self.err(BoundsError, "the time grid needs steps ≥ 1 and dt > 0",
                                   b.pos, length=4)
                if b.data["steps"] >= _MAX_STEPS:
                    raise self.err(BoundsError, f"the time grid has {b.data['steps']} steps "
                                   f"(at most {_MAX_STEPS:.0e})", b.pos, length=4,
                                   hint="use a larger step or a shorter time span")
                out.update(t0=0.0, t1=b.data["steps"] * dt, dt=dt)
            elif b.kind == "history":
                if b.data["k"] >= _MAX_STEPS:
                    raise self.err(BoundsError, f"history of {b.data['k']} frames is too long "
                                   f"(at most {_MAX_STEPS:.0e})", b.data["kpos"],
                                   length=b.data["length"])
                out["history"] = b.data["k"]
            elif b.kind == "initial":
                for item in b.data["samplers"]:
                    names = item["names"]
                    for n in names:
                        if n.text not in variables:
                            raise self.name_err(UnknownSymbolError, f"`initial`: '{n.text}' is "
                                                "not a variable", n,
                                                hint=suggest(n.text, variables))
                        if n.text in covered:
                            raise self.name_err(DeclarationError, f"initial state of '{n.text}' "
                                                f"given twice", n)
                        covered[n.text] = n
                    c = item["call"]
                    call = Call(c["name"].text, tuple(_plain(a) for a in c["args"]),
                                tuple((k.text, _plain(v)) for k, v in c["kwargs"]), c["pos"])
                    samplers.append(Sampler(tuple(n.text for n in names), call, names[0].pos))
            elif b.kind == "noise":
                sigma = self.number(b.data["sigma"], b.pos, "the noise level")
                if sigma < 0:
                    raise self.err(BoundsError, "the noise level must be ≥ 0", b.pos, length=5)
                if sigma > limits.MAX_NOISE:
                    raise self.err(BoundsError, f"the noise level {sigma:g} is too large (at "
                                   f"most {limits.MAX_NOISE:g}: noisy values must stay finite "
                                   "in float32)", b.pos, length=5,
                                   hint="noise is the standard deviation of additive Gaussian "
                                   "noise, in the units of the data")
                out["noise"] = sigma
            elif b.kind == "solver":
                out["solver"] = self.call(b.data["call"], "data_solvers", "solver")
            elif b.kind == "seed":
                if b.data["seed"] > limits.MAX_SEED:
                    raise self.err(BoundsError, f"seed {b.data['seed']} is too large (seeds lie "
                                   f"in 0 … 2^63 − 1 = {limits.MAX_SEED})", b.data["spos"],
                                   length=b.data["length"])
                out["seed"] = b.data["seed"]
            elif b.kind == "file":
                out["file"] = b.data["path"]
                out["file_pos"] = b.data["ppos"]
            elif b.kind == "split":
                out["split_time"] = self.number(b.data["at"], b.pos, "the split time")
            elif b.kind == "map":
                mapping = []
                for name, array in b.data["items"]:
                    if name.text not in variables:
                        raise self.name_err(UnknownSymbolError, f"`map`: '{name.text}' is not a "
                                            "variable", name, hint=suggest(name.text, variables))
                    mapping.append((name.text, array))
                out["mapping"] = tuple(mapping)
            elif b.kind == "warmup":
                out["warmup"] = self.number(b.data["t"], b.pos, "the warm-up time")
        out["initial"] = tuple(samplers)
        if "split_time" in out:
            if "file" not in out:
                raise self.err(DeclarationError, "`split time` divides the series of a data "
                               "`file`; this data block simulates", once["split"].pos, length=5,
                               hint="add `file \"DATA.npz\"`, or split simulated data with "
                               "`trajectories N train, M test`")
            if "splits" in out:
                raise self.err(DeclarationError, "`split time` and `trajectories` both say how "
                               "to split the data", once["split"].pos, length=5,
                               hint="keep one: `split time T` cuts each series at T")
        if "file" not in out:
            missing = [v for v in variables if v not in covered]
            if samplers and missing:
                raise self.err(DeclarationError, f"the data block draws no initial state for "
                               f"{', '.join(repr(m) for m in missing)}", s.pos, length=4)
        return DataSpec(**out)

    def build_envs(self, s: Stmt, system: System) -> tuple[Environment, ...]:
        names = [p.name for p in system.params]
        envs: list[Environment] = []
        seen: set[str] = set()

        def check_param(name: Name):
            if name.text not in names:
                raise self.name_err(UnknownSymbolError, f"environments: '{name.text}' is not a "
                                    "parameter", name, hint=suggest(name.text, names))

        def add(env_name: str, values, pos):
            if env_name in seen:
                raise self.err(DeclarationError, f"duplicate environment '{env_name}'", pos)
            seen.add(env_name)
            envs.append(Environment(env_name, tuple(values), pos))

        for b in s.body:
            if b.kind == "env":
                values, keys = [], set()
                for name, expr in b.data["values"]:
                    check_param(name)
                    if name.text in keys:
                        raise self.name_err(DeclarationError, f"'{name.text}' set twice", name)
                    keys.add(name.text)
                    values.append((name.text, self.number(expr, name.pos, name.text)))
                add(b.data["name"].text, values, b.data["name"].pos)
            else:
                axes = []
                for name, exprs in b.data["axes"]:
                    check_param(name)
                    axes.append([(name.text, self.number(e, name.pos, name.text)) for e in exprs])
                for combo in itertools.product(*axes):
                    add(",".join(f"{k}={v:g}" for k, v in combo), combo, b.pos)
        for env in envs:
            for k, v in env.values:
                p = system.param(k)
                if not p.contains(v):
                    raise self.err(BoundsError, f"environment '{env.name}': {k} = {v:g} lies "
                                   f"outside its bounds {p.bounds_text()}", s.pos, length=12)
        return tuple(envs)

    def build_observe(self, s: Stmt, system: System
                      ) -> tuple[tuple[str, ...], tuple[tuple[float, ...], ...] | None]:
        """``observe u, v``: the variables measured (the others are hidden); or linear
        maps of them, ``observe u + v, 2*w``: one measured quantity each (then every
        variable is hidden). Returns the names (the expressions' text for maps) and, for
        maps, the matrix ``H`` (one row per quantity)."""
        variables = system.variables
        for ref in s.refs:
            if ref.name not in variables and ref.name != "pi":
                raise self.err(UnknownSymbolError, f"`observe`: '{ref.name}' is not a variable",
                               ref.pos, length=len(ref.name),
                               hint=suggest(ref.name, variables) or
                               "variables: " + ", ".join(variables))
        exprs = s.data["exprs"]
        if all(isinstance(e, sympy.Symbol) for e in exprs):
            out: list[str] = []
            for e, ref in zip(exprs, s.refs):
                if e.name in out:
                    raise self.err(DeclarationError, f"`observe`: '{e.name}' is listed twice",
                                   ref.pos, length=len(e.name))
                out.append(e.name)
            return tuple(out), None
        syms = [sympy.Symbol(v) for v in variables]
        rows = []
        for e in exprs:
            text = sympy.sstr(e)
            try:
                poly = sympy.Poly(e, *syms)
                ok = poly.total_degree() <= 1 and poly.coeff_monomial(1) == 0 and all(
                    c.is_number for c in poly.coeffs())
            except sympy.PolynomialError:
                ok = False
            if not ok:
                raise self.err(OperatorError, f"`observe`: '{text}' is not a linear "
                               "combination of the variables", s.pos, length=7,
                               hint="observe variables (`observe u`) or constant-coefficient "
                               "sums of them (`observe u + v, 2*w`)")
            rows.append(tuple(float(poly.coeff_monomial(x)) for x in syms))
        if sympy.Matrix(rows).rank() < len(rows):
            raise self.err(DeclarationError, "`observe`: the observed quantities are linearly "
                           "dependent (one is a combination of the others)", s.pos, length=7,
                           hint="drop the redundant one")
        return tuple(sympy.sstr(e) for e in exprs), tuple(rows)

    def observe_fields(self, s: Stmt | None, system: System) -> dict[str, Any]:
        if s is None:
            return {}
        names, matrix = self.build_observe(s, system)
        return {"observe": names, "observe_matrix": matrix}

    def build_constraint(self, s: Stmt, spec: Spec) -> Constraint:
        """``constraint LHS = RHS where COND weight W`` (thesis eqs. 2.11–2.13). The
        residual may use any variable (hidden ones too: they are forecast), the condition
        only what the data measure, since it is read from the observed frames."""
        system = spec.system
        ctx = _Context(system)
        self.check_expr(s, ctx, ctx.known)
        for ref in s.refs:
            if ref.name == "t":
                raise self.err(UnknownSymbolError, "`constraint`: the time t cannot be used "
                               "here", ref.pos, length=1,
                               hint="a constraint holds at every frame; write it without t")
        residual = sympy.expand(s.data["lhs"] - s.data["rhs"])
        if residual == 0 or not (residual.free_symbols & set(map(sympy.Symbol,
                                                                 system.variables))
                                 or residual.atoms(SpatialOperator)):
            raise self.err(DeclarationError, "`constraint`: the equation does not involve a "
                           "variable, so it constrains nothing", s.pos, length=10,
                           hint="e.g. `constraint v = 0 where s > 0.5`")
        cond = s.data["cond"]
        hidden = set(spec.hidden_variables())
        for ref in reversed(s.refs):  # the condition's names come last on the line
            used = sorted(system.through_lets({ref.name}) & hidden)
            if used and sympy.Symbol(ref.name) in cond.free_symbols:
                what = f"'{ref.name}' is hidden" if ref.name in hidden else \
                    f"'{ref.name}' depends on the hidden '{used[0]}'"
                raise self.err(DeclarationError, f"`constraint ... where`: {what}; the "
                               "condition is read from the data", ref.pos,
                               length=len(ref.name),
                               hint="use measured variables (`observe`), coordinates and "
                               "parameters in the condition")
        weight = 1.0 if s.data["weight"] is None else \
            self.number(s.data["weight"], s.pos, "`constraint ... weight`")
        if not weight > 0:
            raise self.err(BoundsError, f"`constraint ... weight` must be positive, got "
                           f"{weight:g}", s.pos, length=10)
        if s.data.get("hard"):  # held; with `weight` as well, penalised in training only
            return Constraint(residual, cond, weight, s.pos,
                              variable=self.hard_constraint_variable(s, system),
                              penalised=s.data["weight"] is not None)
        return Constraint(residual, cond, weight, s.pos)

    def hard_constraint_variable(self, s: Stmt, system: System) -> str:
        """``constraint X = VALUE where COND hard`` holds X at VALUE inside the solver, so
        X is one state variable, VALUE does not change along a forecast (no state
        variable, no derivative) and COND does not read X (it would decide where X is
        held from X itself)."""
        lhs, rhs, cond = s.data["lhs"], s.data["rhs"], s.data["cond"]
        if not (isinstance(lhs, sympy.Symbol) and lhs.name in system.variables):
            raise self.err(DeclarationError, "`constraint ... hard`: the left side must be "
                           "one state variable, which the solver holds at the right side",
                           s.pos, length=10, hint="e.g. `constraint v = 0 where s > 0.5 "
                           "hard`; or drop `hard` for a penalty")
        reads = system.through_lets(sym.name for sym in rhs.free_symbols)
        moving = sorted(reads & set(system.variables))
        if moving or rhs.atoms(SpatialOperator):
            ref = next((r for r in s.refs if r.name in reads and
                        sympy.Symbol(r.name) in rhs.free_symbols), None)
            what = f"reads the state variable '{moving[0]}'" if moving else \
                "takes a derivative"
            raise self.err(DeclarationError, f"`constraint ... hard`: the right side {what}; "
                           "a held value must not change along a forecast",
                           ref.pos if ref is not None else s.pos,
                           length=len(ref.name) if ref is not None else 10,
                           hint="use numbers, parameters and coordinates; or drop `hard` "
                           "for a penalty")
        if lhs.name in system.through_lets(sym.name for sym in cond.free_symbols):
            ref = next(r for r in reversed(s.refs)
                       if lhs.name in system.through_lets({r.name})
                       and sympy.Symbol(r.name) in cond.free_symbols)
            raise self.err(DeclarationError, f"`constraint ... hard`: the condition reads "
                           f"'{lhs.name}', the variable it holds", ref.pos,
                           length=len(ref.name),
                           hint="a hard constraint's region is read from the other "
                           "variables (a scar: `where s > 0.5`)")
        return lhs.name

    def check_encoder(self, s: Stmt, spec: Spec) -> None:
        """An encoder estimates what the observations at ``t0`` do not give: hidden
        variables, or (with ``history K``) a better initial state from past frames. With
        everything observed and no history it has nothing to do."""
        hidden = list(spec.hidden_variables())
        for n in s.data["given"]:
            if n.text not in hidden:
                what = "not a variable" if n.text not in spec.system.variables else \
                    "observed, not hidden"
                raise self.name_err(DeclarationError, f"`encoder ... given`: '{n.text}' is "
                                    f"{what}", n, hint="`given` lists hidden variables whose "
                                    "initial values the data hold: " + (", ".join(hidden)
                                                                        or "there are none"))
        history = spec.data.history if spec.data is not None else 0
        if not hidden and not history:
            name = s.data["call"]["name"]
            raise self.name_err(DeclarationError, "`encoder`: every variable is observed and "
                                "the data keep no past frames, so there is nothing to encode",
                                name, hint="declare the measured variables with `observe u` "
                                "(the others are hidden), or keep past frames with `history K` "
                                "in the data block; or drop the encoder")

    def build_augment_on(self, s: Stmt, system: System) -> tuple[str, ...]:
        """``augment NET on u, v``: the variables whose equations the network augments."""
        out: list[str] = []
        for n in s.data.get("on", []):
            if n.text not in system.variables:
                raise self.name_err(UnknownSymbolError, f"`augment ... on`: '{n.text}' is not a "
                                    "variable", n, hint=suggest(n.text, system.variables))
            if n.text in out:
                raise self.name_err(DeclarationError, f"`augment ... on`: '{n.text}' is listed "
                                    "twice", n)
            out.append(n.text)
        return tuple(out)

    def build_augment_with(self, s: Stmt, system: System) -> tuple[str, ...]:
        """``augment NET with x, y, t``: the coordinates and/or time the network also takes
        as inputs (a term that depends on position or time cannot be learned without)."""
        names = s.data.get("with_", [])
        if not names:
            return ()
        call = s.data["call"]
        if call["name"].text == "none":
            raise self.name_err(DeclarationError, "`augment none ... with`: there is no "
                                "network to take the inputs", names[0],
                                hint="name a network, or drop `with`")
        allowed = (*(system.domain.axes if system.domain is not None else ()), "t")
        out: list[str] = []
        for n in names:
            if n.text not in allowed:
                what = "a coordinate of the domain or the time" if system.domain is not None \
                    else "the time (an ODE has no coordinates)"
                raise self.name_err(UnknownSymbolError, f"`augment ... with`: '{n.text}' is not "
                                    f"{what}", n, hint=suggest(n.text, allowed)
                                    or "allowed: " + ", ".join(allowed))
            if n.text in out:
                raise self.name_err(DeclarationError, f"`augment ... with`: '{n.text}' is "
                                    "listed twice", n)
            out.append(n.text)
        return tuple(out)

    def build_train(self, s: Stmt) -> TrainSpec:
        method = self.call(s.data["call"], "methods", "method")
        options, seen = [], {}
        table = self.vocab.train_options if self.vocab is not None else None
        for key, value in self.train_items(s.data["options"]):
            if table is not None and key.text not in table:
                raise self.name_err(OptionError, f"unknown train option '{key.text}'", key,
                                    hint=suggest(key.text, table) or
                                    "options: " + ", ".join(table))
            if key.text in seen:
                raise self.name_err(DeclarationError, f"option '{key.text}' given twice", key,
                                    hint=f"first given at column {seen[key.text].pos.column}")
            seen[key.text] = key
            value = _plain(value)
            if table is not None:
                value = self.typed(key, value, table[key.text])
            if key.text == "seed" and not 0 <= value <= limits.MAX_SEED:
                raise self.name_err(BoundsError, f"seed {value} lies outside 0 … 2^63 − 1",
                                    key)
            options.append((key.text, value))
        self.check_solver_options(options, seen)
        return TrainSpec(method, tuple(options), s.pos,
                         tuple((k, n.pos) for k, n in seen.items()))

    def check_solver_options(self, options, keys) -> None:
        """``solver rk4 rtol 1e-6``: a solver option the named solver does not take is an
        error wherever it is written (rk4 has no tolerance to set)."""
        solvers = self.vocab.train_solvers if self.vocab is not None else None
        given = dict(options)
        if solvers is None or given.get("solver") not in solvers:
            return
        name = given["solver"]
        for key in {k for opts in solvers.values() for k in opts} & set(given):
            if key not in solvers[name]:
                takes = ", ".join(solvers[name]) or "no options"
                raise self.name_err(OptionError, f"solver {name} does not take '{key}'",
                                    keys[key], hint=f"{name} takes: {takes}")

    def train_items(self, items):
        """The train line's options, with ``solver NAME(key=value)`` spread into the
        options ``solver`` and ``key`` (the training options ``step``, ``rtol``, ``atol``),
        each checked against what that solver takes."""
        solvers = self.vocab.train_solvers if self.vocab is not None else None
        for key, value in items:
            if not isinstance(value, dict):        # a plain option
                yield key, value
                continue
            name: Name = value["name"]
            if solvers is not None and name.text not in solvers:
                raise self.name_err(OptionError, f"unknown training solver '{name.text}'",
                                    key, hint=suggest(name.text, solvers) or
                                    f"choices: {', '.join(solvers)}")
            if value["args"]:
                raise self.err(OptionError, f"solver {name.text} takes its options by name",
                               value["pos"], length=len(name.text),
                               hint=f"e.g. `solver {name.text}(step=0.01)`")
            yield key, name.text
            allowed = solvers[name.text] if solvers is not None else None
            for k, v in value["kwargs"]:
                if allowed is not None and k.text not in allowed:
                    raise self.name_err(OptionError, f"unknown option '{k.text}' for "
                                        f"{name.text}", k, hint=suggest(k.text, allowed) or (
                                            f"{name.text} takes: {', '.join(allowed)}"
                                            if allowed else f"{name.text} takes no options"))
                yield k, v

    def typed(self, key: Name, value, kind: type):
        ok = True
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
        elif kind is bool:
            if value in ("true", "yes", "on", 1):
                value = True
            elif value in ("false", "no", "off", 0):
                value = False
            else:
                ok = False
        elif kind is str:
            ok = isinstance(value, str)
        if not ok:
            raise self.name_err(OptionError, f"option '{key.text}' takes {_KIND_WORDS[kind]}, "
                                f"got {value!r}", key)
        return value


_KIND_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a word"}


def _plain(value):
    """Option values as plain Python: SymPy numbers become float/int."""
    if isinstance(value, sympy.Basic):
        if value.is_Integer:
            return int(value)
        if value.is_number:
            return approx(value)
        return sympy.sstr(value)
    return value


class _Context:
    """What names mean while checking expressions: which are fields (for operators)."""

    def __init__(self, system: System | None = None):
        self.known: set[str] = set()
        self.fieldlike: set[str] = set()
        self.coords: tuple[str, ...] = ()
        self.domain = None
        if system is not None:
            self.domain = system.domain
            self.coords = system.domain.axes if system.domain else ()
            self.known = {*system.states, *system.fields, *(p.name for p in system.params),
                          *(m.name for m in system.masks), *(l.name for l in system.lets)}
            self.fieldlike = {*system.fields, *(m.name for m in system.masks), *self.coords}
            for let in system.lets:
                self.add_let(let.name, let.expr)

    @classmethod
    def for_names(cls, table, coords, domain):
        ctx = cls()
        ctx.domain = domain
        ctx.coords = tuple(coords)
        ctx.known = set(table)
        ctx.fieldlike = {k for k, (kind, _) in table.items() if kind in ("field", "mask")} | \
            set(coords)
        return ctx

    def add_let(self, name: str, expr):
        self.known.add(name)
        if self.is_field(expr):
            self.fieldlike.add(name)

    def is_field(self, expr) -> bool:
        if isinstance(expr, SpatialOperator):
            return True
        return any(s.name in self.fieldlike for s in expr.free_symbols) or \
            bool(expr.atoms(SpatialOperator))
