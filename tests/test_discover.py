"""Discovery: the candidate library, sparse regression, and absorbing terms into a spec."""
from __future__ import annotations

import contextlib
import itertools

import math
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from physml.discover import (Discovery, EquationFit, Library, Term, absorb, bootstrap,
                             default_library, library_for, monomials, stlsq)
from physml.errors import SpecError
from physml.experiment import parse_spec
from physml.symbolic import compile_terms
from physml.symbolic.functions import SPATIAL_OPERATORS, SpatialOperator

ROOT = Path(__file__).resolve().parents[1]

GRID = """system g
domain 16 x 16 over [0, 1] x [0, 1] periodic stencil spectral
field u, v
param D = 0.1 in (0, inf)
param c = 2
let w = c*u
dynamics:
    d(u)/dt = D*lap(u)
    d(v)/dt = D*lap(v)
"""


# -- the candidate module against SymPy ---------------------------------------------------

def _analytic(expr, fields: dict, x, y):
    """``expr`` with fields replaced by functions of x, y and spatial operators by the
    derivatives they stand for: the exact value SymPy gives."""
    def op(e):
        if isinstance(e, SpatialOperator):
            (arg,) = e.args
            f = op(arg)
            name = type(e).__name__
            if name == "lap":
                return sympy.diff(f, x, 2) + sympy.diff(f, y, 2)
            axis = (x, y)[e.axis]
            return sympy.diff(f, axis, e.derivative)
        if e.args:
            return e.func(*[op(a) for a in e.args])
        return fields.get(e, e)
    return op(expr)


def test_grid_terms_match_sympy_to_1e10():
    """Every default term of a two-field grid (polynomials, lap, dx, dy and their products
    with fields) and a few written ones, compiled into one module, equal SymPy's exact
    values on band-limited fields (the spectral stencil is exact on them)."""
    spec = parse_spec(GRID)
    x, y = sympy.symbols("x y")
    u, v = sympy.symbols("u v")
    exact = {u: sympy.sin(2 * sympy.pi * x) * sympy.cos(2 * sympy.pi * y) + 0.5,
             v: sympy.cos(2 * sympy.pi * (x + y)) - 0.3 * sympy.sin(4 * sympy.pi * y)}
    lib = default_library(spec, degree=3)
    extra = [sympy.sin(u) * v, sympy.Symbol("w") * sympy.Symbol("D") * u,
             SPATIAL_OPERATORS["dxx"](u) * v]
    terms = list(lib.terms) + extra
    assert len(lib) == 10 + 2 + 4 + 8
    module = compile_terms(spec, terms).to(torch.float64)
    X, Y = (torch.from_numpy(m) for m in spec.system.domain.mesh())
    state = torch.stack([
        torch.from_numpy(sympy.lambdify((x, y), exact[u], "numpy")(X.numpy(), Y.numpy())),
        torch.from_numpy(sympy.lambdify((x, y), exact[v], "numpy")(X.numpy(), Y.numpy()))])
    out = module(torch.zeros((), dtype=torch.float64), state[None])[0]
    assert out.shape == (len(terms), 16, 16)
    subs = {sympy.Symbol("w"): 2 * u, sympy.Symbol("D"): 0.1}
    for k, term in enumerate(terms):
        want = _analytic(term.xreplace(subs), exact, x, y)
        ref = np.broadcast_to(sympy.lambdify((x, y), want, "numpy")(X.numpy(), Y.numpy()),
                              (16, 16))
        assert np.abs(out[k].numpy() - ref).max() < 1e-10, term


def test_ode_terms_match_sympy():
    spec = parse_spec((ROOT / "specs" / "aphynity_pendulum.phy").read_text(),
                      str(ROOT / "specs" / "aphynity_pendulum.phy"))
    lib = default_library(spec)
    names = lib.names
    assert "sin(theta)" in names and "omega*theta^2" in names and names[0] == "1"
    module = compile_terms(spec, lib.terms).to(torch.float64)
    X = torch.randn(50, 2, dtype=torch.float64)
    out = module(torch.zeros((), dtype=torch.float64), X)
    f = sympy.lambdify(sympy.symbols("theta omega"), list(lib.terms), "numpy")
    for k, col in enumerate(f(X[:, 0].numpy(), X[:, 1].numpy())):
        assert np.abs(out[:, k].numpy() - np.broadcast_to(col, (50,))).max() < 1e-12


def test_monomials():
    assert [str(m) for m in monomials(["a", "b"], 2)] == ["1", "a", "b", "a**2", "a*b", "b**2"]


# -- the discover line ---------------------------------------------------------------------

LV = ROOT / "specs" / "discover" / "lotka_volterra_ude.phy"


def _lv(line: str):
    text = LV.read_text().replace("discover terms poly(3)", line)
    return parse_spec(text, str(LV))


def test_discover_line_restricts_and_adds():
    spec = _lv("discover terms poly(2), u^2*v, exp(-u)")
    names = library_for(spec).names
    assert names == ("1", "u", "v", "u^2", "u*v", "v^2", "u^2*v", "exp(-u)")
    spec = _lv("discover terms default, u^4")
    assert "u^4" in library_for(spec).names and "u^3" in library_for(spec).names


@pytest.mark.parametrize("line, column, message", [
    ("discover terms poly(3), w*u", 25, "unknown symbol 'w'"),
    ("discover terms poly(3), lap(u)", 25, "needs a domain"),
    ("discover terms foo(u), u", 16, "unknown function 'foo'"),
    ("discover terms poly(9)", 16, "degree lies in 1 … 6"),
    ("discover terms u, v, u", 22, "listed twice"),
])
def test_discover_line_errors_are_located(line, column, message):
    number = LV.read_text().splitlines().index("discover terms poly(3)") + 1
    where = (number, column)
    with pytest.raises(SpecError) as info:
        _lv(line)
    err = info.value
    assert (err.pos.line, err.pos.column) == where, str(err)
    assert message in err.message
    assert f"lotka_volterra_ude.phy:{where[0]}:{where[1]}: " in str(err)


# -- sparse regression ---------------------------------------------------------------------

def test_stlsq_recovers_a_noiseless_polynomial_system_exactly():
    """Lotka–Volterra's right-hand side sampled on random states: STLSQ on the cubic
    library finds exactly α u − β u v and δ u v − γ v (the least squares on the right
    support is exact without noise)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0.2, 3.0, size=(400, 2))
    u, v = X.T
    lib = monomials(["u", "v"], 3)
    f = sympy.lambdify(sympy.symbols("u v"), lib, "numpy")
    theta = np.stack([np.broadcast_to(c, u.shape) for c in f(u, v)], axis=1)
    names = [str(t) for t in lib]
    truth = {"u": {"u": 0.7, "u*v": -0.45}, "v": {"u*v": 0.3, "v": -1.1}}
    for (var, y), engine in itertools.product(
            (("u", 0.7 * u - 0.45 * u * v), ("v", 0.3 * u * v - 1.1 * v)), ("stlsq", "sr3")):
        fit = stlsq(theta, y, threshold=0.01, engine=engine)
        got = {names[j]: fit.coef[j] for j in np.flatnonzero(fit.coef)}
        assert set(got) == set(truth[var])
        for k, c in truth[var].items():
            assert abs(got[k] - c) < 1e-10
        assert fit.residual < 1e-10


def test_bootstrap_gives_inclusion_and_intervals():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = 2.0 * X[:, 0] - 0.5 * X[:, 2] + 0.01 * rng.normal(size=300)
    fit = bootstrap(X, y, threshold=0.05, n=50, seed=0)
    assert fit.inclusion[0] == 1 and fit.inclusion[2] == 1 and fit.inclusion[1] < 0.2
    assert fit.low[0] < 2.0 < fit.high[0] and fit.high[0] - fit.low[0] < 0.02
    assert fit.low[2] < -0.5 < fit.high[2]


@pytest.mark.slow  # importing PySINDy (scikit-learn) alone takes seconds
def test_pysindy_engine_agrees():
    pytest.importorskip("pysindy")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4))
    y = 1.5 * X[:, 1] - 3.0 * X[:, 3]
    ours, theirs = stlsq(X, y, 0.05), stlsq(X, y, 0.05, engine="pysindy")
    assert np.allclose(ours.coef, theirs.coef, atol=1e-8)


def test_sr3_keeps_what_its_threshold_keeps_when_terms_correlate():
    """SR3's hard threshold sits at ``threshold``: the true terms survive a near-copy of
    one of them in the library, and the near-copy is dropped (ν, λ as documented)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6))
    X[:, 5] = X[:, 0] + 0.05 * rng.normal(size=400)
    y = X[:, 0] + 0.3 * X[:, 2] + 0.02 * rng.normal(size=400)
    fit = stlsq(X, y, 0.05, engine="sr3")
    assert list(np.flatnonzero(fit.coef)) == [0, 2]
    assert abs(fit.coef[0] - 1) < 0.01 and abs(fit.coef[2] - 0.3) < 0.01


@pytest.mark.slow  # importing PySINDy (scikit-learn) alone takes seconds
def test_sr3_agrees_with_pysindy_sr3():
    pytest.importorskip("pysindy")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(300, 8))
        X[:, 7] = X[:, 0] + 0.1 * rng.normal(size=300)
        X[:, 6] = X[:, 2] - 0.2 * X[:, 1] + 0.05 * rng.normal(size=300)
        y = X[:, 0] - 0.4 * X[:, 2] + 0.1 * X[:, 4] + 0.05 * rng.normal(size=300)
        ours = stlsq(X, y, 0.05, engine="sr3")
        theirs = stlsq(X, y, 0.05, engine="pysindy-sr3")
        assert np.allclose(ours.coef, theirs.coef, atol=1e-8)


# -- absorb --------------------------------------------------------------------------------

def _found(spec, var, items):
    terms = [Term(t, n, c, 0.1, 1.0, lo, hi) for t, n, c, lo, hi in items]
    return EquationFit(var, terms, 1.0, 0.1, 0.0)


def test_absorb_writes_a_spec_check_accepts(tmp_path):
    """The absorbed spec of the frictionless pendulum holds −k·omega with k > 0 (the
    sign is known from the interval) learned from the discovered value, and passes
    `physml check`."""
    from typer.testing import CliRunner

    from physml.cli.app import app

    path = ROOT / "specs" / "discover" / "pendulum_frictionless.phy"
    spec = parse_spec(path.read_text(), str(path))
    omega = sympy.Symbol("omega")
    disc = Discovery([_found(spec, "omega", [(omega, "omega", -0.2004, -0.21, -0.19)]),
                      _found(spec, "theta", [])], Library((omega,)), 0.01, 100, 100, 10,
                     "stlsq")
    result = absorb(spec, disc, method="physics", path=str(tmp_path / "new.phy"))
    assert "    param k_omega_omega = 0.2004 in (0, inf)" in result.text
    assert "-k_omega_omega*omega" in result.text
    assert "learn T0 from 5, k_omega_omega" in result.text
    assert "train physics " in result.text
    (tmp_path / "new.phy").write_text(result.text)
    res = CliRunner().invoke(app, ["check", str(tmp_path / "new.phy")])
    assert res.exit_code == 0, res.output
    # A sign the interval does not fix gives an unbounded coefficient.
    disc.equations[0].terms[0].low = -0.3
    disc.equations[0].terms[0].high = 0.1
    text = absorb(spec, disc).text
    assert "param k_omega_omega = -0.2004\n" in text
    assert "d(omega)/dt = k_omega_omega*omega - omega0^2*sin(theta)" in text


def test_absorb_needs_a_kept_term():
    path = ROOT / "specs" / "discover" / "pendulum_frictionless.phy"
    spec = parse_spec(path.read_text(), str(path))
    disc = Discovery([_found(spec, "omega", [])], Library(()), 0.01, 1, 1, 0, "stlsq")
    with pytest.raises(ValueError, match="no discovered term"):
        absorb(spec, disc)


def test_prior_parameters_are_the_priors_own():
    """A `param` inside `prior:` is learned by the prior and unknown to the true system
    (its data are those of the system alone)."""
    from physml.symbolic import compile_dynamics

    text = """use damped_pendulum
prior:
    param k = 0.3 in (0, inf)
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta) - k*omega
    learn k
"""
    spec = parse_spec(text, str(ROOT / "specs" / "x.phy"))
    assert [p.name for p in spec.system.params] == ["T0", "alpha"]
    field = compile_dynamics(spec, "prior")
    assert field.learnable == ("k",)
    assert math.isclose(float(field.param_values()["k"]), 0.3, rel_tol=1e-6)
    with pytest.raises(SpecError, match="already declared in the system"):
        parse_spec(text.replace("param k =", "param alpha ="), str(ROOT / "specs" / "x.phy"))


# -- discover on a model whose F_a is known ------------------------------------------------

class _Friction(torch.nn.Module):
    """F_a = (0, −0.2·omega + 0.05·theta^3 + 0.03·sin(theta)): missing physics, and a
    piece of the prior's own term (as APHYNITY's split may leave in F_a)."""

    def forward(self, x):
        theta, omega = x[..., 0], x[..., 1]
        fa = -0.2 * omega + 0.05 * theta ** 3 + 0.03 * torch.sin(theta)
        return torch.stack([torch.zeros_like(theta), fa], -1)


def test_discover_finds_a_known_augmentation_exactly():
    from physml.discover import discover
    from physml.models import HybridModel
    from physml.symbolic import compile_dynamics

    path = ROOT / "specs" / "discover" / "pendulum_frictionless.phy"
    spec = parse_spec(path.read_text(), str(path))
    model = HybridModel(compile_dynamics(spec, "prior"), _Friction())
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(6, 20, 2, generator=g) * 4 - 2
    times = torch.linspace(0, 10, 20)
    found = discover(spec, model, frames, times, bootstrap=20)
    assert [eq.var for eq in found.equations] == ["omega"]  # `augment ... on omega`
    eq = found.fit("omega")
    kept = {t.name: t.coefficient for t in eq.kept}
    assert set(kept) == {"omega", "theta^3"}
    assert abs(kept["omega"] + 0.2) < 1e-6 and abs(kept["theta^3"] - 0.05) < 1e-6
    assert eq.terms[0].inclusion == 1.0 and eq.residual_rms < 1e-6
    # sin(theta) is the direction of the learned T0 (−(2π/T0)² sin θ): fitted beside the
    # library, never as a new term; F_a's 0.03·sin θ reads as a shift of T0.
    assert "sin(theta)" not in [t.name for t in eq.terms]
    T0 = found.learned["T0"]
    assert abs(eq.shifts["T0"] - 0.03 * T0 ** 3 / (8 * math.pi ** 2)) < 1e-6
    assert found.as_dict()["equations"][0]["expression"] == "-0.2*omega + 0.05*theta^3"


# -- the command ---------------------------------------------------------------------------

def test_discover_command_writes_json_and_an_absorbed_spec(tmp_path):
    """`physml discover RUN --absorb -o NEW` on a (briefly) trained run: the table,
    discovery.json, and a spec `physml check` accepts. The numbers of a 3-step run mean
    nothing, so every term is kept (a tiny threshold) to have something to absorb."""
    import json

    from typer.testing import CliRunner

    import physml
    from physml.cli.app import app

    run = physml.train(LV, out=tmp_path / "run", data_dir=tmp_path / "data", steps=3,
                       report=False)
    new = tmp_path / "lv_absorbed.phy"
    res = CliRunner().invoke(app, ["discover", str(run.path), "--bootstrap", "3",
                                   "--threshold", "1e-6", "--absorb", "-o", str(new)],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "F_a in d(u)/dt" in res.output and "identified:" in res.output
    info = json.loads((run.path / "discovery.json").read_text())
    assert info["library"][:3] == ["1", "u", "v"] and info["bootstrap"] == 3
    assert {e["var"] for e in info["equations"]} == {"u", "v"}
    text = new.read_text()
    assert text.startswith("# Written by `physml discover") and "    param k_u_u = " in text
    assert "learn k_u_" in text
    res = CliRunner().invoke(app, ["check", str(new)])
    assert res.exit_code == 0, res.output
    # A run without a network has nothing to discover: one line, exit 1.
    res = CliRunner().invoke(app, ["discover", str(run.path), "--refit", "physics"])
    assert res.exit_code == 1 and "go with --absorb" in res.output
    # --refine: the library refitted on the trajectories, recorded in discovery.json
    res = CliRunner().invoke(app, ["discover", str(run.path), "--bootstrap", "0", "--refine"],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "refined on the trajectories" in res.output and "full library refitted" in res.output
    info = json.loads((run.path / "discovery.json").read_text())
    ref = info["refinement"]
    assert ref["solver"] == "rk4 ×2" and ref["loss"] <= ref["limit"]
    res = CliRunner().invoke(app, ["discover", str(run.path), "--refine", "--refine-tol", "0"])
    assert res.exit_code == 1 and "--refine-tol 0: a relative increase > 0" in res.output


# -- refinement on the trajectories ---------------------------------------------------------

class _WrongInteractions(torch.nn.Module):
    """A poorly pinned F_a for the Lotka–Volterra UDE: interactions off by 30–40 % and two
    spurious terms (the truth is −0.5·u·v and 0.5·u·v)."""

    def forward(self, x):
        u, v = x[..., 0], x[..., 1]
        return torch.stack([-0.35 * u * v + 0.2 * u ** 2, 0.7 * u * v - 0.1 * v], -1)


def test_refine_finds_the_interactions_that_the_network_got_wrong(tmp_path):
    """`discover` fits the network (so it reports the network's wrong terms); `refine`
    refits the library on the trajectories and removes terms there: it keeps exactly
    −β·u·v and δ·u·v, at the data's values."""
    from physml.discover import discover
    from physml.discover.refine import apply, refine
    from physml.experiment.data import dataset_for
    from physml.data import Trajectories
    from physml.models import HybridModel
    from physml.symbolic import compile_dynamics

    spec = parse_spec(LV.read_text(), str(LV))
    ds, _ = dataset_for(spec, cache_dir=tmp_path)
    train = Trajectories(ds.splits["train"], ds.times, ds.history)
    model = HybridModel(compile_dynamics(spec, "prior"), _WrongInteractions()).double()
    found = discover(spec, model, train.frames, train.times, bootstrap=0)
    assert {t.name: round(t.coefficient, 6) for t in found.fit("u").kept} == \
        {"u*v": -0.35, "u^2": 0.2}
    # rk4 at 1/5 of the data's interval: the solver's own error lies far below what the
    # spurious terms could absorb
    r = refine(spec, model, found, train.frames, train.times, max_trajectories=8, step=0.05)
    kept = {v: {name: c for _, name, c in terms} for v, terms in r.terms.items()}
    assert set(kept["u"]) == {"u*v"} and set(kept["v"]) == {"u*v"}
    assert abs(kept["u"]["u*v"] + 0.5) < 1e-6 and abs(kept["v"]["u*v"] - 0.5) < 1e-6
    assert r.loss <= r.limit and r.limit >= (1 + r.tol) * r.loss_full
    removed = [st for st in r.path if not st.kept]
    assert len(removed) == r.candidates - 2
    # the next removal (a true term) would multiply the error by far more than 1 + tol
    assert r.path[-1].kept and r.path[-1].predicted > 100 * r.loss_full
    # apply: the discovery now carries the refined terms, which absorb writes
    refined = apply(found, r)
    assert {t.name for t in refined.fit("u").kept} == {"u*v"}
    assert refined.as_dict()["refinement"]["identified"]["u"].startswith("-0.5")


# -- several environments ------------------------------------------------------------------

class _KnownEnvironments(torch.nn.Module):
    """G_e of a LEADS-like model known in closed form: Lotka–Volterra with environment
    e's (α_e, γ_e) and shared β = δ = 0.5."""

    alpha = (0.5, 1.0, 0.25)
    gamma = (0.75, 0.5, 1.0)

    def __init__(self):
        super().__init__()
        self._rows = None

    @contextlib.contextmanager
    def at_rows(self, env):
        self._rows = env
        try:
            yield self
        finally:
            self._rows = None

    def forward(self, x):
        a = torch.tensor(self.alpha, dtype=x.dtype)[self._rows]
        c = torch.tensor(self.gamma, dtype=x.dtype)[self._rows]
        u, v = x[..., 0], x[..., 1]
        return torch.stack([a * u - 0.5 * u * v, 0.5 * u * v - c * v], -1)


def test_each_environment_gets_its_own_equations():
    """discover_environments fits, in each environment, the networks' part of its
    dynamics on its own states: every environment's α_e and γ_e come back exactly, β and
    δ in all of them."""
    from physml.discover import discover_environments
    from physml.models.environments import MultiEnvModel

    path = ROOT / "specs" / "leads_lotka_volterra.phy"
    spec = parse_spec(path.read_text(), str(path))
    model = MultiEnvModel(None, None, _KnownEnvironments(), None, 3, ("a", "b", "c"))
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 4, 10, 2, generator=g, dtype=torch.float64) * 2 + 0.5
    found = discover_environments(spec, model, frames, torch.linspace(0, 4.5, 10),
                                  bootstrap=0)
    assert list(found.environments) == ["a", "b", "c"]
    for e, name in enumerate("abc"):
        u = {t.name: t.coefficient for t in found.environments[name].fit("u").kept}
        v = {t.name: t.coefficient for t in found.environments[name].fit("v").kept}
        assert set(u) == {"u", "u*v"} and set(v) == {"v", "u*v"}
        assert abs(u["u"] - _KnownEnvironments.alpha[e]) < 1e-9
        assert abs(v["v"] + _KnownEnvironments.gamma[e]) < 1e-9
        assert abs(u["u*v"] + 0.5) < 1e-9 and abs(v["u*v"] - 0.5) < 1e-9
    assert set(found.as_dict()["environments"]) == {"a", "b", "c"}


def test_discover_command_on_a_leads_run(tmp_path):
    """`physml discover RUN` on a (briefly) trained LEADS run: a table per environment and
    discovery.json keyed by environment; --absorb and --refine say they do not apply."""
    import json

    from typer.testing import CliRunner

    import physml
    from physml.cli.app import app

    spec = ROOT / "specs" / "leads_lotka_volterra.phy"
    run = physml.train(spec, out=tmp_path / "run", data_dir=tmp_path / "data", steps=3,
                       report=False, compile=False)   # the spec compiles: minutes cold
    res = CliRunner().invoke(app, ["discover", str(run.path), "--bootstrap", "2",
                                   "--threshold", "1e-6"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "environment e1" in res.output and "environment e10" in res.output
    info = json.loads((run.path / "discovery.json").read_text())
    assert info["method"] == "leads" and len(info["environments"]) == 10
    assert {e["var"] for e in info["environments"]["e4"]["equations"]} == {"u", "v"}
    res = CliRunner().invoke(app, ["discover", str(run.path), "--bootstrap", "0",
                                   "--absorb", "-o", str(tmp_path / "x.phy")])
    assert res.exit_code == 1 and "multi-environment run is not supported yet" in res.output
    res = CliRunner().invoke(app, ["discover", str(run.path), "--refine"])
    assert res.exit_code == 1 and "--refine of a multi-environment run" in res.output


def test_with_a_hidden_variable_fa_is_sampled_on_the_models_own_states(tmp_path):
    """`observe u`: F_a is sampled on the model's forecasts of the training trajectories
    (hidden states from the encoder), not on the data's hidden channel (absent from user
    data; in simulated data the truth, in coordinates the model need not share); --refine
    says it does not apply."""
    import physml
    from physml.data import Trajectories
    from physml.experiment import discover_run
    from physml.experiment.run import RunError

    path = ROOT / "specs" / "chapter2" / "lv_prey_only.phy"
    text = path.read_text().replace("prior:", "augment mlp(hidden=16, layers=2)\nprior:") \
        .replace("train physics", "train aphynity")
    run = physml.train(parse_spec(text, str(path)), out=tmp_path / "run",
                       data_dir=tmp_path / "data", steps=3, report=False)
    found = discover_run(run, bootstrap=0, threshold=1e-6, write=False)
    model = run.load_model("best")
    ds = run.dataset()
    train = Trajectories(ds.splits["train"], ds.times, ds.history)
    with torch.no_grad():
        states = model.predict(train.batch()).flatten(0, 1).double()
        rate = model.field.double()(torch.zeros((), dtype=torch.float64), states)
    expected = float(rate[:, 1].pow(2).mean().sqrt())
    assert abs(found.fit("v").rate_rms - expected) < 1e-6 * expected  # float32 model
    with pytest.raises(RunError, match="--refine of a partially observed run"):
        discover_run(run, bootstrap=0, refine=True, write=False)
