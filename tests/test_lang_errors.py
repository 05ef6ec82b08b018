"""One test per error class of the language: exact message, line:column, caret and hint."""
from __future__ import annotations

import pytest

from physml.errors import (BoundsError, DeclarationError, OperatorError, OptionError, SpecError,
                           SpecSyntaxError, UnknownSymbolError, UseError)
from physml import load_spec, parse_spec  # checked against the library's registries

PENDULUM = """\
system p
state theta, omega
param T0 = 6 in (0, inf)
dynamics:
    d(theta)/dt = omega
    d(omega)/dt = -sin(theta)
"""

GRID = """\
system r
domain 8 x 8 over [0, 1] x [0, 1] {bc}
field u
param a = 1
dynamics:
    d(u)/dt = {rhs}
"""


def error(text: str, cls=SpecError, file: str = "t.phy") -> SpecError:
    with pytest.raises(cls) as info:
        parse_spec(text, file)
    return info.value


def where(err: SpecError) -> tuple[int, int]:
    return err.line, err.column


def grid(rhs: str, bc: str = "periodic") -> str:
    return GRID.format(rhs=rhs, bc=bc)


# ---- syntax ------------------------------------------------------------------------------

def test_syntax_error_full_rendering():
    err = error(PENDULUM.replace("= omega", "= omega +"), SpecSyntaxError)
    assert str(err) == (
        "t.phy:5:26: unexpected end of line; expected an expression\n"
        "        d(theta)/dt = omega +\n"
        "                             ^"
    )


def test_syntax_unknown_statement_keyword_suggests():
    err = error(PENDULUM.replace("param T0", "parm T0"), SpecSyntaxError)
    assert where(err) == (3, 1)
    assert err.message == (
        "unexpected 'parm'; expected a statement (system, use, domain, boundary, state, field, "
        "mask, param, let, dynamics, data, prior, augment, per_environment, environments, "
        "observe, encoder, constraint, discover, train)")
    assert err.hint == "did you mean 'param'?"
    assert "    parm T0 = 6 in (0, inf)\n    ^^^^" in str(err)


def test_syntax_data_entry_suggests_trajectories():
    err = error("use damped_pendulum\ndata:\n    trajectory 25 train\n", SpecSyntaxError)
    assert where(err) == (3, 5)
    assert err.message == ("unexpected 'trajectory'; expected a `data:` entry (trajectories, "
                           "time, initial, noise, solver, seed, file, map, history, warmup, split)")
    assert err.hint == "did you mean 'trajectories'?"


def test_train_option_typo_suggests_epochs():
    err = error("use damped_pendulum\ntrain aphynity() epoch 10\n", OptionError)
    assert str(err) == (
        "t.phy:2:18: unknown train option 'epoch'\n"
        "    train aphynity() epoch 10\n"
        "                     ^^^^^\n"
        "did you mean 'epochs'?"
    )


def test_syntax_unexpected_character():
    err = error(PENDULUM.replace("-sin(theta)", "-sin(theta) $"), SpecSyntaxError)
    assert where(err) == (6, 31)
    assert err.message == ("unexpected character '$'; expected an operator (+ - * / ^) or the "
                           "end of the line")


def test_syntax_unclosed_parenthesis_points_at_it():
    text = PENDULUM.replace("-sin(theta)", "-sin(theta") + "param b = 1\n"
    err = error(text, SpecSyntaxError)
    assert where(err) == (6, 23)
    assert err.message == "'(' is never closed"
    assert err.hint == "add the missing ')'"


def test_syntax_unclosed_parenthesis_at_end_of_file():
    err = error(PENDULUM.replace("-sin(theta)", "-sin(theta"), SpecSyntaxError)
    assert where(err) == (6, 29)
    assert err.message.startswith("unexpected end of block; expected ")
    assert err.hint == "the '(' at column 23 is never closed; add ')'"


def test_syntax_unmatched_closing_parenthesis():
    err = error(PENDULUM.replace("= omega\n", "= omega)\n"), SpecSyntaxError)
    assert where(err) == (5, 24)
    assert err.message.startswith("unexpected ')'")


def test_syntax_inconsistent_indentation():
    err = error(PENDULUM.replace("    d(omega)", "  d(omega)"), SpecSyntaxError)
    assert where(err) == (6, 3)
    assert err.message == ("inconsistent indentation: this line is indented by 2, which matches "
                           "no enclosing block (indentations in use: 0, 4)")
    assert err.hint == "indent every line of a block by the same amount (4 spaces)"


def test_syntax_unexpected_indentation():
    err = error(PENDULUM.replace("param T0", "    param T0"), SpecSyntaxError)
    assert where(err) == (3, 1)
    assert err.message.startswith("unexpected indentation")


def test_syntax_single_quotes_are_not_strings():
    err = error("use 'damped_pendulum'\n", SpecSyntaxError)
    assert where(err) == (1, 5)
    assert err.message.startswith("unexpected character \"'\": strings are written in double "
                                  "quotes")


# ---- names -------------------------------------------------------------------------------

def test_unknown_symbol_with_suggestion():
    err = error(PENDULUM.replace("-sin(theta)", "-sin(thetta)"), UnknownSymbolError)
    assert str(err) == (
        "t.phy:6:24: unknown symbol 'thetta'\n"
        "        d(omega)/dt = -sin(thetta)\n"
        "                           ^^^^^^\n"
        "did you mean 'theta'?"
    )


def test_unknown_function_with_suggestion():
    err = error(PENDULUM.replace("-sin(theta)", "-sinn(theta)"), UnknownSymbolError)
    assert where(err) == (6, 20)
    assert err.message == "unknown function 'sinn'"
    assert err.hint is not None and "'sin'" in err.hint


def test_equation_for_undeclared_variable():
    err = error(PENDULUM + "    d(phi)/dt = 1\n", DeclarationError)
    assert where(err) == (7, 7)
    assert err.message == "equation for 'phi', which is not a declared variable"
    assert err.hint == "variables: theta, omega"


def test_missing_equation():
    err = error(PENDULUM.replace("    d(omega)/dt = -sin(theta)\n", ""), DeclarationError)
    assert where(err) == (4, 1)
    assert err.message == "`dynamics:` has no equation for 'omega'"
    assert err.hint == "write d(omega)/dt = … (use 0 if it does not change)"


def test_duplicated_equation():
    err = error(PENDULUM + "    d(omega)/dt = 1\n", DeclarationError)
    assert where(err) == (7, 7)
    assert err.message == "second equation for 'omega' (first at line 6)"


def test_duplicate_names():
    err = error(PENDULUM.replace("param T0", "param theta"), DeclarationError)
    assert where(err) == (3, 7)
    assert err.message == "duplicate name 'theta' (already declared as state at line 2)"


def test_duplicate_statement():
    err = error(PENDULUM.replace("state theta, omega\n", "state theta, omega\nsystem q\n"),
                DeclarationError)
    assert where(err) == (3, 1)
    assert err.message == "duplicate `system` (first at line 1)"


def test_name_shadowing_a_function():
    err = error(PENDULUM.replace("param T0 = 6 in (0, inf)", "param sin = 1"), DeclarationError)
    assert str(err) == (
        "t.phy:3:7: 'sin' shadows the function sin()\n"
        "    param sin = 1\n"
        "          ^^^\n"
        "choose another name"
    )


def test_let_used_before_definition():
    err = error(PENDULUM.replace("dynamics:", "let a = b\nlet b = 1\ndynamics:"),
                UnknownSymbolError)
    assert where(err) == (4, 9)
    assert err.message == "'b' is used before its `let` (line 5)"
    assert err.hint == "move the `let` above its first use"


# ---- bounds ------------------------------------------------------------------------------

def test_bounds_low_not_below_high():
    err = error(PENDULUM.replace("(0, inf)", "(2, 1)"), BoundsError)
    assert where(err) == (3, 14)
    assert err.message == "empty bounds for 'T0': lower 2 is not below upper 1"


def test_bounds_default_outside():
    err = error(PENDULUM.replace("(0, inf)", "(0, 1)"), BoundsError)
    assert where(err) == (3, 7)
    assert err.message == "default 6 of 'T0' lies outside its bounds (0, 1)"


def test_bounds_open_edge_rejected_closed_edge_accepted():
    err = error(PENDULUM.replace("param T0 = 6 in (0, inf)", "param a = 0 in (0, 1)"),
                BoundsError)
    assert where(err) == (3, 7)
    assert err.message == "default 0 of 'a' lies outside its bounds (0, 1)"
    spec = parse_spec(PENDULUM.replace("param T0 = 6 in (0, inf)", "param a = 0 in [0, 1)"))
    (a,) = spec.system.params
    assert (a.value, a.lower, a.upper, a.lower_open, a.upper_open) == (0.0, 0.0, 1.0, False, True)


# ---- operators ---------------------------------------------------------------------------

def test_spatial_operator_without_domain():
    err = error(PENDULUM.replace("-sin(theta)", "lap(theta)"), OperatorError)
    assert where(err) == (6, 19)
    assert err.message == "spatial operator lap() needs a domain"
    assert err.hint == ("declare `domain N x M over [a, b] x [c, d] periodic` and `field` "
                        "variables")


def test_operator_on_scalar():
    err = error(grid("lap(a)"), OperatorError)
    assert str(err) == (
        "t.phy:6:15: lap() applied to a scalar 'a'; spatial operators act on fields\n"
        "        d(u)/dt = lap(a)\n"
        "                  ^^^"
    )


@pytest.mark.parametrize("rhs, message, column", [
    ("sin(u, u)", "sin() takes 1 argument, got 2", 15),
    ("lap()", "lap() takes 1 argument, got 0", 15),
    ("max(u)", "max() takes 2 arguments, got 1", 15),
])
def test_wrong_arity(rhs, message, column):
    err = error(grid(rhs), OperatorError)
    assert where(err) == (6, column)
    assert err.message == message


def test_inv_lap_needs_periodic_domain():
    err = error(grid("inv_lap(u)", bc="neumann"), OperatorError)
    assert where(err) == (6, 15)
    assert err.message == "inv_lap() is spectral and needs a periodic domain"


def test_dz_on_2d_domain():
    err = error(grid("dz(u)"), OperatorError)
    assert where(err) == (6, 15)
    assert err.message == "dz() differentiates along z, which a 2-D domain does not have"


def test_grad_outside_div():
    err = error(grid("grad(u)"), OperatorError)
    assert where(err) == (6, 15)
    assert err.message == "grad(...) is a vector; use it as div(grad(u))"
    assert parse_spec(grid("div(grad(u))")).system.equations[0].rhs.func.__name__ == "lap"


# ---- use ---------------------------------------------------------------------------------

def test_use_missing_file(tmp_path):
    spec = tmp_path / "exp.phy"
    spec.write_text('use "nofile.phy"\n')
    with pytest.raises(UseError) as info:
        load_spec(spec)
    err = info.value
    assert where(err) == (1, 5)
    assert err.message == f"`use`: no file {tmp_path / 'nofile.phy'}"


def test_use_missing_builtin_suggests():
    err = error("use damped_pendulm\n", UseError)
    assert str(err).startswith(
        "t.phy:1:5: `use`: no built-in system 'damped_pendulm'\n"
        "    use damped_pendulm\n"
        "        ^^^^^^^^^^^^^^\n"
        "did you mean 'damped_pendulum'")


def test_use_cycle(tmp_path):
    (tmp_path / "a.phy").write_text('use "b.phy"\n')
    (tmp_path / "b.phy").write_text('use "a.phy"\n')
    with pytest.raises(UseError) as info:
        load_spec(tmp_path / "a.phy")
    err = info.value
    assert err.message == "`use` cycle: a.phy → b.phy → a.phy"
    assert err.pos.file == str(tmp_path / "b.phy")
    assert where(err) == (1, 5)


def test_missing_spec_file(tmp_path):
    with pytest.raises(UseError) as info:
        load_spec(tmp_path / "absent.phy")
    assert info.value.message == f"no such spec file: {tmp_path / 'absent.phy'}"


# ---- empty -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, what", [("", "nothing"), ("\n\n   \n", "nothing"),
                                        ("# only\n\n  # comments\n", "only comments")])
def test_empty_file(text, what):
    err = error(text, SpecSyntaxError)
    assert where(err) == (1, 1)
    assert err.message == f"empty spec: the file contains {what}"
    assert err.hint == "a system file starts with `system NAME`, an experiment with `use NAME`"


# ---- options -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, message, column, hint", [
    ("augment mlp(hiden=3)", "unknown option 'hiden' for mlp", 13, "did you mean 'hidden'?"),
    ("train aphynity(lambda=1)", "unknown option 'lambda' for aphynity", 16,
     "did you mean 'lambda0'?"),
    ("train aphynty()", "unknown method 'aphynty'", 7, "did you mean 'aphynity'?"),
    ("augment mpl(hidden=3)", "unknown augmentation 'mpl'", 9, "did you mean 'mlp'?"),
])
def test_unknown_option(line, message, column, hint):
    err = error(f"use damped_pendulum\n{line}\n", OptionError)
    assert where(err) == (2, column)
    assert err.message == message
    assert err.hint == hint


def test_unknown_data_solver_option():
    err = error("use damped_pendulum\ndata:\n    solver dopri5(rtl=1e-9)\n", OptionError)
    assert where(err) == (3, 19)
    assert err.message == "unknown option 'rtl' for dopri5"
    assert err.hint == "did you mean 'rtol'?"


def test_train_option_wrong_type():
    err = error("use damped_pendulum\ntrain neural() epochs 1.5\n", OptionError)
    assert where(err) == (2, 16)
    assert err.message == "option 'epochs' takes an integer, got 1.5"


def test_unknown_split():
    err = error("use damped_pendulum\ndata:\n    trajectories 25 trian\n", OptionError)
    assert str(err) == (
        "t.phy:3:21: unknown split 'trian'\n"
        "        trajectories 25 trian\n"
        "                        ^^^^^\n"
        "did you mean 'train'?"
    )


# ---- time grid ---------------------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ("time 0 .. 20 step 0", "the time grid needs start < end and step > 0"),
    ("time 5 .. 1 step 1", "the time grid needs start < end and step > 0"),
    ("time 0 .. 1 step 0.3", "the step 0.3 does not divide [0, 1] into whole steps"),
    ("time steps 0 dt 0.1", "the time grid needs steps ≥ 1 and dt > 0"),
])
def test_bad_time_grid(line, message):
    err = error(f"use damped_pendulum\ndata:\n    {line}\n", BoundsError)
    assert where(err) == (3, 5)
    assert err.message == message


# ---- numbers -----------------------------------------------------------------------------

@pytest.mark.parametrize("rhs, message, column", [
    ("1/0", "division by zero", 19),
    ("0^-1", "zero to a negative power", 19),
    ("9^9^9^9", "number too large in a power", 21),
    ("theta^100000", "exponent too large (at most 1000 for a power of a variable)", 19),
    ("(-8)^(1/3)", "this power has no real value", 19),
    ("sqrt(-1)", "the value of sqrt(…) is not a finite real number", 19),
    ("exp(1e6)", "the value of exp(…) is not a finite real number", 19),
    ("1e999", "number 1e999 is too large", 19),
])
def test_bad_numbers(rhs, message, column):
    err = error(PENDULUM.replace("-sin(theta)", rhs), SpecSyntaxError)
    assert where(err) == (6, column)
    assert err.message == message


def test_nesting_too_deep():
    err = error(PENDULUM.replace("-sin(theta)", "sin(" * 120 + "theta" + ")" * 120),
                SpecSyntaxError)
    assert err.line == 6
    assert err.message == "expression nested too deeply (more than 100 levels)"


def test_every_error_class_derives_from_spec_error():
    for cls in (SpecSyntaxError, UnknownSymbolError, DeclarationError, BoundsError,
                OperatorError, UseError, OptionError):
        assert issubclass(cls, SpecError)


# ---- limits and odd characters (issue 9) -------------------------------------------------

def test_flat_sum_is_not_nesting():
    terms = " + ".join(f"{i}*theta^{i % 5 + 1}" for i in range(1, 8001))
    spec = parse_spec(PENDULUM.replace("-sin(theta)", terms))
    assert len(spec.system.equations[1].rhs.args) == 5     # like terms collected
    rhs = parse_spec(PENDULUM.replace("-sin(theta)", "omega - " * 150 + "theta")).system
    assert str(rhs.equations[1].rhs) == "-148*omega - theta"


def test_deep_brackets_refused_at_the_first_one_too_many():
    text = PENDULUM.replace("-sin(theta)", "(\n" * 100_000 + "theta" + ")" * 100_000)
    err = error(text, SpecSyntaxError)
    assert where(err) == (106, 1)
    assert err.message == "expression nested too deeply (more than 100 levels)"


def test_deep_unary_chain_refused():
    err = error(PENDULUM.replace("-sin(theta)", "-" * 150 + "theta"), SpecSyntaxError)
    assert err.line == 6
    assert err.message == "expression nested too deeply (more than 100 levels)"


def test_line_too_long():
    err = error(PENDULUM.replace("-sin(theta)", "theta" + " " * 300_000), SpecSyntaxError)
    assert where(err) == (6, 250_001)
    assert err.message == "line too long (300023 characters; at most 250000)"
    assert len(err.context().splitlines()[0]) < 200           # the quote is cut to a window


def test_expression_too_large(monkeypatch):
    from physml import limits

    monkeypatch.setattr(limits, "MAX_EXPR_NODES", 50)
    err = error(PENDULUM.replace("-sin(theta)", " + ".join(["theta*omega"] * 20)),
                SpecSyntaxError)
    assert where(err) == (6, 19)
    assert err.message == "expression too large (more than 50 terms and operations)"


def test_spec_file_too_large(tmp_path):
    path = tmp_path / "big.phy"
    path.write_text(PENDULUM + "# padding\n" * 110_000)
    with pytest.raises(SpecSyntaxError) as info:
        load_spec(path)
    assert where(info.value) == (1, 1)
    size = path.stat().st_size
    assert info.value.message == f"spec file too large ({size} bytes; at most 1048576)"


def test_fullwidth_digits_are_not_numbers():
    err = error(PENDULUM.replace("-sin(theta)", "１*theta"), SpecSyntaxError)
    assert where(err) == (6, 19)
    assert err.message.startswith("unexpected character '１': numbers are written with the "
                                  "ASCII digits 0-9")


@pytest.mark.parametrize("sep", ["\f", "\u2028", "\x0b", "\u2029", "\x85"])
def test_odd_line_separators_do_not_shift_the_quote(sep):
    text = PENDULUM.replace("param T0", f"# a{sep}b\nparam T0").replace("-sin(theta)", "omgea")
    err = error(text, UnknownSymbolError)
    assert where(err) == (7, 19)
    assert err.context() == ("        d(omega)/dt = omgea\n"
                             "                      ^^^^^")


def test_form_feed_line_between_statements():
    assert parse_spec(PENDULUM.replace("param T0", "\f\nparam T0")).system.name == "p"


def test_utf8_error_has_line_and_column(tmp_path):
    path = tmp_path / "bad.phy"
    path.write_bytes(PENDULUM.replace("-sin(theta)", "é + \xff").encode("utf-8")
                     .replace("\xff".encode("utf-8"), b"\xff"))
    with pytest.raises(SpecSyntaxError) as info:
        load_spec(path)
    assert str(info.value) == (f"{path}:6:23: not valid UTF-8 (byte 0xff)\n"
                               "save the spec as UTF-8 text")


DATA = ("use damped_pendulum\ndata:\n    trajectories {n} train, 2 test\n"
        "    time 0 .. {t1} step 0.5\n    initial theta, omega ~ uniform(-1, 1)\n{extra}")


def data_spec(n=4, t1=2, extra=""):
    return DATA.format(n=n, t1=t1, extra=extra)


def test_zero_trajectories_is_located():
    err = error(data_spec(n=0), BoundsError)
    assert where(err) == (3, 18)
    assert err.message == "split 'train' needs at least one trajectory"


@pytest.mark.parametrize("extra, message, at", [
    ("    seed 9223372036854775808\n",
     "seed 9223372036854775808 is too large (seeds lie in 0 … 2^63 − 1 = "
     "9223372036854775807)", (6, 10)),
    ("    noise 1e308\n", "the noise level 1e+308 is too large (at most 1e+30: noisy values "
     "must stay finite in float32)", (6, 5)),
    ("    noise 1e999\n", "number 1e999 is too large", (6, 11)),
    ("    history 1000000000000\n", "history of 1000000000000 frames is too long (at most "
     "1e+12)", (6, 13)),
])
def test_data_numbers_are_checked(extra, message, at):
    err = error(data_spec(extra=extra), SpecError)
    assert where(err) == at
    assert err.message == message


def test_seed_at_the_limit_is_accepted():
    assert parse_spec(data_spec(extra="    seed 9223372036854775807\n")).data.seed == 2**63 - 1


def test_train_seed_out_of_range():
    err = error(data_spec() + "train neural seed 9223372036854775808\n", BoundsError)
    assert where(err) == (6, 14)
    assert err.message == "seed 9223372036854775808 lies outside 0 … 2^63 − 1"


def test_dataset_over_the_memory_budget_is_refused(monkeypatch):
    err = error(data_spec(n=1_000_000_000), BoundsError)
    assert where(err) == (2, 1)
    assert err.message.startswith("the dataset is too large: 1000000002 trajectories × 5 "
                                  "frames × 2 values = 1e+10 numbers; 37.3 GiB stored")
    assert err.message.endswith("above the memory budget of 16 GiB")
    assert "--memory-budget SIZE or PHYSML_MEMORY_BUDGET=SIZE" in err.hint
    monkeypatch.setenv("PHYSML_MEMORY_BUDGET", "1T")
    assert parse_spec(data_spec(n=1_000_000_000)).data.splits[0] == ("train", 1_000_000_000)
    monkeypatch.setenv("PHYSML_MEMORY_BUDGET", "1K")
    assert error(data_spec(), BoundsError).message.endswith("above the memory budget of 1 KiB")


def test_too_many_time_steps_are_refused():
    err = error(data_spec(t1="1e300", extra=""), BoundsError)
    assert where(err) == (4, 5)
    assert err.message == "the time grid has 2e+300 steps (at most 1e+12)"
    text = data_spec().replace("time 0 .. 2 step 0.5", "time steps 1000000000000000000 dt 1")
    err = error(text, BoundsError)
    assert where(err) == (4, 5)
    assert err.message == "the time grid has 1000000000000000000 steps (at most 1e+12)"
    err = error(data_spec(t1="1e11"), BoundsError)
    assert err.message.startswith("the dataset is too large")


def test_size_estimate():
    from physml.lang.budget import estimate

    spec = parse_spec(data_spec(extra="    noise 0.1\n"))
    est = estimate(spec.system, spec.data)
    assert (est.trajectories, est.frames, est.state_size) == (6, 5, 2)
    assert est.stored_bytes == 4 * 6 * 5 * 2 * 2
    assert est.describe().startswith("6 trajectories × 5 frames × 2 values = 60 numbers; "
                                     "480 B stored")
