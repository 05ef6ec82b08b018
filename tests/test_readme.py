"""README.md is the contract: every code block in it is run (or parsed) here.

Fast (default run): each `physml …` line names a command and options that exist, the
quick ones (`check`, `--version`) run for real, and the language snippets parse. Slow
(`-m slow`): the README's shell commands in order in a fresh folder, training ones with
a tiny `--steps` budget, and the Python block of "## Library".
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks() -> list[tuple[str, str, str]]:
    """(section heading, info string, text) of every fenced block."""
    out, section = [], ""
    lines = README.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and not line.startswith("#!"):
            section = line.lstrip("#").strip()
        if line.startswith("```"):
            info = line[3:].strip()
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append((section, info, "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return out


def commands() -> list[list[str]]:
    """The argument lists of every `physml …` line (comments and `[optional]` stripped);
    `torchrun … -m physml ARGS` gives ARGS."""
    out = []
    for _, info, text in blocks():
        if info:
            continue
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"\[([^\]]*)\]", r"\1", line)
            words = shlex.split(line) if line else []
            if words[:1] == ["physml"]:
                out.append(words[1:])
            elif "-m" in words and words[words.index("-m") + 1:][:1] == ["physml"]:
                out.append(words[words.index("-m") + 2:])
    return out


def test_readme_has_the_blocks_this_test_walks():
    cmds = commands()
    assert ["train", "specs/aphynity_pendulum.phy"] in cmds
    assert any(c[:1] == ["evaluate"] and "--json" in c for c in cmds)
    assert any(section == "Library" and info == "python" for section, info, _ in blocks())


def _help(args: list[str]) -> str:
    from physml.cli.app import app

    sub = [a for a in args if not a.startswith("-")][:2]
    path = sub[:2] if sub[:1] == ["data"] else sub[:1]
    res = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert res.exit_code == 0, (args, res.output)
    return res.output


@pytest.mark.parametrize("args", commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_and_option_exists(args):
    """Each option a README command uses is one its command declares."""
    page = _help(args)
    for word in args:
        if word.startswith("-") and word != "-":
            assert re.search(rf"(^|[\s,│]){re.escape(word)}([\s,│]|$)", page, re.M), \
                (word, " ".join(args))


def test_readme_check_commands_run():
    from physml.cli.app import app

    for args in commands():
        if args[:1] == ["check"]:
            res = subprocess.run([sys.executable, "-m", "physml", *args], cwd=ROOT,
                                 capture_output=True, text=True, env=_env())
            expect = 1 if "broken" in args[1] else 0
            assert res.returncode == expect, (args, res.stdout, res.stderr)
            if expect:
                assert re.search(r"broken\.phy:\d+:\d+: ", res.stderr)
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("physml ")


def test_readme_language_blocks_parse():
    """The system file and the experiment spec of "A tour of the language" parse."""
    import physml

    for section, info, text in blocks():
        if info or section != "A tour of the language":
            continue
        if text.lstrip().startswith(("system", "# equations/")):
            spec = physml.parse_spec(text, "readme.phy")
            assert spec.system.equations
        elif text.lstrip().startswith("use "):
            spec = physml.parse_spec(text, str(ROOT / "specs" / "readme.phy"))
            assert spec.train is not None and spec.prior is not None


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow
def test_readme_commands_in_order(tmp_path):
    """The shell blocks in order, in a fresh folder holding specs/ and equations/; training
    commands get `--steps 3`; `--device cuda` stays only where there is a GPU."""
    import torch

    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "equations", tmp_path / "equations")
    for args in commands():
        if args[:1] == ["train"] and "--resume" not in args:
            args = [*args, "--steps", "3"]
        if "--device" in args and not torch.cuda.is_available():
            i = args.index("--device")
            args = args[:i] + args[i + 2:]
        if args[:1] == ["train"] and "--resume" in args:
            args = [*args, "--steps", "2"]
        if args[:1] == ["discover"]:
            # After 3 steps F_a is tiny: keep its terms anyway, and refit for one epoch.
            args = [*args, "--bootstrap", "5", "--threshold", "1e-6"]
            if "--refit" in args:
                args = [*args, "--epochs", "1"]
        res = subprocess.run([sys.executable, "-m", "physml", *args], cwd=tmp_path,
                             capture_output=True, text=True, env=_env(), timeout=900)
        expect = 1 if "broken" in " ".join(args) else 0
        assert res.returncode == expect, (args, res.stdout[-2000:], res.stderr[-2000:])
        if args[:1] == ["evaluate"] and "--json" in args:
            import json

            assert "ln_mse" in json.loads(res.stdout)


@pytest.mark.slow
def test_readme_library_block(tmp_path):
    (code,) = [text for section, info, text in blocks()
               if section == "Library" and info == "python"]
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copytree(ROOT / "equations", tmp_path / "equations")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=_env(), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
