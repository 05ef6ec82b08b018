"""The spec printer is the parser's inverse: parse(format(spec)) == spec."""
from __future__ import annotations

from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physml.errors import SpecError
from physml.experiment import vocabulary
from physml.lang import load_spec, parse_spec
from physml.symbolic.printer import format_expr, format_spec

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for p in [*ROOT.glob("equations/*.phy"), *ROOT.glob("specs/**/*.phy")]
               if p.name != "broken.phy")


def _load(path: Path):
    """With this version's vocabulary where the spec trains here, else syntax only
    (the LEADS specs name a method this version lacks)."""
    try:
        return load_spec(path, vocabulary=vocabulary()), vocabulary()
    except SpecError:
        return load_spec(path), None


def test_every_file_is_walked():
    names = {p.name for p in FILES}
    assert {"damped_pendulum.phy", "mitchell_schaeffer.phy", "navier_stokes.phy",
            "rd_aphynity_param_pde_ab.phy", "leads_lotka_volterra.phy"} <= names
    assert sum(p.parent.name == "table3_4" for p in FILES) >= 24


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_round_trip_of_every_spec(path):
    spec, vocab = _load(path)
    text = format_spec(spec)
    again = parse_spec(text, str(path), vocabulary=vocab)
    assert again == spec, text
    # Written once more, the text is the same: the printer has one spelling per tree.
    assert format_spec(again) == text


def test_the_language_spelling():
    spec = load_spec(ROOT / "equations" / "mitchell_schaeffer.phy")
    text = format_spec(spec)
    assert "piecewise((1 - h)/tau_open, v < v_gate; -h/tau_close)" in text
    assert "mask scar = " in text and " and " in text and "**" not in text
    assert "h*v^2*(1 - v)/tau_in" in text


def test_round_trip_catches_a_difference():
    """The comparison is not vacuous: a changed coefficient is a different spec."""
    spec = load_spec(ROOT / "equations" / "damped_pendulum.phy")
    text = format_spec(spec).replace("alpha*omega", "2*alpha*omega")
    assert parse_spec(text, spec.path) != spec


SYSTEM = """system h
state x, y
param a = 1.5 in (0, inf)
param b = -2
dynamics:
    d(x)/dt = {rhs}
    d(y)/dt = 0
"""

_atoms = st.sampled_from(["x", "y", "a", "b", "pi", "2", "3", "0.5", "1e-3", "7.25",
                          "12345678.125", "1/3"])
_unary = ["sin", "cos", "exp", "log", "sqrt", "tanh", "abs", "sign", "atan"]


def _expr(depth: int):
    if depth == 0:
        return _atoms
    sub = _expr(depth - 1)
    return st.one_of(
        _atoms,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(sub, st.sampled_from(["2", "3", "-1", "0.5", "(3/2)", "y"])).map(
            lambda t: f"({t[0]})^{t[1]}"),
        sub.map(lambda s: f"-({s})"),
        st.tuples(st.sampled_from(_unary), sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["min", "max"]), sub, sub).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        # Comparisons of simple operands (SymPy rewrites a comparison of a piecewise
        # into an if-then-else of conditions, which no text spells).
        st.tuples(sub, _atoms, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), _atoms,
                  st.sampled_from(["", " and y > 1", " or not x < a"])).map(
            lambda t: f"piecewise({t[0]}, {t[1]} {t[2]} {t[3]}{t[4]}; {t[1]})"),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expr(3))
def test_round_trip_of_generated_expressions(rhs):
    try:
        spec = parse_spec(SYSTEM.format(rhs=rhs))
    except SpecError:
        return  # e.g. a constant division by zero: nothing to print
    rhs_tree = spec.system.equations[0].rhs
    if rhs_tree.has(sympy.I) or any(f.is_number for f in rhs_tree.atoms(sympy.Function)):
        # SymPy rewrote a constant into a function of floats (exp(pi)^0.5 → exp(0.5*pi)),
        # which the parser folds to a float when written, or (-abs(x))^0.5 into
        # I*sqrt(abs(x)): no text spells such a tree.
        return
    text = format_spec(spec)
    again = parse_spec(text)
    assert again.system.equations[0].rhs == spec.system.equations[0].rhs, text
    assert again == spec


@pytest.mark.parametrize("expr, text", [
    (sympy.Symbol("u") ** 3, "u^3"),
    (-sympy.Symbol("k") * sympy.Symbol("u") / 2, "-k*u/2"),
    (sympy.sqrt(sympy.Symbol("u")), "sqrt(u)"),
    (1 / sympy.Symbol("u"), "1/u"),
    (sympy.Abs(sympy.Symbol("u")) - sympy.Float(0.25), "abs(u) - 0.25"),
])
def test_format_expr(expr, text):
    assert format_expr(expr) == text


LEADS_AND_PARTIAL = [
    """use lotka_volterra
data:
    trajectories 1 train, 1 val, 4 test
    time 0 .. 2 step 0.5
    initial u, v ~ uniform(1, 2)
environments:
    e1: alpha = 0.5, gamma = 0.5
    e2: alpha = 1, gamma = 0.75
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha per environment from 0.6, gamma per environment, beta, delta
per_environment mlp(hidden=16, layers=2)
train leads(lambda_inv=2e-4, spectral=1e-2) epochs 2
""",
    """use lotka_volterra
data:
    trajectories 1 train, 1 val, 4 test
    time 0 .. 2 step 0.5
    initial u, v ~ uniform(1, 2)
environments:
    e1: alpha = 0.5, gamma = 0.5
    e2: alpha = 1, gamma = 0.75
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn beta, delta
    learn alpha per environment, gamma per environment
train leads epochs 2
""",
    """use lotka_volterra
data:
    trajectories 4 train, 2 test
    time 0 .. 2 step 0.5
    history 3
    initial u, v ~ uniform(1, 2)
observe u + 2*v
encoder mlp(hidden=16)
train neural epochs 2
""",
    """use lotka_volterra
data:
    trajectories 4 train, 2 test
    time 0 .. 2 step 0.5
    history 3
    initial u, v ~ uniform(1, 2)
prior:
    d(u)/dt = alpha*u - beta*u*v
    d(v)/dt = delta*u*v - gamma*v
    learn alpha, beta
observe u
encoder mlp(hidden=16) given v
train physics epochs 2
""",
]


@pytest.mark.parametrize("text", LEADS_AND_PARTIAL, ids=["leads", "leads_mixed", "linear_observe", "given"])
def test_round_trip_of_environment_and_observation_lines(text):
    spec = parse_spec(text, "x.phy", vocabulary=vocabulary())
    written = format_spec(spec)
    assert parse_spec(written, "x.phy", vocabulary=vocabulary()) == spec, written
    if spec.environments:
        assert len(spec.prior.per_environment) == 2
    for line in text.splitlines()[-4:]:
        if line.startswith(("observe", "encoder", "per_environment")):
            assert line in written
