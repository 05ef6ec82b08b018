"""Every experiment spec shipped in specs/ builds the model `physml train` would run (the
check `physml check` makes before any data exist), and uses every block it declares."""
from __future__ import annotations

from pathlib import Path

import pytest

from physml.experiment import load_spec
from physml.experiment.build import build
from physml.experiment.describe import unused_parts

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in ROOT.glob("specs/**/*.phy") if p.name != "broken.phy")


def test_the_shipped_specs_are_walked():
    names = {p.relative_to(ROOT / "specs").as_posix() for p in SPECS}
    assert {"chapter2/cardiac_hybrid.phy", "chapter2/ns_density_setting1.phy",
            "table3_4/rd_aphynity_param_pde_ab_pointwise.phy"} <= names
    assert len(SPECS) >= 60, len(SPECS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT / "specs")))
def test_every_shipped_spec_builds_and_uses_what_it_declares(path):
    spec = load_spec(path)
    if spec.train is None:
        pytest.skip("a system or data file: nothing to train")
    build(spec)
    assert unused_parts(spec) == []
