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


# ---- `use` reaches only specs in allowed folders (issue 9.1) -----------------------------

SYSTEM = "system s\nstate x\ndynamics:\n    d(x)/dt = -x\n"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """tmp/project/exp.phy beside ok.phy; tmp/outside/sys.phy; links out of the project."""
    monkeypatch.delenv("PHYSML_USE_PATH", raising=False)
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "sys.phy").write_text(SYSTEM)
    (outside / "secret.txt").write_text("TOP-SECRET-LINE\n")
    (project / "ok.phy").write_text(SYSTEM)
    (project / "sub").mkdir()
    (project / "sub" / "deep.phy").write_text(SYSTEM)
    (project / "passwd.phy").symlink_to("/etc/passwd")
    (project / "link.phy").symlink_to(outside / "sys.phy")
    (project / "dir.phy").symlink_to(outside)
    return project


def use_error(project, target, **kw) -> SpecError:
    (project / "exp.phy").write_text(f'use "{target}"\n')
    with pytest.raises(SpecError) as info:
        load_spec(project / "exp.phy", **kw)
    err = info.value
    assert where(err) == (1, 5)
    assert "root:" not in str(err) and "TOP-SECRET" not in str(err)
    assert "HOME=" not in str(err)
    return err


def where(err):
    return err.line, err.column


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ", "../outside/secret.txt",
                                    "/etc/shadow", "/dev/zero", "ok.phy/../../outside/secret.txt"])
def test_use_of_a_file_that_is_not_a_spec(tree, target):
    err = use_error(tree, target)
    assert err.message == f'`use`: "{target}" is not a .phy spec file'


@pytest.mark.parametrize("target", ["../outside/sys.phy", "passwd.phy", "link.phy",
                                    "dir.phy/sys.phy", "/etc/passwd.phy"])
def test_use_outside_the_allowed_folders(tree, target):
    err = use_error(tree, target)
    assert err.message == (f'`use`: "{target}" lies outside the folders `use` may reach '
                           f"({tree.resolve()} and the built-in library)")
    assert err.hint == "allow its folder with --allow-path DIR or PHYSML_USE_PATH=DIR"


def test_use_inside_the_tree_and_the_library(tree):
    (tree / "exp.phy").write_text('use "sub/deep.phy"\n')
    assert load_spec(tree / "exp.phy").system.name == "s"
    (tree / "sub" / "exp.phy").write_text('use "../ok.phy"\n')     # .. that stays inside
    with pytest.raises(SpecError, match="lies outside"):            # …of sub/, the root here
        load_spec(tree / "sub" / "exp.phy")
    from physml.lang.build import library_root

    (tree / "exp.phy").write_text(f'use "{library_root() / "damped_pendulum.phy"}"\n')
    assert load_spec(tree / "exp.phy").system.name == "damped_pendulum"


def test_allow_paths_widen_the_reach(tree, monkeypatch):
    (tree / "exp.phy").write_text('use "../outside/sys.phy"\n')
    assert load_spec(tree / "exp.phy", allow_paths=[tree.parent / "outside"]).system.name == "s"
    monkeypatch.setenv("PHYSML_USE_PATH", str(tree.parent / "outside"))
    assert load_spec(tree / "exp.phy").system.name == "s"


def test_nested_use_keeps_the_first_spec_root(tree):
    """A used file cannot reach further than the spec that used it."""
    (tree / "sub" / "mid.phy").write_text('use "../../outside/sys.phy"\n')
    (tree / "exp.phy").write_text('use "sub/mid.phy"\n')
    with pytest.raises(SpecError) as info:
        load_spec(tree / "exp.phy")
    assert info.value.pos.file == str(tree / "sub" / "mid.phy")
    assert "lies outside the folders" in info.value.message


def test_run_directory_spec_with_a_hostile_use(tree):
    import json

    from physml.experiment.run import Run

    run = tree / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "spec_path": None}))
    (run / "spec.phy").write_text('use "/etc/passwd"\n')
    with pytest.raises(SpecError) as info:
        Run(run).spec
    assert "root:" not in str(info.value)
    assert info.value.message == '`use`: "/etc/passwd" is not a .phy spec file'


def test_cli_check_refuses_and_allows(tree, tmp_path):
    from typer.testing import CliRunner

    from physml.cli.app import app

    (tree / "exp.phy").write_text('use "../outside/sys.phy"\n')
    r = CliRunner().invoke(app, ["check", str(tree / "exp.phy")])
    assert r.exit_code == 1 and f"{tree / 'exp.phy'}:1:5: `use`:" in r.output
    r = CliRunner().invoke(app, ["check", str(tree / "exp.phy"), "--allow-path",
                                 str(tmp_path / "outside")])
    assert r.exit_code == 0, r.output


# ---- HDF5 files that pull bytes from elsewhere (issue 9.2) -------------------------------

def _physml_file(path):
    from physml.data import save_dataset
    from physml.simulation import simulate

    spec = parse_spec("use damped_pendulum\ndata:\n    trajectories 2 train\n"
                      "    time 0 .. 1 step 0.5\n    initial theta, omega ~ uniform(-1, 1)\n"
                      "    solver rk4(step=0.1)\n")
    return save_dataset(simulate(spec), path)


USER_SPEC = "use damped_pendulum\ndata:\n    trajectories 2 train\n"


@pytest.mark.parametrize("how", ["external_link", "soft_link", "virtual", "external_storage"])
@pytest.mark.parametrize("physml_format", [True, False])
def test_hdf5_indirection_is_refused(tmp_path, how, physml_format):
    import h5py
    import numpy as np

    from physml.data import DataError, load_dataset

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"TOP-SECRET-BYTES" * 64)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["arr"] = np.arange(10.0)
    path = tmp_path / "d.h5"
    if physml_format:
        _physml_file(path)
    else:
        with h5py.File(path, "w") as f:
            f["t"] = np.linspace(0, 1, 3)
            f["theta"] = np.zeros((2, 3))
            f["omega"] = np.zeros((2, 3))
    name = "train" if physml_format else "theta"
    with h5py.File(path, "a") as f:
        del f[name]
        if how == "external_link":
            f[name] = h5py.ExternalLink(str(other), "/arr")
        elif how == "soft_link":
            f["grp/real"] = np.zeros(3)
            f[name] = h5py.SoftLink("/grp/real")
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape=(10,), dtype="f8")
            layout[:] = h5py.VirtualSource(str(other), "arr", shape=(10,))
            f.create_virtual_dataset(name, layout)
        else:
            f.create_dataset(name, shape=(64,), dtype="u1", external=[(str(secret), 0, 64)])
    with pytest.raises(DataError) as info:
        load_dataset(path, spec=None if physml_format else parse_spec(USER_SPEC))
    message = str(info.value)
    assert message.startswith(f"{path}: '{name}' is a") or \
        message.startswith(f"{path}: dataset '{name}' ")
    assert {"external_link": "is an external link", "soft_link": "is a soft link",
            "virtual": "is a virtual dataset",
            "external_storage": "keeps its data in external files"}[how] in message
    assert "TOP-SECRET" not in message


# ---- data bombs (issue 9.7) ---------------------------------------------------------------

def test_hdf5_bomb_unused_huge_dataset_is_not_read(tmp_path):
    import h5py
    import numpy as np

    from physml.data import load_dataset

    path = _physml_file(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:     # declares 8 TB, stores nothing
        f.create_dataset("junk", shape=(10**12,), dtype="f8", chunks=(1024,))
    assert path.stat().st_size < 100_000
    assert load_dataset(path)["train"].shape == (1, 2, 3, 2)
    user = tmp_path / "u.h5"
    with h5py.File(user, "w") as f:
        f["t"] = np.linspace(0, 1, 3)
        f["theta"] = np.zeros((2, 3))
        f["omega"] = np.zeros((2, 3))
        f.create_dataset("junk", shape=(10**12,), dtype="f8", chunks=(1024,))
    assert load_dataset(user, spec=parse_spec(USER_SPEC))["train"].shape == (1, 2, 3, 2)


def test_hdf5_bomb_in_a_used_array_is_refused_before_reading(tmp_path):
    import h5py
    import numpy as np

    from physml.data import DataError, load_dataset

    user = tmp_path / "u.h5"
    with h5py.File(user, "w") as f:
        f["t"] = np.linspace(0, 1, 3)
        f.create_dataset("theta", shape=(10**11, 3), dtype="f8", chunks=(1024, 3))
        f["omega"] = np.zeros((2, 3))
    with pytest.raises(DataError) as info:
        load_dataset(user, spec=parse_spec(USER_SPEC))
    assert str(info.value).startswith(f"{user}: dataset 'theta' declares shape (100000000000, 3) "
                                      "(2.18 TiB); with the other arrays read this exceeds the "
                                      "memory budget of 16 GiB")


def test_npz_bomb_is_refused_from_its_header(tmp_path):
    """A compressed .npz whose member declares a huge shape: refused from the .npy header,
    nothing decompressed."""
    import io
    import zipfile

    import numpy as np

    from physml.data import DataError, load_dataset

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**10, 3)})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("t.npy", _npy(np.linspace(0, 1, 3)))
        z.writestr("omega.npy", _npy(np.zeros((2, 3))))
        with z.open("theta.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            zeros = bytes(1 << 20)
            for _ in range(64):                 # 64 MB of zeros, a few KB compressed
                fh.write(zeros)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DataError) as info:
        load_dataset(path, spec=parse_spec(USER_SPEC))
    assert str(info.value).startswith(f"{path}: dataset 'theta' declares shape (10000000000, 3)")
    # An unused member is never read, whatever it declares.
    ok = tmp_path / "ok.npz"
    with zipfile.ZipFile(ok, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("t.npy", _npy(np.linspace(0, 1, 3)))
        z.writestr("theta.npy", _npy(np.zeros((2, 3))))
        z.writestr("omega.npy", _npy(np.zeros((2, 3))))
        z.writestr("junk.npy", header.getvalue() + bytes(1 << 16))
    assert load_dataset(ok, spec=parse_spec(USER_SPEC))["train"].shape == (1, 2, 3, 2)


def _npy(a) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_npz_with_pickled_objects_is_refused(tmp_path):
    import numpy as np

    from physml.data import DataError, load_dataset

    path = tmp_path / "p.npz"
    np.savez(path, t=np.linspace(0, 1, 3), theta=np.array([{"a": 1}] * 6).reshape(2, 3),
             omega=np.zeros((2, 3)))
    with pytest.raises(DataError, match="array 'theta' holds Python objects; physml never "
                                        "unpickles data"):
        load_dataset(path, spec=parse_spec(USER_SPEC))


# ---- checkpoints (issue 9.11) -------------------------------------------------------------

class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_unsafe_checkpoint_refusal_never_suggests_weights_only_false(tmp_path, monkeypatch):
    import torch

    from physml.training.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    torch.save({"model": _Payload()}, tmp_path / "evil.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint" * 8)
    for name, reason in [("evil.pt", "it holds Python objects other than tensors"),
                         ("junk.pt", "the file is damaged or not a checkpoint")]:
        with pytest.raises(ValueError) as info:
            load_checkpoint(tmp_path / name)
        assert str(info.value).startswith(f"cannot read checkpoint {tmp_path / name}: {reason}")
        assert "weights_only" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    import os

    from physml.training.checkpoint import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f.json").st_mode & 0o777 == mode


# ---- user text is never markup (issue 9.11) ----------------------------------------------

def test_cli_renders_user_text_verbatim(tmp_path):
    from typer.testing import CliRunner

    from physml.cli.app import app

    path = tmp_path / "s.phy"
    path.write_text("system s\nstate x\ndynamics:\n    d(x)/dt = x :x: [bold]y[/bold]\n")
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 1
    assert "    d(x)/dt = x :x: [bold]y[/bold]\n" in r.output
    odd = tmp_path / "[red]d:x:.npz"
    odd.write_bytes(b"PK junk")
    r = CliRunner().invoke(app, ["data", "info", str(odd), "--spec", str(tmp_path / "u.phy")])
    (tmp_path / "u.phy").write_text(USER_SPEC)
    r = CliRunner().invoke(app, ["data", "info", str(odd), "--spec", str(tmp_path / "u.phy")])
    assert r.exit_code == 1
    assert f"error: {odd}: cannot read the .npz file" in r.output


# ---- damaged run folders (issue 9.10) ----------------------------------------------------

RUN_SPEC = """\
use damped_pendulum
data:
    trajectories 4 train, 2 val, 2 test
    time 0 .. 2 step 0.5
    initial theta, omega ~ ring(1.0, 2.0)
    seed 0
prior:
    d(theta)/dt = omega
    d(omega)/dt = -omega0^2*sin(theta)
    learn T0 from 3
augment mlp(hidden=8, layers=2)
train aphynity(lambda0=1, tau2=1, niter=1) solver rk4 epochs 3 batch 4 val_every 1
"""

RESTORE = "restore the file from a backup, or train a new run"
FOREIGN = f"the checkpoint is damaged or from another program ({RESTORE})"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real run of 2 steps (1 batch per epoch, validated every epoch), with its data."""
    from physml.experiment import train

    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.phy").write_text(RUN_SPEC)
    run = train(physml.load_spec(root / "tiny.phy"), out=root / "run", steps=2, report=False,
                data_dir=root / "data")
    return run.path


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    import shutil

    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def _edit_pt(name, fn):
    def damage(run):
        import torch

        path = run / "checkpoints" / name
        state = torch.load(path, weights_only=True)
        state = fn(state)
        torch.save(state, path)
    return damage


def _edit_config(fn):
    def damage(run):
        import json

        path = run / "config.json"
        path.write_text(json.dumps(fn(json.loads(path.read_text()))))
    return damage


def _write(name, data: bytes):
    def damage(run):
        (run / name).write_bytes(data)
    return damage


def _drop(key):
    def fn(state):
        del state[key]
        return state
    return fn


def _set(key, value):
    def fn(state):
        state[key] = value
        return state
    return fn


def _reshape(state):
    import torch

    state["model"]["field.augmentation.in_scale"] = torch.zeros(3, 3)
    return state


def _truncate(run):
    path = run / "checkpoints" / "last.pt"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _unlink(name):
    def damage(run):
        (run / name).unlink()
    return damage


def _spec_typo(run):
    path = run / "spec.phy"
    path.write_text(path.read_text().replace("-omega0^2", "-omegaa^2"))


def _config_key(key, value):
    def fn(info):
        info["config"][key] = value
        return info
    return _edit_config(fn)


DAMAGED_RUNS = [
    # (id, damage, command, the error line, with {run} for the folder)
    ("last.pt without a key", _edit_pt("last.pt", _drop("optimizer")), "resume",
     f"{{run}}/checkpoints/last.pt: the key 'optimizer' is missing; {FOREIGN}"),
    ("best.pt without the model", _edit_pt("best.pt", _drop("model")), "evaluate",
     f"{{run}}/checkpoints/best.pt: the key 'model' is missing; {FOREIGN}"),
    ("last.pt with a wrong type", _edit_pt("last.pt", _set("step", "two")), "resume",
     f"{{run}}/checkpoints/last.pt: the key 'step' does not fit this run (a str, not a count); "
     f"{FOREIGN}"),
    ("tensors that do not fit the spec", _edit_pt("best.pt", _reshape), "evaluate",
     "{run}/checkpoints/best.pt: the key 'model.field.augmentation.in_scale' holds a tensor of "
     f"shape (3, 3), the run's spec builds (2); the checkpoint does not fit spec.phy ({RESTORE})"),
    ("resumed tensors that do not fit the spec", _edit_pt("last.pt", _reshape), "resume",
     "{run}/checkpoints/last.pt: the key 'model.field.augmentation.in_scale' holds a tensor of "
     f"shape (3, 3), the run's spec builds (2); the checkpoint does not fit spec.phy ({RESTORE})"),
    ("truncated last.pt", _truncate, "resume",
     "cannot read checkpoint {run}/checkpoints/last.pt: the file is damaged, truncated or not a "
     f"checkpoint; {RESTORE}"),
    ("a checkpoint that is no dict", _edit_pt("best.pt", lambda s: [1, 2]), "evaluate",
     "cannot read checkpoint {run}/checkpoints/best.pt: it holds a list, not a physml checkpoint "
     f"(a dict); {RESTORE}"),
    ("config.json with an unknown option", _config_key("colour", "red"), "evaluate",
     "{run}/config.json: the key 'config.colour' is not a training option of this version of "
     f"physml {physml.__version__}; remove it, or use the physml version that wrote the run"),
    ("config.json with a wrong type", _config_key("epochs", "ten"), "resume",
     f"{{run}}/config.json: the key 'config.epochs' holds \"ten\", expected an integer; {RESTORE}"),
    ("config.json with a null option", _config_key("lr", None), "evaluate",
     f"{{run}}/config.json: the key 'config.lr' is null; {RESTORE}"),
    ("config.json without options", _edit_config(_drop("config")), "resume",
     f"{{run}}/config.json: the key 'config' is missing; {RESTORE}"),
    ("config.json that is not JSON", _write("config.json", b'{"config": '), "evaluate",
     f"{{run}}/config.json: not valid JSON (line 1, column 12: Expecting value); {RESTORE}"),
    ("config.json that is not UTF-8", _write("config.json", b'{"config": "\xff"}'), "resume",
     f"{{run}}/config.json: not UTF-8 text (byte 12); {RESTORE}"),
    ("no config.json", _unlink("config.json"), "evaluate",
     "{run}/config.json: missing, so {run} is not a physml run directory (or a damaged one); "
     "give the folder `physml train` wrote"),
    ("no spec.phy", _unlink("spec.phy"), "inspect", f"{{run}}/spec.phy: missing; {RESTORE}"),
    ("no last.pt", _unlink("checkpoints/last.pt"), "resume",
     f"{{run}}/checkpoints/last.pt: missing, so the run cannot be resumed; {RESTORE}"),
    ("a spec that no longer parses", _spec_typo, "evaluate",
     "{run}/spec.phy:9:20: unknown symbol 'omegaa'"),
]


@pytest.mark.parametrize("damage, command, expected", [d[1:] for d in DAMAGED_RUNS],
                         ids=[d[0] for d in DAMAGED_RUNS])
def test_damaged_run_folders_give_one_located_line(run_copy, damage, command, expected):
    from typer.testing import CliRunner

    from physml.cli.app import app

    damage(run_copy)
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    args = ["train", "--resume", str(run_copy), "-q"] if command == "resume" else \
        [command, str(run_copy)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "weights_only" not in r.output
    lines = [ln for ln in r.output.splitlines() if not ln.endswith("…")]
    spec_error = expected.startswith("{run}/spec.phy:9:")
    head = lines[0] if spec_error else lines[-1]
    assert head == ("" if spec_error else "error: ") + expected.format(run=run_copy)
    if not spec_error:
        assert len(lines) == 1, r.output
    # A failed resume changes nothing in the folder: config.json, metrics, checkpoints.
    after = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    assert after == before


def test_a_damaged_metrics_line_does_not_block_resume(run_copy):
    import json

    from typer.testing import CliRunner

    from physml.cli.app import app

    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:1] + [b'\xff\xfe{"step": \n', b"[1, 2]\n"] + lines[1:]))
    r = CliRunner().invoke(app, ["train", "--resume", str(run_copy), "-q"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(ln) for ln in metrics.read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3]
    assert not (run_copy / ".lock").exists()


# ---- full disks and read-only folders (issue 9.9) ----------------------------------------
# Simulated without root tricks: the writes physml makes (physml.storage) fail as the
# kernel would fail them.

def _enospc(*args, **kw):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


class _FullFile:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        _enospc()

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False


def _disk(monkeypatch, *, probe: bool, files: bool):
    """Make the write probe (``probe``) and/or atomic writes (``files``) hit a full disk."""
    import os
    import types

    from physml import storage

    fake = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    if probe:
        fake.write = _enospc
    if files:
        fake.fdopen = lambda *a, **kw: _FullFile(os.fdopen(*a, **kw))
    monkeypatch.setattr(storage, "os", fake)


def _no_simulation(monkeypatch):
    import physml.cli.simulate as sim_cli
    import physml.experiment.data as exp_data

    def never(*a, **kw):
        raise AssertionError("simulated although the result cannot be written")

    monkeypatch.setattr(exp_data, "simulate_keyed", never)
    monkeypatch.setattr(exp_data, "simulate", never)


def test_simulate_on_a_full_disk_fails_before_simulating(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from physml.cli.app import app

    (tmp_path / "s.phy").write_text(RUN_SPEC)
    out = tmp_path / "out"
    out.mkdir()
    _disk(monkeypatch, probe=True, files=True)
    _no_simulation(monkeypatch)
    r = CliRunner().invoke(app, ["simulate", str(tmp_path / "s.phy"), "-o", str(out / "d.h5")])
    assert r.exit_code == 1
    assert r.output == (f"error: cannot write in {out}: no space left on the device; free some "
                        "space or choose another --output\n")
    assert list(out.iterdir()) == []


def test_simulate_on_a_disk_filled_meanwhile_leaves_no_partial_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from physml.cli.app import app

    (tmp_path / "s.phy").write_text(RUN_SPEC)
    data = tmp_path / "data"
    _disk(monkeypatch, probe=False, files=True)
    r = CliRunner().invoke(app, ["simulate", str(tmp_path / "s.phy"), "--data-dir", str(data)])
    assert r.exit_code == 1
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("error")]
    assert re.fullmatch(rf"error: cannot write {re.escape(str(data))}/damped_pendulum-\w+\.h5: "
                        r"no space left on the device; free some space or choose another "
                        r"--data-dir", line), line
    assert "Traceback" not in r.output and "HDF5" not in r.output
    assert list(data.iterdir()) == []  # no temporary file left behind


def test_simulate_checks_the_free_space_first(tmp_path, monkeypatch):
    import collections

    from typer.testing import CliRunner

    from physml import storage
    from physml.cli.app import app

    (tmp_path / "s.phy").write_text(RUN_SPEC)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 500, 500))
    _no_simulation(monkeypatch)
    r = CliRunner().invoke(app, ["simulate", str(tmp_path / "s.phy"), "-o",
                                 str(tmp_path / "d.h5")])
    assert r.exit_code == 1
    assert r.output == (f"error: cannot write in {tmp_path}: about 1.0 MB are needed and 500 "
                        "bytes are free; free some space or choose another --output\n")


@pytest.mark.parametrize("option, errno_name, reason, hint", [
    ("--out", "EROFS", "the file system is read-only", "choose another --out"),
    ("--data-dir", "EACCES", "permission denied", "choose another --data-dir"),
    ("--out", "ENOSPC", "no space left on the device", "free some space or choose another --out"),
])
def test_train_checks_its_folders_before_simulating(tmp_path, monkeypatch, option, errno_name,
                                                    reason, hint):
    import errno
    import tempfile

    from typer.testing import CliRunner

    from physml import storage
    from physml.cli.app import app

    (tmp_path / "s.phy").write_text(RUN_SPEC)
    bad = tmp_path / "bad"
    bad.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **kw):  # the folder refuses new files
        if Path(dir) == bad:
            raise OSError(getattr(errno, errno_name), "refused", str(dir))
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(storage.tempfile, "mkstemp", mkstemp)
    _no_simulation(monkeypatch)
    other = {"--out": ["--data-dir", str(tmp_path / "data")],
             "--data-dir": ["--out", str(tmp_path / "run")]}[option]
    target = bad / "x"
    r = CliRunner().invoke(app, ["train", str(tmp_path / "s.phy"), option, str(target), *other,
                                 "-q"])
    assert r.exit_code == 1
    assert r.output == f"error: cannot write in {target}: {reason}; {hint}\n"
    assert not target.exists() and not (tmp_path / "run").exists()


def test_a_resume_on_a_full_disk_leaves_the_run_as_it_was(run_copy, monkeypatch):
    from typer.testing import CliRunner

    from physml.cli.app import app

    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    _disk(monkeypatch, probe=False, files=True)  # the probe passes, the writes fail
    r = CliRunner().invoke(app, ["train", "--resume", str(run_copy), "-q"])
    assert r.exit_code == 1
    assert r.output.splitlines()[-1] == (f"error: cannot write {run_copy}/config.json: no space "
                                         "left on the device; free some space")
    after = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    assert after == before  # config.json unchanged, no temporary files, no lock


def test_a_failed_resume_leaves_config_json_unchanged(run_copy):
    """config.json is written only after the checkpoint has loaded (issue 9.9)."""
    import torch

    from physml.experiment import RunError, train

    config = (run_copy / "config.json").read_bytes()
    state = torch.load(run_copy / "checkpoints" / "last.pt", weights_only=True)
    del state["objective"]
    torch.save(state, run_copy / "checkpoints" / "last.pt")
    with pytest.raises(RunError, match="the key 'objective' is missing"):
        train(resume=run_copy, report=False, epochs=7, lr=0.5)  # overrides: a changed config
    assert (run_copy / "config.json").read_bytes() == config


def test_metrics_on_a_full_disk_is_one_located_error(run_copy, monkeypatch):
    import physml.training.trainer as trainer_mod
    from physml.experiment import train
    from physml.storage import StorageError

    real = open
    monkeypatch.setattr(trainer_mod, "open",
                        lambda *a, **kw: _FullFile(real(*a, **kw)), raising=False)
    with pytest.raises(StorageError) as info:
        train(resume=run_copy, report=False)
    assert str(info.value) == (f"cannot write {run_copy}/metrics.jsonl: no space left on the "
                               "device; free some space")
    assert not (run_copy / ".lock").exists()


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_atomic_writes_clean_their_temporary_files(tmp_path, monkeypatch, error):
    import errno

    from physml.storage import StorageError, atomic_write_text
    from physml.training.checkpoint import save_checkpoint

    target = tmp_path / "f.json"
    target.write_text("old")

    def boom(*a, **kw):
        raise error(errno.ENOSPC, "No space left on device") if error is OSError else error()

    monkeypatch.setattr("physml.storage.os.fsync", boom)
    expected = StorageError if error is OSError else KeyboardInterrupt
    with pytest.raises(expected) as info:
        atomic_write_text(target, "new")
    if error is OSError:
        assert str(info.value) == f"cannot write {target}: no space left on the device; free " \
                                  "some space"
    with pytest.raises(expected):
        save_checkpoint(tmp_path / "c.pt", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    assert target.read_text() == "old"


def test_os_errors_no_command_located_are_one_line(monkeypatch, capsys):
    import errno

    from physml.cli import app as app_mod

    def boom(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", "/some/where")

    monkeypatch.setattr(app_mod, "app", boom)
    with pytest.raises(SystemExit) as info:
        app_mod.main()
    assert info.value.code == 1
    assert capsys.readouterr().err == ("error: /some/where: permission denied; choose a folder "
                                       "you may write in\n")
