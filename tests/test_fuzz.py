"""Mutated specs fail only with SpecError: no other exception, no hang."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from physml.errors import SpecError
from physml.lang import parse_spec

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "equations").glob("*.phy")) + sorted((ROOT / "specs").glob("*.phy"))
TEXTS = [(str(p), p.read_text(encoding="utf-8")) for p in SOURCES]

#: Pieces that poke at the weak spots: brackets, indentation, huge or undefined numbers,
#: operators on the wrong things, Python escapes.
PIECES = ["(", ")", "[", "]", ",", ":", ";", "^", "**", "-", "/", "..", "~", "=", "\n", "    ",
          "\t", "\\\n", '"', "#", "x", "d(", ")/dt", "9^9^9^9", "1/0", "0^-1", "1e999", ".5",
          "2.", "1E+2", "999999999999999999999", "lap(", "inv_lap(", "dz(", "grad(", "div(",
          "piecewise(", "sqrt(-1)", "log(0)", "exp(1e5)", "__import__", "__class__", "lambda",
          "not", "and", "<=", "let q = ", "param ", "in (0, 1)", "inf", "pi", "t", "use ",
          "\x00", "é", "theta", "u", "state", "field", "domain 8 x 8 over [0, 1] x [0, 1]"]


@st.composite
def mutated(draw):
    path, text = draw(st.sampled_from(TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            text = "x"
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "line_dup",
                                   "line_del", "swap", "char"]))
        i = draw(st.integers(0, len(text) - 1))
        j = min(len(text), i + draw(st.integers(1, 12)))
        lines = text.split("\n")
        k = draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(PIECES)) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(PIECES)) + text[j:]
        elif op == "duplicate":
            text = text[:i] + text[i:j] * draw(st.integers(2, 4)) + text[j:]
        elif op == "line_dup":
            lines.insert(k, lines[draw(st.integers(0, len(lines) - 1))])
            text = "\n".join(lines)
        elif op == "line_del":
            del lines[k]
            text = "\n".join(lines)
        elif op == "swap":
            toks = text.split(" ")
            a = draw(st.integers(0, len(toks) - 1))
            b = draw(st.integers(0, len(toks) - 1))
            toks[a], toks[b] = toks[b], toks[a]
            text = " ".join(toks)
        else:
            text = text[:i] + draw(st.characters(min_codepoint=1, max_codepoint=0x2fff)) + text[i:]
    return path, text


def test_sources_exist():
    assert len(TEXTS) >= 4
    for path, text in TEXTS:
        if not path.endswith("broken.phy"):
            parse_spec(text, path)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(mutated())
def test_mutations_raise_only_spec_errors(case):
    path, text = case
    try:
        parse_spec(text, path)
    except SpecError as exc:
        rendered = str(exc)
        assert rendered and "Traceback" not in rendered
        if exc.pos is not None:
            assert exc.pos.line >= 1 and exc.pos.column >= 1


@settings(max_examples=60, deadline=2000, derandomize=True)
@given(st.lists(st.sampled_from(PIECES + list("abc019 +-*/()")), max_size=25))
def test_random_token_soup_raises_only_spec_errors(pieces):
    text = "".join(pieces)
    try:
        parse_spec("system s\nstate x\ndynamics:\n    d(x)/dt = " + text + "\n")
    except SpecError:
        pass


@pytest.mark.parametrize("expr", ["9^9^9^9", "(1/2)^(10^300)", "x^(10^9)",
                                  "sign(sin(exp(9999999999)))", "tanh(x^9999999999 + 1)*2",
                                  "2^2^2^2^2^2", "10^300*10^300*10^300*10^300", "1/(1e-400)",
                                  "exp(exp(exp(exp(10))))", "max(x^999, sin(10^300))"])
def test_blowups_are_errors_or_fast(expr):
    import time

    start = time.perf_counter()
    try:
        parse_spec("system s\nstate x\ndynamics:\n    d(x)/dt = " + expr + "\n")
    except SpecError:
        pass
    assert time.perf_counter() - start < 2.0


# ---- bounded and linear (issue 9.4, 9.5) --------------------------------------------------

def _let_chain(n: int) -> str:
    """n lets, each using the previous one twice: inlined, the last one has 2^n terms."""
    lets = "".join(f"let a{i} = {p}*{p} + k*{p}\n" for i, p in
                   ((i, "x" if i == 0 else f"a{i - 1}") for i in range(n)))
    return (f"system s\nstate x\nparam k = 0.5\n{lets}dynamics:\n"
            f"    d(x)/dt = -x + 1e-3*tanh(a{n - 1})\n")


def test_let_chain_compiles_linearly():
    import time

    import torch

    from physml import compile_dynamics

    start = time.perf_counter()
    F = compile_dynamics(parse_spec(_let_chain(40)))
    y = F(torch.tensor(0.0), torch.full((3, 1), 0.1))
    assert time.perf_counter() - start < 5.0          # generous; the structure is the test
    assert torch.isfinite(y).all()
    assert len(F._steps) == 40                         # one step per let, nothing inlined
    # Size grows by the same amount per let (linear), where inlining would double it.
    sizes = [compile_dynamics(parse_spec(_let_chain(n))).op_count for n in (10, 20, 30)]
    assert sizes[2] - sizes[1] == sizes[1] - sizes[0] == 10 * 3
    assert F.op_count == sizes[0] + 30 * 3


def test_let_chain_simulates_quickly():
    from physml.simulation import simulate

    text = _let_chain(24) + ("data:\n    trajectories 3 train\n    time 0 .. 1 step 0.25\n"
                             "    initial x ~ uniform(-0.1, 0.1)\n    solver rk4(step=0.05)\n")
    ds = simulate(parse_spec(text))
    assert ds["train"].shape == (1, 3, 5, 1)


def test_lets_shared_across_lets_are_computed_once():
    """CSE spans lets: sin(x*y) appears in two lets and is computed once."""
    from physml import compile_dynamics

    F = compile_dynamics(parse_spec("system s\nstate x, y\nlet a = sin(x*y) + x\n"
                                    "let b = sin(x*y) + y\ndynamics:\n    d(x)/dt = a\n"
                                    "    d(y)/dt = b\n"))
    assert [n for n, _ in F._steps][0].startswith("__cse")
    assert len(F._steps) == 3


# ---- the long fuzz run (slow): 10 000 mutated specs ---------------------------------------

def _mutate(rng, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        if not text:
            text = "x"
        op = rng.choice(["delete", "insert", "replace", "duplicate", "line_dup", "line_del",
                         "swap", "char", "repeat"])
        i = rng.randrange(len(text))
        j = min(len(text), i + rng.randint(1, 12))
        lines = text.split("\n")
        k = rng.randrange(len(lines))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + rng.choice(PIECES + EXTRA) + text[i:]
        elif op == "replace":
            text = text[:i] + rng.choice(PIECES + EXTRA) + text[j:]
        elif op == "duplicate":
            text = text[:i] + text[i:j] * rng.randint(2, 4) + text[j:]
        elif op == "line_dup":
            lines.insert(k, lines[rng.randrange(len(lines))])
            text = "\n".join(lines)
        elif op == "line_del":
            del lines[k]
            text = "\n".join(lines)
        elif op == "swap":
            toks = text.split(" ")
            a, b = rng.randrange(len(toks)), rng.randrange(len(toks))
            toks[a], toks[b] = toks[b], toks[a]
            text = " ".join(toks)
        elif op == "repeat":                   # long flat or deeply nested pieces
            piece = rng.choice(["+x", "*x", "(", "-", "^2", "let q = q\n", "(x)+"])
            text = text[:i] + piece * rng.choice([10, 100, 1000, 2000]) + text[i:]
        else:
            text = text[:i] + chr(rng.choice([rng.randint(1, 0x2fff), 0x2028, 0xff11, 0x0c,
                                              0x85, 0xfeff])) + text[i:]
    return text


#: Extra pieces for the long run: the abuse cases of issue 9.
EXTRA = ['use "/etc/passwd"', 'use "../x.phy"', "trajectories 0 train", "seed 99999999999999999999",
         "noise 1e308", "history 1000000000000", "time 0 .. 1e300 step 1", "１", "\u2028", "\f",
         "trajectories 1000000000 train", ":x:", "[bold]"]


@pytest.mark.slow
def test_ten_thousand_mutated_specs(tmp_path):
    import json
    import random
    import time

    rng = random.Random(9)
    slowest, count, failures = 0.0, 0, []
    start = time.perf_counter()
    for n in range(10_000):
        path, text = TEXTS[n % len(TEXTS)]
        text = _mutate(rng, text)
        t = time.perf_counter()
        try:
            parse_spec(text, str(tmp_path / "m.phy"))
        except SpecError as exc:
            rendered = str(exc)
            if "root:" in rendered or (exc.pos is not None and exc.pos.line < 1):
                failures.append((n, rendered[:200]))
        except Exception as exc:  # noqa: BLE001 - what this test hunts for
            failures.append((n, f"{type(exc).__name__}: {exc}"[:200]))
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > 1.0:
            failures.append((n, f"took {dt:.2f} s"))
        count += 1
    print(json.dumps({"specs": count, "seconds": round(time.perf_counter() - start, 1),
                      "slowest_s": round(slowest, 3)}))
    assert failures == []
