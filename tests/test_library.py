"""Every built-in system compiles to the thesis's equations.

For each file of ``equations/`` the compiled ``F`` is compared, in float64 on random
states, with a reference written here by hand from the thesis (§ cited per system). The
references build their stencils independently of physml: ``numpy.roll`` for periodic
grids, ``numpy.pad(mode="symmetric")`` ghost cells for Neumann walls (cell-centred grid,
the wall half a cell outside the first node) and full complex FFTs for spectral operators.
A new library file without a reference here fails ``test_every_system_has_a_reference``.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import physml

LIBRARY = Path(__file__).resolve().parents[1] / "equations"
NAMES = sorted(p.stem for p in LIBRARY.glob("*.phy"))
TOL = 1e-10  # relative to the largest entry of the reference (and absolute below 1)


# ---------------------------------------------------------------------------------------
# Hand-written spatial operators (numpy, float64). Arrays are (..., Nx, Ny), axis -2 is x.

def _roll_lap5(u, h):
    return (np.roll(u, 1, -2) + np.roll(u, -1, -2) + np.roll(u, 1, -1) + np.roll(u, -1, -1)
            - 4 * u) / h ** 2


def _roll_lap9(u, h):
    # Isotropic 9-point Laplacian (1/6h²)[[1,4,1],[4,-20,4],[1,4,1]].
    edges = np.roll(u, 1, -2) + np.roll(u, -1, -2) + np.roll(u, 1, -1) + np.roll(u, -1, -1)
    corners = sum(np.roll(np.roll(u, a, -2), b, -1) for a in (1, -1) for b in (1, -1))
    return (4 * edges + corners - 20 * u) / (6 * h ** 2)


def _neumann_pad(u, w):
    # Even reflection about walls half a cell outside: ghost u[-k] = u[k-1].
    pad = [(0, 0)] * (u.ndim - 2) + [(w, w), (w, w)]
    return np.pad(u, pad, mode="symmetric")


def _neumann_lap(u, h, coeffs):
    w = len(coeffs) // 2
    p = _neumann_pad(u, w)
    nx, ny = u.shape[-2:]
    out = np.zeros_like(u)
    for j, c in enumerate(coeffs):
        out += c * p[..., j:j + nx, w:w + ny] + c * p[..., w:w + nx, j:j + ny]
    return out / h ** 2


class _Spectral:
    """Fourier derivatives on a periodic box with full complex FFTs."""

    def __init__(self, n, length):
        k = 2 * np.pi / length * np.fft.fftfreq(n, 1.0 / n)
        self.kx, self.ky = k[:, None], k[None, :]
        k1 = k.copy()
        k1[n // 2] = 0.0  # the Nyquist mode has no real first derivative
        self.k1x, self.k1y = k1[:, None], k1[None, :]
        self.k2 = self.kx ** 2 + self.ky ** 2

    @staticmethod
    def _apply(u, mult):
        return np.fft.ifft2(np.fft.fft2(u) * mult).real

    def dx(self, u):
        return self._apply(u, 1j * self.k1x)

    def dy(self, u):
        return self._apply(u, 1j * self.k1y)

    def lap(self, u):
        return self._apply(u, -self.k2)

    def inv_lap(self, f):
        inv = np.zeros_like(self.k2)
        inv[self.k2 > 0] = -1.0 / self.k2[self.k2 > 0]
        return self._apply(f, inv)


def _periodic_mesh(n, a, b):
    x = a + (b - a) / n * np.arange(n)
    return np.meshgrid(x, x, indexing="ij")


def _centred_mesh(n, a, b):
    x = a + (b - a) / n * (np.arange(n) + 0.5)
    return np.meshgrid(x, x, indexing="ij")


# ---------------------------------------------------------------------------------------
# References: ref(t, X, p) -> dX/dt, from the thesis equations.

def ref_damped_pendulum(t, X, p):
    # §3.3.2: θ̇ = ω, ω̇ = −(2π/T0)² sin θ − α ω.
    th, om = X[..., 0], X[..., 1]
    return np.stack([om, -(2 * np.pi / p["T0"]) ** 2 * np.sin(th) - p["alpha"] * om], -1)


def ref_reaction_diffusion(t, X, p):
    # §3.3.2 FitzHugh–Nagumo: u̇ = aΔu + u − u³ − k − v, v̇ = bΔv + u − v; 32×32 on [−1,1]².
    u, v = X[:, 0], X[:, 1]
    h = 2 / 32
    return np.stack([p["a"] * _roll_lap5(u, h) + u - u ** 3 - p["k"] - v,
                     p["b"] * _roll_lap5(v, h) + u - v], 1)


def ref_lotka_volterra(t, X, p):
    # §3.4.4: u̇ = αu − βuv, v̇ = δuv − γv.
    u, v = X[..., 0], X[..., 1]
    return np.stack([p["alpha"] * u - p["beta"] * u * v,
                     p["delta"] * u * v - p["gamma"] * v], -1)


def ref_gray_scott(t, X, p):
    # §3.4.4: u̇ = D_u Δu − uv² + F(1−u), v̇ = D_v Δv + uv² − (F+k)v; 9-point Δ, dx = 1.
    u, v = X[:, 0], X[:, 1]
    return np.stack([p["Du"] * _roll_lap9(u, 1.0) - u * v ** 2 + p["F"] * (1 - u),
                     p["Dv"] * _roll_lap9(v, 1.0) + u * v ** 2 - (p["F"] + p["k"]) * v], 1)


def ref_navier_stokes(t, X, p):
    # §3.4.4: ẇ = −v·∇w + νΔw + ξ, v = (∂ᵧψ, −∂ₓψ), Δψ = −w; periodic unit square.
    s = _Spectral(32, 1.0)
    x, y = _periodic_mesh(32, 0.0, 1.0)
    w = X[:, 0]
    psi = s.inv_lap(-w)
    vx, vy = s.dy(psi), -s.dx(psi)
    xi = p["amp"] * (np.sin(2 * np.pi * (p["fa"] * x + p["fb"] * y))
                     + np.cos(2 * np.pi * (p["fc"] * x + p["fd"] * y)))
    return (-(vx * s.dx(w) + vy * s.dy(w)) + p["nu"] * s.lap(w) + xi)[:, None]


def ref_damped_wave(t, X, p):
    # §3.3.2: ẅ = c²Δw − kẇ as (w, ẇ); 64×64, dx = 1, Neumann, 5×5 (4th-order) Laplacian.
    w, wt = X[:, 0], X[:, 1]
    lap = _neumann_lap(w, 1.0, (-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12))
    return np.stack([wt, p["c"] ** 2 * lap - p["k"] * wt], 1)


def ref_mitchell_schaeffer(t, X, p):
    # §2.7 Eqs. 2.9–2.10 (gate as in Mitchell & Schaeffer 2003), zero flux, 1 mm pixels,
    # non-conductive rectangular scar, stimulus on the onset pixels for t < t_stim.
    x, y = _centred_mesh(24, 0.0, 24.0)
    healthy = 1.0 - ((x > 10) & (x < 16) & (y > 6) & (y < 18))
    onset = ((x < 2) & (y < 2)).astype(float)
    v, h = X[:, 0], X[:, 1]
    current = p["stim"] * onset * (1.0 if t < p["t_stim"] else 0.0)
    lap = _neumann_lap(v, 1.0, (1.0, -2.0, 1.0))
    dv = p["sigma"] * lap + h * v ** 2 * (1 - v) / p["tau_in"] - v / p["tau_out"] + current
    dh = np.where(v < p["v_gate"], (1 - h) / p["tau_open"], -h / p["tau_close"])
    return np.stack([healthy * dv, healthy * dh], 1)


def ref_ns_velocity_density(t, X, p):
    # §2.5.1: u̇ = P[−(u·∇)u + νΔu], ρ̇ = −(u·∇)ρ (+ κΔρ), with P(a) = a − ∇Δ⁻¹(∇·a).
    s = _Spectral(64, 1.0)
    u, v, rho = X[:, 0], X[:, 1], X[:, 2]
    ax = -(u * s.dx(u) + v * s.dy(u)) + p["nu"] * s.lap(u)
    ay = -(u * s.dx(v) + v * s.dy(v)) + p["nu"] * s.lap(v)
    phi = s.inv_lap(s.dx(ax) + s.dy(ay))
    return np.stack([ax - s.dx(phi), ay - s.dy(phi),
                     -(u * s.dx(rho) + v * s.dy(rho)) + p["kappa"] * s.lap(rho)], 1)


REFERENCES = {name[4:]: fn for name, fn in globals().items() if name.startswith("ref_")}

# Inputs of a physically meaningful range per system (random, seeded).
_STATE_SCALE = {"mitchell_schaeffer": (0.0, 1.0), "ns_velocity_density": (-1.0, 1.0)}


# ---------------------------------------------------------------------------------------

def _load(name):
    return physml.load_spec(LIBRARY / f"{name}.phy")


def _perturbed(system, rng):
    """Parameter values moved by up to ±20 % (kept inside their bounds)."""
    out = {}
    for p in system.params:
        value = p.value * (1 + 0.4 * (rng.random() - 0.5)) if p.value != 0 else rng.random()
        out[p.name] = value if p.contains(value) else p.value
    return out


def _check(name, F, values, t, rng):
    system = F.system
    lo, hi = _STATE_SCALE.get(name, (-2.0, 2.0))
    X = lo + (hi - lo) * rng.random((3, *system.state_shape()))
    got = F(torch.tensor(t), torch.from_numpy(X)).detach().numpy()
    want = REFERENCES[name](t, X, values)
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= TOL * scale, f"{name}: max error {err:.3e} (scale {scale:.3e})"


def test_every_system_has_a_reference():
    missing = sorted(set(NAMES) - set(REFERENCES))
    assert not missing, f"library systems without a reference in tests/test_library.py: {missing}"
    assert len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_library_file_is_the_thesis_system(name, float64):
    spec = _load(name)
    assert spec.system.name == name
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    # Default parameters, folded into the compiled code.
    F = physml.compile_dynamics(spec)
    for t in (0.0, 50.0):  # two times: the cardiac stimulus is on, then off
        _check(name, F, spec.system.param_values, t, rng)
    # Other parameter values, both as fixed overrides and as learnable parameters.
    values = _perturbed(spec.system, rng)
    _check(name, physml.compile_dynamics(spec, values=values), values, 1.0, rng)
    learn = physml.compile_dynamics(spec, learn={k: v for k, v in values.items()},
                                    fold_constants=False)
    _check(name, learn, values, 1.0, rng)


def test_library_defaults_follow_the_thesis():
    """The headline constants of PROTOCOLS.md / the thesis tables."""
    expect = {
        "damped_pendulum": {"T0": 6, "alpha": 0.2},
        "reaction_diffusion": {"a": 1e-3, "b": 5e-3, "k": 5e-3},
        "damped_wave": {"c": 330, "k": 50},
        "lotka_volterra": {"alpha": 0.5, "beta": 0.5, "gamma": 0.5, "delta": 0.5},
        "gray_scott": {"Du": 0.2097, "Dv": 0.105, "F": 0.037, "k": 0.060},
        "navier_stokes": {"nu": 1e-3, "amp": 0.1},
        "mitchell_schaeffer": {"tau_in": 0.3, "tau_out": 6, "tau_open": 120, "tau_close": 150,
                               "v_gate": 0.13},
    }
    for name, params in expect.items():
        values = _load(name).system.param_values
        for k, v in params.items():
            assert math.isclose(values[k], v), (name, k, values[k], v)
    grids = {"reaction_diffusion": (32, 32), "damped_wave": (64, 64), "gray_scott": (32, 32),
             "navier_stokes": (32, 32), "mitchell_schaeffer": (24, 24)}
    for name, shape in grids.items():
        assert _load(name).system.domain.shape == shape
