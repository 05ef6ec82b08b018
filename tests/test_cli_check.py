"""`physml check FILE`: equations on success; file:line:col, caret and exit 1 on error."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from physml.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, ["check", *map(str, args)])
    return result, result.output  # click ≥ 8.2 mixes stderr into output


def test_good_file_prints_equations():
    result, out = run(ROOT / "equations" / "damped_pendulum.phy")
    assert result.exit_code == 0, out
    assert "damped_pendulum" in out
    assert "d(theta)/dt = omega" in out
    assert "d(omega)/dt = -alpha*omega - omega0^2*sin(theta)" in out  # spec notation
    assert "ok" in out


def test_bad_file_exits_one_with_position_and_caret(tmp_path):
    bad = tmp_path / "bad.phy"
    bad.write_text("system s\nstate x\ndynamics:\n    d(x)/dt = x +* 2\n")
    result, out = run(bad)
    assert result.exit_code == 1
    assert f"{bad}:4:18: unexpected '*'; expected an expression" in out
    assert "        d(x)/dt = x +* 2\n" in out
    assert "                     ^\n" in out
    assert "Traceback" not in out


def test_broken_spec_in_repo():
    result, out = run(ROOT / "specs" / "broken.phy")
    assert result.exit_code == 1
    assert "broken.phy:6:19: unknown symbol 'omgea'" in out
    assert "^^^^^" in out
    assert "did you mean 'omega'?" in out
    assert "Traceback" not in out


def test_missing_file_is_a_message(tmp_path):
    result, out = run(tmp_path / "nope.phy")
    assert result.exit_code == 1
    assert "no such spec file" in out
    assert "Traceback" not in out


def test_latex_output():
    result, out = run("--latex", ROOT / "equations" / "damped_pendulum.phy")
    assert result.exit_code == 0, out
    assert "\\frac" in out
    assert "\\sin" in out


def test_experiment_spec_shows_prior():
    result, out = run(ROOT / "specs" / "aphynity_pendulum.phy")
    assert result.exit_code == 0, out
    assert "prior:" in out
    assert "learn T0 from 3" in out


@pytest.mark.skipif(shutil.which("physml") is None and not Path(sys.executable).with_name(
    "physml").exists(), reason="console script not installed")
def test_console_script_broken_spec():
    exe = shutil.which("physml") or str(Path(sys.executable).with_name("physml"))
    proc = subprocess.run([exe, "check", "specs/broken.phy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "specs/broken.phy:6:19: unknown symbol 'omgea'" in out
    assert "Traceback" not in out


def test_check_of_a_system_file_imports_no_torch():
    """`physml check` of a library system needs the language only (startup well under a
    second): neither torch nor the registries behind the vocabulary are imported."""
    import subprocess
    import sys

    code = ("import sys; from physml.cli.app import app; from typer.testing import CliRunner;"
            f"r = CliRunner().invoke(app, ['check', {str(ROOT / 'equations' / 'damped_pendulum.phy')!r}]);"
            "assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in ('torch', 'scipy', 'physml.objectives', 'physml.models')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_help_imports_no_sympy_and_shows_no_bool():
    import subprocess
    import sys

    code = ("import sys; from physml.cli.app import app; from typer.testing import CliRunner;"
            "r = CliRunner().invoke(app, ['train', '--help'], terminal_width=120);"
            "print('sympy' in sys.modules, 'torch' in sys.modules); print(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.startswith("False False")
    assert "--quiet" in out and "<bool>" not in out
    assert "[SPEC]" in out and "--resume" in out


def test_version():
    import physml

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"physml {physml.__version__}"


def test_experiment_blocks_are_printed_resolved():
    result, out = run(ROOT / "specs" / "aphynity_pendulum.phy")
    assert result.exit_code == 0, out
    flat = " ".join(out.split())
    assert "data 25 train, 25 val, 25 test trajectories; time 0 .. 20 step 0.5 (41 frames)" in flat
    assert "solver dopri5(rtol=1e-10, atol=1e-10)" in flat
    # the network's defaults are filled in, and its size given
    assert "augment mlp(hidden=200, layers=3, activation=relu, gain=0.2, init=orthogonal, " \
        "scale=true, zero_last=true) on every equation; 41,202 weights" in flat
    assert "train aphynity(lambda0=1, tau2=1, niter=5) solver rk4" in flat
