"""Spec text is data, never code: no eval, no attribute access, no Python escapes."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import physml
from physml.errors import SpecError
from physml.lang import load_spec, parse_spec

HEAD = "system s\nstate x\ndynamics:\n    d(x)/dt = {}\n"

ATTACKS = [
    '__import__("os").system("touch PWNED")',
    "__import__",
    "__class__",
    "x.__class__",
    "x.__class__.__bases__[0].__subclasses__()",
    "lambda x: x",
    "(lambda: 1)()",
    "x.real",
    'f"{__import__(\'os\').system(\'touch PWNED\')}"',
    "`touch PWNED`",
    'exec("open(\'PWNED\', \'w\')")',
    'eval("__import__(\'os\').system(\'touch PWNED\')")',
    "open('PWNED', 'w')",
    "globals()",
    "[x for x in ()]",
    "x if x else x",
    "x; import os",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_in_expressions_are_rejected(attack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError):
        parse_spec(HEAD.format(attack), "evil.phy")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", [
    'system s\nstate __class__\ndynamics:\n    d(__class__)/dt = 1\n',
    'system s\nstate x\nparam __builtins__ = 1\ndynamics:\n    d(x)/dt = __builtins__\n',
    'use __import__("os")\n',
    'use "/dev/null"\n',
    'system s\nstate x\ndynamics:\n    d(x)/dt = 1\ntrain neural() solver __import__("os")\n',
    'use damped_pendulum\naugment mlp(hidden=__import__("os").system("touch PWNED"))\n',
    'use damped_pendulum\ndata:\n    file "PWNED"\n    map theta = "__class__"\n'
    '    initial theta ~ uniform(__import__("os").system("touch PWNED"))\n',
])
def test_attacks_in_declarations_are_rejected(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError):
        parse_spec(text, str(tmp_path / "evil.phy"))
    assert not (tmp_path / "PWNED").exists()


def test_attack_file_through_load_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.phy"
    evil.write_text(HEAD.format('__import__("os").system("touch PWNED")'))
    with pytest.raises(SpecError) as info:
        load_spec(evil)
    assert info.value.line == 4
    assert not (tmp_path / "PWNED").exists()


def test_dunder_names_get_a_clear_message():
    with pytest.raises(SpecError, match="names beginning with '__' are not allowed"):
        parse_spec("system s\nstate x\nparam __class__ = 1\ndynamics:\n    d(x)/dt = 1\n")


_FORBIDDEN = re.compile(r"(?<![\w.])(?<!def )(sympify|eval|exec|parse_expr)\s*\(|"
                        r"\.(sympify|parse_expr)\s*\(|\bS\s*\(\s*['\"]|literal_eval\s*\(")


def test_no_eval_of_text_in_the_package():
    """The no-eval rule: nothing in physml hands text to sympify/eval/exec/parse_expr."""
    root = Path(physml.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if _FORBIDDEN.search(code):
                offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []


def test_forbidden_pattern_catches_what_it_should():
    for bad in ["sympy.sympify(text)", "eval(src)", "exec(code)", "parse_expr(s)",
                "sympify(s)", "from sympy import S; S('x')"]:
        assert _FORBIDDEN.search(bad), bad
    for fine in ["def eval(cls, *args):", "model.eval()", "self.evaluate(x)", "sympy.Symbol(name)", "torch.no_grad()"]:
        assert not _FORBIDDEN.search(fine), fine
