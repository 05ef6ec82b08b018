"""Spec names are the user's (issue 10, point 12): SymPy's own names (`I`, `E`, `S`, `N`,
`O`, `Q`) and nn.Module's attribute names are free; only the language's words are
reserved, and every printout keeps the user's spelling."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.symbolic.functions import RESERVED

SIR = """\
system sir "SIR epidemic"
state S, I, R
param beta = 0.5 in (0, inf)
param gamma = 0.1 in (0, inf)
let N = S + I + R
dynamics:
    d(S)/dt = -beta*S*I/N
    d(I)/dt = beta*S*I/N - gamma*I
    d(R)/dt = gamma*I
data:
    trajectories 4 train, 2 val, 2 test
    time 0 .. 10 step 1
    initial S ~ uniform(0.8, 0.99), I ~ uniform(0.01, 0.2), R ~ uniform(0, 0.01)
prior:
    d(S)/dt = -beta*S*I/N
    d(I)/dt = beta*S*I/N - gamma*I
    d(R)/dt = gamma*I
    learn beta from 0.3, gamma from 0.2
train physics epochs 3 batch 4
"""

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sir_checks_simulates_and_trains_with_its_names(tmp_path):
    path = tmp_path / "sir.phy"
    path.write_text(SIR)
    res = CliRunner().invoke(app, ["check", str(path)])
    assert res.exit_code == 0, res.output
    assert "ODE in S, I, R" in res.output and "d(I)/dt = " in res.output
    spec = physml.load_spec(path)
    assert spec.system.variables == ("S", "I", "R")
    ds = physml.simulate(spec)
    assert ds.variables == ("S", "I", "R") and ds["train"].shape == (1, 4, 11, 3)
    # S + I + R is conserved by the true system
    total = ds["train"].sum(-1)
    assert float((total - total[..., :1]).abs().max()) < 1e-5
    run = physml.train(spec, dataset=ds, steps=3, report=True, out=tmp_path / "run")
    report = (run.path / "report.md").read_text()
    for lhs in ("d(S)/dt =", "d(I)/dt =", "d(R)/dt ="):
        assert lhs in report
    equations = report.split("## Identified equations")[1].split("|")[0]
    assert "*I*S" in equations and "R + S" in equations
    assert "ⅈ" not in equations and "ℯ" not in equations     # not SymPy's I and E
    params = {p["name"] for p in json.loads((run.path / "report.json").read_text())
              ["evaluate"]["parameters"]}
    assert params == {"beta", "gamma"}


@pytest.mark.parametrize("names", [
    ("E", "N", "O", "Q", "lambda"),                     # SymPy's namespace
    ("training", "forward", "cuda", "type", "float"),   # nn.Module attributes
    ("time", "step", "data", "seed", "noise"),          # block keywords
])
def test_any_identifier_is_a_name(tmp_path, names):
    a, b, c, k1, k2 = names
    text = (f"system w\nstate {a}, {b}, {c}\nparam {k1} = 0.5 in (0, inf)\n"
            f"param {k2} = 0.2 in (0, inf)\ndynamics:\n    d({a})/dt = -{k1}*{a}*{b}\n"
            f"    d({b})/dt = {k1}*{a}*{b} - {k2}*{b}\n    d({c})/dt = {k2}*{b}\n"
            f"data:\n    trajectories 2 train, 1 val\n    time 0 .. 2 step 1\n"
            f"    initial {a}, {b}, {c} ~ uniform(0.1, 0.5)\nprior:\n"
            f"    d({a})/dt = -{k1}*{a}*{b}\n    d({b})/dt = {k1}*{a}*{b} - {k2}*{b}\n"
            f"    d({c})/dt = {k2}*{b}\n    learn {k1} from 0.3, {k2} from 0.3\n"
            "train physics epochs 2 batch 2\n")
    spec = physml.parse_spec(text, "w.phy")
    run = physml.train(spec, dataset=physml.simulate(spec), steps=2, report=False,
                       out=tmp_path / "run")
    last = [m for m in run.metrics() if "loss" in m][-1]
    assert {f"param/{k1}", f"param/{k2}"} <= set(last)


@pytest.mark.parametrize("word", RESERVED)
def test_the_language_words_are_reserved_with_the_list(word):
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(f"system w\nstate a, {word}\ndynamics:\n    d(a)/dt = -a\n", "w.phy")
    lines = str(info.value).splitlines()
    assert lines[0] == f"w.phy:2:10: '{word}' is a word of the language"
    assert lines[-1] == ("choose another name (reserved: pi, t, inf, d, dt, and, or, not, and "
                         "the function names)")


def test_errors_quote_the_users_names():
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(SIR.replace("- gamma*I\n", "- gamma*Ii\n", 1), "sir.phy")
    lines = str(info.value).splitlines()
    assert (lines[0], lines[-1]) == ("sir.phy:8:34: unknown symbol 'Ii'", "did you mean 'I'?")
