"""What the parser builds: SymPy values and the Spec fields of every block."""
from __future__ import annotations

import math

import pytest
import sympy

from physml.errors import UnknownSymbolError
from physml.lang import parse_spec
from physml.symbolic.functions import dx, lap

theta, omega, a, b, c = sympy.symbols("theta omega a b c")


def rhs(expr: str, params: str = "") -> sympy.Expr:
    """The right-hand side of a one-variable system ``d(theta)/dt = expr``."""
    text = f"system s\nstate theta\n{params}dynamics:\n    d(theta)/dt = {expr}\n"
    return parse_spec(text).system.equations[0].rhs


ABC = "param a = 1\nparam b = 2\nparam c = 3\n"


@pytest.mark.parametrize("text, value", [
    ("1e-3", sympy.Float(1e-3)), (".5", sympy.Float(0.5)), ("2.", sympy.Float(2.0)),
    ("1E+2", sympy.Float(100.0)), ("42", sympy.Integer(42)), ("0.25", sympy.Float(0.25)),
    ("3e2", sympy.Float(300.0)),
])
def test_numbers_in_all_forms(text, value):
    got = rhs(text)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("text, expected", [
    ("-theta^2", -(theta ** 2)),
    ("2^-1", sympy.Rational(1, 2)),
    ("a/b/c", a / b / c),
    ("a^b^c", a ** (b ** c)),
    ("a - b - c", a - b - c),
    ("a*b^2", a * b ** 2),
    ("-a*b", -(a * b)),
    ("(a + b)*c", (a + b) * c),
    ("a**2", a ** 2),
    ("2*pi/a", 2 * sympy.pi / a),
])
def test_precedence(text, expected):
    assert sympy.simplify(rhs(text, ABC) - expected) == 0
    assert rhs(text, ABC) == expected


def test_piecewise_several_branches():
    got = rhs("piecewise(a, theta < 0; b, theta < 1; c)", ABC)
    assert got == sympy.Piecewise((a, theta < 0), (b, theta < 1), (c, True))


def test_comparisons_and_logic():
    got = rhs("piecewise(1, theta >= 0 and theta != 2 or not theta == 5; 0)")
    cond = got.args[0][1]
    assert cond == sympy.Or(sympy.And(sympy.Ge(theta, 0), sympy.Ne(theta, 2)),
                            sympy.Not(sympy.Eq(theta, 5), evaluate=False), evaluate=False)
    assert any(isinstance(arg, sympy.Not) for arg in cond.args)  # kept as written
    got = rhs("piecewise(1, theta <= 1; 2, theta > 3; 0)")
    assert [c for _, c in got.args[:2]] == [sympy.Le(theta, 1), sympy.Gt(theta, 3)]


def test_line_continuation_inside_parentheses():
    got = rhs("(a +\n        b)*theta", ABC)
    assert got == (a + b) * theta


def test_backslash_continuation():
    assert rhs("a + \\\n    b", ABC) == a + b


GRID = """\
system g
domain 16 x 8 over [0, 2] x [-1, 1] periodic
field u
param k = 0.5
dynamics:
    d(u)/dt = k*lap(u) + sin(x)*cos(y) + t
"""


def test_coordinates_in_grid_system():
    spec = parse_spec(GRID)
    s = spec.system
    u, k, x, y, t = sympy.symbols("u k x y t")
    assert s.fields == ("u",)
    assert s.domain.shape == (16, 8)
    assert s.domain.bounds == ((0.0, 2.0), (-1.0, 1.0))
    assert s.equations[0].rhs == k * lap(u) + sympy.sin(x) * sympy.cos(y) + t


def test_boundary_per_axis():
    text = GRID.replace(" periodic\n", "\nboundary x periodic, y neumann\n")
    d = parse_spec(text).system.domain
    assert [bc.kind for bc in d.boundaries] == ["periodic", "neumann"]


def test_dirichlet_value():
    text = GRID.replace(" periodic\n", " dirichlet 0.5\n").replace("lap(u)", "dx(u)")
    d = parse_spec(text).system.domain
    assert [(bc.kind, bc.value) for bc in d.boundaries] == [("dirichlet", 0.5)] * 2
    u = sympy.Symbol("u")
    assert parse_spec(text).system.equations[0].rhs.has(dx(u))


def test_one_and_three_d_domains():
    one = parse_spec("system a\ndomain 32 over [0, 1] neumann\nfield u\ndynamics:\n"
                     "    d(u)/dt = dxx(u)\n").system.domain
    assert one.shape == (32,) and one.axes == ("x",)
    three = parse_spec("system a\ndomain 8 x 8 x 4 over [0, 1] x [0, 1] x [0, 2] periodic "
                       "stencil central4\nfield u\ndynamics:\n    d(u)/dt = dz(u) + z\n")
    assert three.system.domain.shape == (8, 8, 4)
    assert three.system.domain.axes == ("x", "y", "z")
    assert three.system.domain.stencil == "central4"


def test_lets_in_order_and_mask():
    text = ("system m\ndomain 8 x 8 over [0, 8] x [0, 8] periodic\nfield u\nparam r = 2\n"
            "mask scar = (x - 4)^2 + (y - 4)^2 < r^2\nlet two = 2\nlet four = two*two\n"
            "dynamics:\n    let lu = lap(u)\n    d(u)/dt = four*lu*(1 - scar)\n")
    s = parse_spec(text).system
    assert [l.name for l in s.lets] == ["two", "four", "lu"]
    assert s.lets[1].expr == sympy.Symbol("two") ** 2
    assert [m.name for m in s.masks] == ["scar"]


def test_let_used_before_definition_is_an_error():
    with pytest.raises(UnknownSymbolError, match="'b' is used before its `let`"):
        rhs("theta", "let c = b\nlet b = 1\n")


def test_huge_and_symbolic_constants():
    assert rhs("sin(pi/2)") == 1
    assert rhs("sqrt(2)") == sympy.sqrt(2)
    assert math.isclose(float(rhs("sin(exp(100))")), math.sin(math.exp(100)))


EXPERIMENT = """\
use damped_pendulum
data:
    trajectories 20 train, 5 val, 10 test
    time 0 .. 10 step 0.5
    initial theta ~ uniform(-1, 1), omega ~ normal(0, 0.5)
    noise 0.01
    solver dopri5(rtol=1e-9, atol=1e-9)
    seed 3
    history 4
prior:
    let w = 2*pi/T0
    d(theta)/dt = omega
    d(omega)/dt = -w^2*sin(theta)
    learn T0 from 5, alpha
augment mlp(hidden=64, layers=2)
environments:
    slow: T0 = 8
    fast: T0 = 4, alpha = 0.1
observe theta
encoder transformer(heads=8)
train aphynity(lambda0=1, tau2=10, niter=3) solver rk4 epochs 100 lr 1e-3 adjoint true
"""


def test_experiment_blocks():
    import physml

    spec = parse_spec(EXPERIMENT)  # syntax level: blocks not yet trained still parse
    assert spec.observe == ("theta",)
    assert spec.encoder.name == "transformer"
    # Checked against the library: options typed, and nothing it cannot train.
    spec = physml.parse_spec(EXPERIMENT.replace("observe theta\nencoder transformer(heads=8)\n", ""))
    assert spec.uses == "damped_pendulum"
    d = spec.data
    assert d.splits == (("train", 20), ("val", 5), ("test", 10))
    assert (d.t0, d.t1, d.dt, d.n_steps) == (0.0, 10.0, 0.5, 21)
    assert [(s.variables, s.call.name, s.call.args) for s in d.initial] == [
        (("theta",), "uniform", (-1, 1)), (("omega",), "normal", (0, 0.5))]
    assert (d.noise, d.seed, d.history) == (0.01, 3, 4)
    assert (d.solver.name, d.solver.kwargs) == ("dopri5", (("rtol", 1e-9), ("atol", 1e-9)))
    p = spec.prior
    assert [e.var for e in p.equations] == ["theta", "omega"]
    assert [l.name for l in p.lets] == ["w"]
    assert p.learn == (("T0", 5.0), ("alpha", None))
    assert (spec.augment.name, spec.augment.kwargs) == ("mlp", (("hidden", 64), ("layers", 2)))
    assert [(e.name, e.values) for e in spec.environments] == [
        ("slow", (("T0", 8.0),)), ("fast", (("T0", 4.0), ("alpha", 0.1)))]
    t = spec.train
    assert t.method.name == "aphynity"
    assert t.method.kwargs == (("lambda0", 1), ("tau2", 10), ("niter", 3))
    assert t.option_dict() == {"solver": "rk4", "epochs": 100, "lr": 1e-3, "adjoint": True}


def test_environment_grid_product():
    spec = parse_spec("use damped_pendulum\nenvironments:\n"
                      "    grid T0 = [4, 6], alpha = [0.1, 0.2, 0.3]\n")
    assert len(spec.environments) == 6
    assert spec.environments[0].as_dict() == {"T0": 4.0, "alpha": 0.1}
    assert spec.environments[-1].as_dict() == {"T0": 6.0, "alpha": 0.3}


def test_ring_sampler_and_time_steps():
    spec = parse_spec("use damped_pendulum\ndata:\n    time steps 40 dt 0.25\n"
                      "    initial theta, omega ~ ring(1.3, 2.3)\n")
    assert (spec.data.t0, spec.data.t1, spec.data.dt) == (0.0, 10.0, 0.25)
    assert spec.data.initial[0].variables == ("theta", "omega")


def test_builtin_library_parses():
    from physml.lang import library_names, load_spec, library_path

    for name in library_names():
        spec = load_spec(library_path(name))
        assert spec.system.equations


def test_blocks_the_library_cannot_train_are_located_errors():
    import physml

    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(EXPERIMENT, "e.phy")
    # `observe` trains (issue 12); encoders come from their own registry.
    line = EXPERIMENT.splitlines().index("encoder transformer(heads=8)") + 1
    assert str(info.value).startswith(f"e.phy:{line}:9: unknown encoder 'transformer'")
    assert "choices: mlp, gru, unet, convnet" in str(info.value)
    text = EXPERIMENT.replace("train aphynity(lambda0=1, tau2=10, niter=3)", "train lead()")
    text = text.replace("observe theta\nencoder transformer(heads=8)\n", "")
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(text, "e.phy")
    line = text.splitlines().index(next(l for l in text.splitlines() if "lead" in l)) + 1
    assert str(info.value).startswith(f"e.phy:{line}:7: unknown method 'lead'")
    assert "did you mean 'leads'?" in str(info.value)
