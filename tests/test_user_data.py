"""Real data (issue 10, point 14): README's CSV example runs as written, a single series is
split by time, `data info` inspects user files, `check` locates a missing data file, and
reports give no "true" values for measured data."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import physml
from physml.cli.app import app
from physml.data import DataError, load_dataset
from physml.experiment import dataset_for
from physml.experiment.data import true_values

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_thread")


def _readme_example() -> tuple[str, str]:
    """The Python block and the `# hudson.phy` spec of README's "Your own data"."""
    section = README.read_text(encoding="utf-8").split("### Your own data\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    spec = re.search(r"```\n(# hudson\.phy\n.*?)```", section, re.S).group(1)
    return python, spec


def _hudson_csv(path: Path) -> np.ndarray:
    """21 yearly counts from a Lotka–Volterra cycle (1900 … 1920)."""
    years = np.arange(1900, 1921)
    u, v, out = 1.5, 0.8, []
    for _ in years:
        out.append((u, v))
        for _ in range(100):                       # 100 Euler steps of 0.01 per year
            u, v = u + 0.01 * (0.6 * u - 0.5 * u * v), v + 0.01 * (0.4 * u * v - 0.5 * v)
    counts = np.round(np.array(out) * 20, 3)       # as written to the CSV
    rows = ["year,hare,lynx"] + [f"{y},{h:.3f},{l:.3f}" for y, (h, l) in zip(years, counts)]
    path.write_text("\n".join(rows) + "\n")
    return counts


def test_readme_csv_example_splits_by_time_and_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                    # README's commands run in the data folder
    python, spec_text = _readme_example()
    counts = _hudson_csv(tmp_path / "hudson.csv")
    subprocess.run([sys.executable, "-c", python], cwd=tmp_path, check=True)
    (tmp_path / "hudson.phy").write_text(spec_text)

    res = runner.invoke(app, ["data", "info", "hudson.npz"])
    assert res.exit_code == 0, res.output
    for row in (r"hare\s+21\s+float64", r"lynx\s+21\s+float64", r"t\s+21\s+float64"):
        assert re.search(row, res.output), res.output
    assert ("not a physml dataset: to read it as data, give the spec that maps it — physml "
            "data info hudson.npz --spec SPEC.phy") in " ".join(res.output.split())
    res = runner.invoke(app, ["data", "info", "hudson.npz", "--spec", "hudson.phy"])
    assert res.exit_code == 0, res.output
    assert re.search(r"train\s+1\s+12\s+5", res.output) and re.search(r"test\s+1\s+1\s+5",
                                                                      res.output)
    res = runner.invoke(app, ["check", "hudson.phy"])
    assert res.exit_code == 0, res.output

    spec = physml.load_spec(tmp_path / "hudson.phy")
    ds, path = dataset_for(spec)
    assert path == tmp_path / "hudson.npz"
    # 16 years before 1916; the test part is 1916 … 1920 (5 frames), so training sees the
    # 12 five-year stretches 1900–1904 … 1911–1915.
    assert ds["train"].shape == (1, 12, 5, 2) and ds["test"].shape == (1, 1, 5, 2)
    assert ds.times.tolist() == [1916.0, 1917.0, 1918.0, 1919.0, 1920.0]
    np.testing.assert_allclose(ds["test"][0, 0].numpy(), counts[16:], rtol=1e-6)
    np.testing.assert_allclose(ds["train"][0, 11].numpy(), counts[11:16], rtol=1e-6)
    assert ds.meta["split_time"] == 1916.0 and ds.meta["train_windows"] == 12
    assert ds.env_params == [{}]
    assert true_values(ds, {"alpha": 0, "beta": 0}) == {}

    run = physml.train(spec, dataset=ds, steps=2, report=True, out=tmp_path / "run")
    assert len([m for m in run.metrics() if "loss" in m]) == 2
    params = json.loads((run.path / "report.json").read_text())["evaluate"]["parameters"]
    assert {p["name"] for p in params} == {"alpha", "beta", "gamma", "delta"}
    assert not any("true" in p or "error_pct" in p for p in params)
    report = (run.path / "report.md").read_text()
    rows = [l for l in report.splitlines() if l.startswith(("| alpha |", "| beta |"))]
    assert len(rows) >= 2 and all(r.endswith("| — | — |") for r in rows[:2]), rows


def _lv_file(tmp_path, years=range(1900, 1921)):
    t = np.array(list(years), dtype=float)
    np.savez(tmp_path / "s.npz", t=t, u=1 + 0.1 * np.sin(t), v=1 + 0.1 * np.cos(t))


@pytest.mark.parametrize("at, message", [
    ("1920", "`split time 1920` leaves 1 frame(s) from 1920 on (times end at 1920); the test "
             "part needs at least two"),
    ("1905", "`split time 1905` leaves 5 frame(s) before 1905 and 16 from it; training needs "
             "at least as many frames as the test part — split later"),
])
def test_split_time_errors_say_what_is_left(tmp_path, at, message):
    _lv_file(tmp_path)
    (tmp_path / "s.phy").write_text(f'use lotka_volterra\ndata:\n    file "s.npz"\n'
                                    f"    split time {at}\n")
    with pytest.raises(DataError) as info:
        dataset_for(tmp_path / "s.phy")
    assert str(info.value) == f"{tmp_path / 's.npz'}: {message}"


@pytest.mark.parametrize("block, message, column, hint", [
    ('    time 0 .. 2 step 1\n    initial u, v ~ uniform(0, 1)\n    split time 1\n',
     "`split time` divides the series of a data `file`; this data block simulates", 5,
     'add `file "DATA.npz"`, or split simulated data with `trajectories N train, M test`'),
    ('    file "s.npz"\n    trajectories 1 train\n    split time 1\n',
     "`split time` and `trajectories` both say how to split the data", 5,
     "keep one: `split time T` cuts each series at T"),
])
def test_split_time_needs_a_file_and_no_trajectories_line(block, message, column, hint):
    with pytest.raises(physml.SpecError) as info:
        physml.parse_spec(f"use lotka_volterra\ndata:\n{block}", "s.phy")
    lines = str(info.value).splitlines()
    assert (lines[0], lines[1].strip(), lines[-1]) == (
        f"s.phy:{block.count(chr(10)) + 2}:{column}: {message}", "split time 1", hint)


def test_check_locates_a_missing_data_file(tmp_path):
    (tmp_path / "s.phy").write_text('use lotka_volterra\ndata:\n    file "nothere.npz"\n'
                                    'prior:\n    d(u)/dt = alpha*u - beta*u*v\n'
                                    '    d(v)/dt = delta*u*v - gamma*v\n    learn alpha\n'
                                    'train physics epochs 1\n')
    res = runner.invoke(app, ["check", str(tmp_path / "s.phy")])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert lines[0] == f"{tmp_path / 's.phy'}:3:10: data file {tmp_path / 'nothere.npz'} " \
                       "does not exist"
    assert lines[-1] == ("paths are relative to the spec's folder; see README, \"Your own "
                         "data\", for the layout")
    with pytest.raises(physml.SpecError, match=r"s\.phy:3:10: data file .* does not exist"):
        physml.train(tmp_path / "s.phy", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_user_data_reads_environment_values_only(tmp_path):
    t = np.linspace(0, 2, 5)
    np.savez(tmp_path / "e.npz", t=t, u=np.ones((2, 1, 5)), v=np.ones((2, 1, 5)))
    spec = physml.parse_spec("use lotka_volterra\nenvironments:\n    a: alpha = 0.25\n"
                             "    b: alpha = 0.75\n")
    ds = load_dataset(tmp_path / "e.npz", spec=spec)
    assert ds.env_names == ("a", "b") and ds.env_params == [{"alpha": 0.25}, {"alpha": 0.75}]
