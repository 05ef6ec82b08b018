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
    assert "dθ/dt = ω" in out
    assert "sin(θ)" in out
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
