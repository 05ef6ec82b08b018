"""The dataset format, user data, the cache, and the CLI commands."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import physml
from physml import parse_spec
from physml.cli.app import app
from physml.data import DataError, Dataset, load_dataset, save_dataset
from physml.experiment import dataset_for
from physml.simulation import simulate

PENDULUM = ("use damped_pendulum\ndata:\n    trajectories 4 train, 2 val, 3 test\n"
            "    time 0 .. 4 step 0.5\n    initial theta, omega ~ ring(1.3, 2.3)\n"
            "    noise 0.01\n    seed 2\n")
LV = ("use lotka_volterra\ndata:\n    trajectories 3 train, 2 test\n    time 0 .. 2 step 0.5\n"
      "    initial u, v ~ uniform(1, 2)\nenvironments:\n    e1: alpha = 0.5\n    e2: alpha = 1\n")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pend() -> Dataset:
    return simulate(parse_spec(PENDULUM))


def test_dataset_attributes(pend):
    assert pend.variables == ("theta", "omega") and pend.state_shape == (2,)
    assert pend["train"].shape == (1, 4, 9, 2) and pend["train"].dtype == torch.float32
    assert pend.times.dtype == torch.float64 and pend.dt == 0.5 and pend.history == 0
    assert pend.env_names == ("default",) and pend.env_params[0] == {"T0": 6.0, "alpha": 0.2}
    assert pend.noise == 0.01 and pend.seed == 2 and len(pend.hash) == 64
    assert set(pend.clean) == {"train", "val", "test"}
    with pytest.raises(KeyError, match="this dataset has train, val, test"):
        pend["validation"]


def test_roundtrip_is_exact(tmp_path, pend):
    path = save_dataset(pend, tmp_path / "p.h5")
    ds = load_dataset(path)
    assert ds.hash == pend.hash
    for k in pend.splits:
        assert torch.equal(ds[k], pend[k]) and torch.equal(ds.clean[k], pend.clean[k])
    assert ds.spec_text == PENDULUM and ds.env_params == pend.env_params
    assert torch.equal(ds.times, pend.times)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left
    with h5py.File(path) as f:                     # plain HDF5 that other tools can read
        assert f["train"].shape == (1, 4, 9, 2)
        assert f["train"].dims[2][0].name == "/time"
        assert f.attrs["physml_version"] == physml.__version__
        assert json.loads(f.attrs["variables"]) == ["theta", "omega"]


def test_same_spec_same_bytes(tmp_path):
    a = save_dataset(simulate(parse_spec(PENDULUM)), tmp_path / "a.h5")
    b = save_dataset(simulate(parse_spec(PENDULUM)), tmp_path / "b.h5")
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for k in ("train", "val", "test", "train_clean", "time"):
            assert fa[k][()].tobytes() == fb[k][()].tobytes()
        assert fa.attrs["hash"] == fb.attrs["hash"]


def test_interrupted_write_leaves_old_file(tmp_path, pend, monkeypatch):
    path = save_dataset(pend, tmp_path / "p.h5")
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("physml.data.io._chunks", boom)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(pend, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]


def test_truncated_and_tampered_files(tmp_path, pend):
    path = save_dataset(pend, tmp_path / "p.h5")
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(DataError, match="truncated or damaged"):
        load_dataset(cut)
    with h5py.File(path, "r+") as f:
        f["train"][0, 0, 0, 0] = 42.0
    with pytest.raises(DataError, match="do not match the stored hash"):
        load_dataset(path)
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.h5")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path / "x.csv")


def test_environments_roundtrip(tmp_path):
    ds = simulate(parse_spec(LV))
    assert ds.env_names == ("e1", "e2") and ds["train"].shape == (2, 3, 5, 2)
    back = load_dataset(save_dataset(ds, tmp_path / "lv.h5"))
    assert back.env_params == ds.env_params and back.env_names == ds.env_names
    with h5py.File(tmp_path / "lv.h5") as f:
        names = json.loads(f.attrs["param_names"])
        col = names.index("alpha")
        assert f["env_params"][:, col].tolist() == [0.5, 1.0]


# -- user data ----------------------------------------------------------------------------

USER_SPEC = ("use lotka_volterra\ndata:\n    trajectories 3 train, 1 test\n"
             "    file \"lv.npz\"\n    map u=\"prey\", v=\"predator\"\n")


def _lv_arrays(n=4, T=6):
    t = np.linspace(0, 2.5, T)
    prey = 1 + np.random.default_rng(0).random((n, T))
    pred = 2 + np.random.default_rng(1).random((n, T))
    return t, prey, pred


def test_user_npz_with_mapping_and_splits(tmp_path):
    t, prey, pred = _lv_arrays()
    np.savez(tmp_path / "lv.npz", t=t, prey=prey, predator=pred)
    spec_path = tmp_path / "s.phy"
    spec_path.write_text(USER_SPEC)
    ds, path = dataset_for(spec_path, cache_dir=tmp_path / "cache")
    assert path == tmp_path / "lv.npz"
    assert ds["train"].shape == (1, 3, 6, 2) and ds["test"].shape == (1, 1, 6, 2)
    np.testing.assert_allclose(ds["train"][0, :, :, 0].numpy(), prey[:3], rtol=1e-6)
    np.testing.assert_allclose(ds["test"][0, 0, :, 1].numpy(), pred[3], rtol=1e-6)
    assert ds.dt == pytest.approx(0.5) and ds.meta["uniform_time"]


def test_user_h5_per_split_groups(tmp_path):
    t, prey, pred = _lv_arrays()
    with h5py.File(tmp_path / "lv.nc", "w") as f:
        f["time"] = t
        f["train/prey"], f["train/predator"] = prey[:3], pred[:3]
        f["test/prey"], f["test/predator"] = prey[3:], pred[3:]
    spec = parse_spec("use lotka_volterra\n")
    ds = load_dataset(tmp_path / "lv.nc", spec=spec, mapping={"u": "prey", "v": "predator"})
    assert ds["train"].shape == (1, 3, 6, 2) and ds["test"].shape == (1, 1, 6, 2)


def test_user_data_errors(tmp_path):
    spec = parse_spec("use lotka_volterra\n")
    t, prey, pred = _lv_arrays()
    m = {"u": "prey", "v": "predator"}

    def check(match, mapping=m, **arrays):
        np.savez(tmp_path / "d.npz", **arrays)
        with pytest.raises(DataError, match=match):
            load_dataset(tmp_path / "d.npz", spec=spec, mapping=mapping)

    check("no array for variable 'v'.*arrays in the file: predatr, prey, t",
          t=t, prey=prey, predatr=pred)
    check(r"has shape \(4, 6, 2\)", t=t, prey=prey, predator=np.stack([pred, pred], -1))
    check("has 6 entries but the time array has 5", t=t[:5], prey=prey, predator=pred)
    check("times must increase strictly; 't'\\[3\\]", t=t[[0, 1, 3, 2, 4, 5]], prey=prey,
          predator=pred)
    bad = prey.copy()
    bad[2, 4] = np.nan
    check(r"'prey' holds 1 NaN/inf values, the first at index \(0, 2, 4\)", t=t, prey=bad,
          predator=pred)
    check("dtype <U1", t=t, prey=np.full((4, 6), "a"), predator=pred)
    check("no time array", prey=prey, predator=pred)
    check("'w', which is not a variable", mapping={"w": "prey"}, t=t, prey=prey, predator=pred)
    np.savez(tmp_path / "d.npz", t=t, prey=prey, predator=pred)
    with pytest.raises(DataError, match="pass the spec"):
        load_dataset(tmp_path / "d.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read the .npz"):
        load_dataset(tmp_path / "junk.npz", spec=spec)


def test_dataset_for_caches_by_spec_hash(tmp_path):
    spec_path = tmp_path / "pend.phy"
    spec_path.write_text(PENDULUM)
    ds, path = dataset_for(spec_path, cache_dir=tmp_path / "data")
    assert path.exists() and path.parent == tmp_path / "data"
    assert path.stem.startswith("damped_pendulum-")
    stamp = path.stat().st_mtime_ns
    ds2, path2 = dataset_for(spec_path, cache_dir=tmp_path / "data")
    assert path2 == path and ds2.hash == ds.hash and path.stat().st_mtime_ns == stamp
    _, path3 = dataset_for(spec_path, cache_dir=tmp_path / "data", seed=9)
    assert path3 != path
    path.write_bytes(path.read_bytes()[:1000])                  # damaged cache: redone
    ds4, _ = dataset_for(spec_path, cache_dir=tmp_path / "data")
    assert ds4.hash == ds.hash
    # Specs that differ only in what they train (a thesis table's rows) share one simulation;
    # a different data block does not.
    other = tmp_path / "other.phy"
    other.write_text("# another row of the same table\n" + PENDULUM + "\ntrain neural epochs 3\n")
    assert dataset_for(other, cache_dir=tmp_path / "data")[1] == path
    other.write_text(PENDULUM.replace("noise", "noise 0.5 #"))
    assert dataset_for(other, cache_dir=tmp_path / "data")[1] != path


# -- CLI ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_simulate_and_info(tmp_path):
    spec_path = tmp_path / "pend.phy"
    spec_path.write_text(PENDULUM)
    out = tmp_path / "out" / "p.h5"
    r = runner.invoke(app, ["simulate", str(spec_path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists() and "train" in r.output and "hash" in r.output
    ds = load_dataset(out)
    r = runner.invoke(app, ["data", "info", str(out)])
    assert r.exit_code == 0 and ds.hash[:16] in r.output and "theta, omega" in r.output
    r = runner.invoke(app, ["simulate", str(spec_path), "--data-dir", str(tmp_path / "c")])
    assert r.exit_code == 0 and len(list((tmp_path / "c").glob("damped_pendulum-*.h5"))) == 1
    r = runner.invoke(app, ["simulate", str(spec_path), "--data-dir", str(tmp_path / "c")])
    assert "(cached)" in r.output


def test_data_info_prints_the_key_that_names_the_cache_file(tmp_path):
    spec_path = tmp_path / "pend.phy"
    spec_path.write_text(PENDULUM)
    r = runner.invoke(app, ["simulate", str(spec_path), "--data-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    (cached,) = (tmp_path / "c").glob("damped_pendulum-*.h5")
    key = cached.stem.removeprefix("damped_pendulum-")
    ds = load_dataset(cached)
    assert ds.meta["key"] == key == physml.experiment.spec_key(parse_spec(PENDULUM))
    r = runner.invoke(app, ["data", "info", str(cached)])
    assert r.exit_code == 0 and f"seed 2; key {key}; content hash {ds.hash[:16]}" in r.output
    # dataset_for writes the same file, with the same key and bytes
    ds2, path = dataset_for(spec_path, cache_dir=tmp_path / "d")
    assert path.name == cached.name and ds2.hash == ds.hash


def test_cli_blow_up_and_drop(tmp_path):
    spec_path = tmp_path / "blow.phy"
    spec_path.write_text("system blow\nstate x\nparam r = 1\ndynamics:\n    d(x)/dt = r*x^2\n"
                         "data:\n    trajectories 20 train\n    time 0 .. 1 step 0.25\n"
                         "    initial x ~ uniform(0.1, 2)\n"
                         "    solver dopri5(rtol=1e-5, atol=1e-5)\n")
    r = runner.invoke(app, ["simulate", str(spec_path), "-o", str(tmp_path / "b.h5")])
    assert r.exit_code == 1 and not (tmp_path / "b.h5").exists()
    assert "blew" not in r.output and "became non-finite" in r.output
    r = runner.invoke(app, ["simulate", str(spec_path), "-o", str(tmp_path / "b.h5"),
                            "--drop-unstable"])
    assert r.exit_code == 0 and "dropped" in r.output
    assert load_dataset(tmp_path / "b.h5")["train"].shape[1] < 20


def test_cli_bad_files(tmp_path):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 20)
    r = runner.invoke(app, ["data", "info", str(tmp_path / "bad.h5")])
    assert r.exit_code == 1 and "truncated or damaged" in r.output
    (tmp_path / "s.phy").write_text("use damped_pendulum\ndata:\n    trajectories 2 train\n"
                                    "    time 0 .. 1 step 0.5\n    initial theta, omega ~ rign(1, 2)\n")
    r = runner.invoke(app, ["simulate", str(tmp_path / "s.phy")])
    assert r.exit_code == 1 and "did you mean 'ring'" in r.output and "s.phy:5:" in r.output


# ---- hardening (issue 9) ------------------------------------------------------------------

@pytest.mark.parametrize("attr, value", [
    ("dt", 0.25), ("spec_text", PENDULUM + "# edited\n"), ("noise", 0.02), ("seed", 3),
    ("meta", json.dumps({"solver": "euler"})), ("env_params", json.dumps([{"T0": 7.0, "alpha": 0.2}])),
])
def test_tampered_attributes_are_detected(tmp_path, pend, attr, value):
    path = save_dataset(pend, tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}: the arrays and attributes do not match the "
                                      f"stored hash {pend.hash[:12]}")
    assert str(info.value).endswith("the file was modified or is damaged; delete it and "
                                    "simulate again")


@pytest.mark.parametrize("attr, value, what", [
    ("meta", "{not json", "a JSON object of the expected form"),
    ("meta", json.dumps([1, 2]), "a JSON object of the expected form"),
    ("meta", json.dumps({"dropped": [{"split": "train", "time": "soon"}]}),
     "a JSON object of the expected form"),
    ("env_params", json.dumps({"a": 1}), "a JSON list of {name: number} objects"),
    ("variables", "theta", "a JSON list of names"),
    ("dt", "fast", "a finite number"),
    ("history", 1.5, "an integer"),
    ("state_shape", np.array([-2]), "a list of positive integers"),
])
def test_malformed_attributes_name_the_attribute(tmp_path, pend, attr, value, what):
    path = save_dataset(pend, tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value) == (f"{path}: attribute '{attr}' is not {what}; the file was "
                               "modified or is damaged; delete it and simulate again")
    r = runner.invoke(app, ["data", "info", str(path)])
    assert r.exit_code == 1 and f"attribute '{attr}' is not" in r.output
    assert "Traceback" not in r.output and "ValueError" not in r.output


def test_format_1_files_still_load(tmp_path, pend):
    """Files written before the hash covered dt, spec text and meta are checked with the
    format-1 hash."""
    path = save_dataset(pend, tmp_path / "p.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        f.attrs["hash"] = pend.content_hash(version=1)
    ds = load_dataset(path)
    assert ds.hash == pend.content_hash(version=1) != pend.hash
    assert torch.equal(ds["train"], pend["train"])
    with h5py.File(path, "r+") as f:
        f.attrs["hash"] = pend.hash                     # a v2 hash under version 1: mismatch
    with pytest.raises(DataError, match="do not match the stored hash"):
        load_dataset(path)


def test_hash_covers_dt_spec_text_and_meta(pend):
    base = pend.content_hash()
    for change in [dict(dt=0.25), dict(spec_text=pend.spec_text + "#"),
                   dict(meta={**pend.meta, "solver": "x"})]:
        ds = Dataset(**{**{f: getattr(pend, f) for f in ("variables", "state_shape", "times",
                                                         "splits", "dt", "history", "env_names",
                                                         "env_params", "spec_text", "seed",
                                                         "noise", "splits_clean", "meta")},
                        **change})
        assert ds.hash != base


def test_user_values_overflowing_float32_are_refused(tmp_path):
    spec = parse_spec(LV)
    t = np.arange(0, 2.5, 0.5)
    u = np.ones((5, 5))
    u[1, 3] = 1e300                        # finite in float64, inf in float32
    np.savez(tmp_path / "d.npz", t=t, u=u, v=np.ones((5, 5)))
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "d.npz", spec=spec)
    assert str(info.value).startswith(f"{tmp_path / 'd.npz'}: array 'u' holds 1 NaN/inf "
                                      "values, the first at index (0, 1, 3) (env, traj, time, …), "
                                      "counted in float32")


def test_data_info_counts_non_finite_values(tmp_path, pend):
    x = pend["train"].clone()
    x[0, 0, 1, 0] = float("inf")
    x[0, 1, 2, 1] = float("nan")
    ds = Dataset(pend.variables, pend.state_shape, pend.times, {"train": x}, pend.dt,
                 spec_text=pend.spec_text, seed=2)
    row = ds.summary()[0]
    assert row["nonfinite"] == 2 and np.isfinite(row["min"]) and np.isfinite(row["max"])
    path = save_dataset(ds, tmp_path / "inf.h5")
    r = runner.invoke(app, ["data", "info", str(path)], terminal_width=200)
    assert r.exit_code == 0, r.output
    header = next(line for line in r.output.splitlines() if "split" in line)
    assert header.split()[-1] == "NaN/inf"
    assert next(line for line in r.output.splitlines() if line.strip().startswith("train")
                ).split()[-1] == "2"
    assert "some values are NaN or ±inf" in r.output


def test_check_prints_the_size_estimate(tmp_path):
    (tmp_path / "s.phy").write_text(PENDULUM)
    r = runner.invoke(app, ["check", str(tmp_path / "s.phy")], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert ("  data: 9 trajectories × 9 frames × 2 values = 162 numbers; 1.27 KiB stored"
            in r.output)
    big = PENDULUM.replace("4 train", "400000000 train")
    (tmp_path / "big.phy").write_text(big)
    r = runner.invoke(app, ["check", str(tmp_path / "big.phy")], terminal_width=200)
    assert r.exit_code == 1 and f"{tmp_path / 'big.phy'}:2:1: the dataset is too large" in r.output
    r = runner.invoke(app, ["check", str(tmp_path / "big.phy"), "--memory-budget", "1T"],
                      terminal_width=200)
    assert r.exit_code == 0, r.output


def test_cli_simulate_seed_out_of_range(tmp_path):
    (tmp_path / "s.phy").write_text(PENDULUM)
    r = runner.invoke(app, ["simulate", str(tmp_path / "s.phy"), "--seed", str(2**63),
                            "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 1 and "--seed 9223372036854775808: seeds lie in 0 … 2^63 − 1" in r.output
    assert not (tmp_path / "x.h5").exists()


# ---- netCDF-4 layout: xarray opens the files (issue 10) ----------------------------------

HEAT = ("system heat\ndomain 8 x 6 over [-1, 1] x [0, 3] neumann\nfield u, v\nparam k = 0.5\n"
        "dynamics:\n    d(u)/dt = k*lap(u)\n    d(v)/dt = -v\n"
        "data:\n    trajectories 2 train, 1 test\n    time 0 .. 0.1 step 0.05\n"
        "    initial u, v ~ uniform(0, 1)\n")


def test_xarray_opens_a_simulated_ode_dataset(tmp_path, pend):
    import xarray as xr

    path = save_dataset(pend, tmp_path / "p.h5")
    with xr.open_dataset(path, engine="h5netcdf") as x:
        assert x["train"].dims == ("environment", "trajectory_train", "time", "variable")
        assert x["test_clean"].dims == ("environment", "trajectory_test", "time", "variable")
        assert x["env_params"].dims == ("environment", "parameter")
        assert x["variable"].values.tolist() == ["theta", "omega"]
        assert x["environment"].values.tolist() == ["default"]
        assert x["parameter"].values.tolist() == ["T0", "alpha"]
        assert x["trajectory_val"].values.tolist() == [0, 1]
        assert x["time"].values.tolist() == pend.times.tolist()
        assert x["time"].attrs["units"] == "1" and x["train"].attrs["units"] == "1"
        assert x.attrs["format_version"] == 4 and x.attrs["hash"] == pend.hash
        np.testing.assert_array_equal(x["train"].sel(variable="omega").values,
                                      pend["train"][..., 1].numpy())
        assert x["env_params"].sel(parameter="T0").values.tolist() == [6.0]


def test_xarray_opens_a_grid_dataset_with_its_coordinates(tmp_path):
    ds = simulate(parse_spec(HEAT))
    spec = parse_spec(HEAT)
    xs, ys = spec.system.domain.coordinates()
    assert ds.coords["x"].tolist() == xs.tolist()
    path = save_dataset(ds, tmp_path / "g.h5")
    back = load_dataset(path)
    assert back.hash == ds.hash and back.coords["y"].tolist() == ys.tolist()
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as x:
        assert x["train"].dims == ("environment", "trajectory_train", "time", "variable",
                                   "x", "y")
        assert x["x"].values.tolist() == [-0.875, -0.625, -0.375, -0.125, 0.125, 0.375,
                                          0.625, 0.875]
        assert x["y"].values.tolist() == [0.25, 0.75, 1.25, 1.75, 2.25, 2.75]
        assert x["x"].attrs["units"] == "1" and x["x"].attrs["axis"] == "X"
        np.testing.assert_array_equal(x["test"].values, ds["test"].numpy())


def test_xarray_opens_a_saved_user_dataset(tmp_path):
    t, prey, pred = _lv_arrays()
    np.savez(tmp_path / "lv.npz", t=t, prey=prey, predator=pred)
    (tmp_path / "s.phy").write_text(USER_SPEC)
    ds, _ = dataset_for(tmp_path / "s.phy")
    path = save_dataset(ds, tmp_path / "lv.h5")
    assert load_dataset(path).hash == ds.hash
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as x:
        assert x["train"].dims == ("environment", "trajectory_train", "time", "variable")
        assert x["variable"].values.tolist() == ["u", "v"]
        assert x["time"].values.tolist() == t.tolist()
        np.testing.assert_allclose(x["test"].sel(variable="v").values[0, 0], pred[3],
                                   rtol=1e-6)


def test_format_2_files_load_with_the_same_hash(tmp_path, pend):
    """A file written before the netCDF dimensions (format 2: one time scale, no
    coordinates) loads, and its hash is the one the same data have today."""
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        for k, v in {"format": "physml-dataset", "format_version": 2,
                     "spec_text": pend.spec_text, "seed": pend.seed, "noise": pend.noise,
                     "variables": json.dumps(list(pend.variables)),
                     "state_shape": np.array(pend.state_shape),
                     "env_names": json.dumps(list(pend.env_names)),
                     "env_params": json.dumps(pend.env_params), "dt": pend.dt,
                     "history": pend.history, "hash": pend.hash,
                     "meta": json.dumps(pend.meta)}.items():
            f.attrs[k] = v
        f["time"] = pend.times.numpy()
        f["time"].make_scale("time")
        for name, x in [*pend.splits.items(),
                        *((f"{k}_clean", v) for k, v in pend.splits_clean.items())]:
            f[name] = x.numpy()
            f[name].dims[2].attach_scale(f["time"])
    ds = load_dataset(path)
    assert ds.hash == pend.hash and ds.coords == {}
    assert torch.equal(ds["val"], pend["val"])


def test_cache_key_covers_the_samplers_defaults(monkeypatch):
    """A sampler default physml changes (the cardiac onsets grew from 2 to 3 cells) must
    not reuse data drawn with the old one."""
    from dataclasses import replace

    from physml.simulation.samplers import SAMPLERS

    key = physml.experiment.spec_key
    lv = parse_spec(LV)
    before = key(lv)
    kind = SAMPLERS["uniform"]
    monkeypatch.setitem(SAMPLERS, "uniform", replace(kind, params=(("a", 0.0), ("b", 2.0))))
    assert key(lv) == before                 # both options written: defaults unused
    lv_default = parse_spec(LV.replace("uniform(1, 2)", "uniform(1)"))
    d = key(lv_default)
    monkeypatch.setitem(SAMPLERS, "uniform", kind)
    assert key(lv_default) != d
