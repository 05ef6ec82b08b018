"""Every initial-condition sampler draws the statistics it declares."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physml import parse_spec
from physml.errors import SpecError
from physml.simulation import SAMPLERS
from physml.simulation.samplers import draw_initial
from physml.symbolic.spec import Call, Domain, Boundary, Sampler


def _domain(n=32, length=32.0):
    return Domain((n, n), ((0.0, length), (0.0, length)), (Boundary("periodic"),) * 2)


def draw(call: str, variables=("x",), n=4000, domain=None, seed=0, **kw):
    name, _, rest = call.partition("(")
    args, kwargs = [], []
    for item in filter(None, (a.strip() for a in rest.rstrip(")").split(","))):
        if "=" in item:
            k, v = item.split("=")
            kwargs.append((k.strip(), float(v)))
        else:
            args.append(float(item))
    s = Sampler(tuple(variables), Call(name, tuple(args), tuple(kwargs)))
    g = torch.Generator().manual_seed(seed)
    return draw_initial([s], tuple(variables), domain, n, g)


def test_uniform_and_normal_moments():
    x = draw("uniform(-1, 3)", ("a", "b"), n=20000)
    assert abs(float(x.mean()) - 1.0) < 0.03
    assert abs(float(x.var()) - 16 / 12) < 0.03
    assert float(x.min()) >= -1 and float(x.max()) < 3
    y = draw("normal(2, 0.5)", n=20000)
    assert abs(float(y.mean()) - 2) < 0.01 and abs(float(y.std()) - 0.5) < 0.01
    assert torch.equal(draw("constant(7)", n=3), torch.full((3, 1), 7.0, dtype=torch.float64))


def test_ring_radius_and_angle():
    x = draw("ring(1.3, 2.3)", ("theta", "omega"), n=20000)
    r = x.norm(dim=1)
    assert float(r.min()) >= 1.3 and float(r.max()) < 2.3
    assert abs(float(r.mean()) - 1.8) < 0.01
    phi = torch.atan2(x[:, 1], x[:, 0])
    # A uniform angle: E[cos φ] = E[sin φ] = 0 and E[cos 2φ] = 0.
    for m in (torch.cos(phi), torch.sin(phi), torch.cos(2 * phi)):
        assert abs(float(m.mean())) < 0.02


def test_uniform_cells_iid_per_cell():
    x = draw("uniform_cells(0, 1)", ("u", "v"), n=64, domain=_domain())
    assert x.shape == (64, 2, 32, 32)
    assert abs(float(x.mean()) - 0.5) < 0.01 and abs(float(x.var()) - 1 / 12) < 0.005
    # Neighbouring cells are independent.
    a, b = x[..., :-1].flatten(), x[..., 1:].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.02


def test_gaussian_bump_centre_and_width():
    dom = Domain((64, 64), ((0.0, 64.0), (0.0, 64.0)), (Boundary("neumann"),) * 2)
    x = draw("gaussian_bump(10, 100)", ("w", "wt"), n=200, domain=dom)
    assert x.shape == (200, 2, 64, 64)
    assert float(x[:, 1].abs().max()) == 0.0                      # velocity starts at rest
    w = x[:, 0]
    mesh = [torch.as_tensor(m) for m in dom.mesh()]
    mass = w.sum(dim=(1, 2))
    cx = (w * mesh[0]).sum(dim=(1, 2)) / mass
    cy = (w * mesh[1]).sum(dim=(1, 2)) / mass
    assert float(cx.min()) >= 19.5 and float(cx.max()) < 40.5 and float(cy.min()) >= 19.5
    assert abs(float(cx.mean()) - 30) < 1.0
    # ∫ exp(−r²/w) = π w on the plane: the width is U(10, 100), mean 55.
    width = mass / math.pi                                         # dx = 1
    assert float(width.min()) >= 9.9 and float(width.max()) <= 100.1
    assert abs(float(width.mean()) - 55) < 4


def test_squares_gray_scott_seeds():
    x = draw("squares(n=3, size=3)", ("u", "v"), n=100, domain=_domain())
    u, v = x[:, 0], x[:, 1]
    inside = v == 1.0
    assert torch.all((u[inside] == 0.0))
    assert torch.allclose(u[~inside], torch.tensor(0.95, dtype=torch.float64))
    assert torch.allclose(v[~inside], torch.tensor(0.05, dtype=torch.float64))
    count = inside.sum(dim=(1, 2))
    assert int(count.min()) >= 9 and int(count.max()) <= 27
    assert float(count.double().mean()) > 24                    # overlaps are rare


def test_grf_spectrum_slope_and_mean():
    alpha, tau = 2.5, 7.0
    x = draw(f"grf(alpha={alpha}, tau={tau})", ("w",), n=400, domain=_domain(64, 1.0))[:, 0]
    assert abs(float(x.mean(dim=(1, 2)).abs().max())) < 1e-12    # zero-mean mode
    power = torch.fft.fft2(x).abs().square().mean(dim=0)
    k = torch.fft.fftfreq(64, d=1 / 64)
    kk = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    shells = torch.arange(6, 20)
    p = torch.stack([power[(kk >= s - 0.5) & (kk < s + 0.5)].mean() for s in shells])
    # E|û(k)|² ∝ (4π²k² + τ²)^(−α): compare with the exact law (its log-slope ≈ −2α).
    model = (4 * math.pi ** 2 * shells.double() ** 2 + tau ** 2) ** (-alpha)
    slope = np.polyfit(np.log(shells.numpy()), np.log(p.numpy()), 1)[0]
    slope_model = np.polyfit(np.log(shells.numpy()), np.log(model.numpy()), 1)[0]
    assert abs(slope - slope_model) < 0.15 and slope_model < -4.5
    # Li et al.'s normalisation: coefficients c_k = s^d √2 σ λ_k^(−α/2) (ξ + iη), and
    # u = Re ifft(c), so Var u = ½ Σ_{k≠0} E|c_k|² / s^(2d) = Σ_{k≠0} 2σ² λ_k^(−α).
    sigma = tau ** (0.5 * (2 * alpha - 2))
    lam = 4 * math.pi ** 2 * kk.double() ** 2 + tau ** 2
    var = (2 * sigma ** 2 * lam ** (-alpha)).sum() - 2 * sigma ** 2 * tau ** (-2 * alpha)
    assert abs(float(x.var()) / float(var) - 1.0) < 0.1


def test_blob_flow_is_divergence_free():
    dom = Domain((32, 32), ((0.0, 1.0), (0.0, 1.0)), (Boundary("periodic"),) * 2)
    x = draw("blob_flow(speed=2)", ("rho", "u", "v"), n=16, domain=dom)
    rho, u, v = x[:, 0], x[:, 1], x[:, 2]
    k = 2 * math.pi * torch.fft.fftfreq(32, d=1 / 32).double()
    k[16] = 0.0                                    # spectral first derivative: no Nyquist
    div = torch.fft.ifft2(1j * k[:, None] * torch.fft.fft2(u) + 1j * k[None] * torch.fft.fft2(v))
    assert float(div.abs().max()) < 1e-10 * float(u.abs().max() * 32)
    rms = torch.sqrt((u ** 2 + v ** 2).mean(dim=(1, 2)))
    assert torch.allclose(rms, torch.full_like(rms, 2.0))
    assert float(rho.amax(dim=(1, 2)).min()) > 0.9 and float(rho.min()) >= 0


def test_stimulus_cells():
    x = draw("stimulus(n=2, value=1, size=2, others=1)", ("v", "h"), n=50, domain=_domain(24, 24.0))
    on = (x[:, 0] == 1.0).sum(dim=(1, 2))
    assert int(on.min()) >= 4 and int(on.max()) <= 8
    assert float(x[:, 0][x[:, 0] != 1.0].abs().max()) == 0.0
    assert torch.all(x[:, 1] == 1.0)


def test_every_sampler_is_deterministic():
    for name, kind in SAMPLERS.items():
        dom = _domain(16, 1.0)
        k = kind.grid_arity(2) if kind.grid_arity else (kind.arity or 1)
        variables = tuple(f"v{i}" for i in range(k))
        args = "(1)" if name == "constant" else "(1, 2)" if name == "ring" else "()"
        grid = None if name == "ring" else dom
        a = draw(name + args, variables, n=3, domain=grid, seed=5)
        b = draw(name + args, variables, n=3, domain=grid, seed=5)
        assert torch.equal(a, b) and torch.isfinite(a).all(), name


def _spec_with(initial: str):
    return parse_spec("use lotka_volterra\ndata:\n    trajectories 2 train\n"
                      f"    time 0 .. 1 step 0.5\n    initial {initial}\n")


def test_sampler_errors_point_at_the_call():
    from physml.simulation import simulate

    with pytest.raises(SpecError) as exc:
        simulate(_spec_with("u, v ~ unifrom(1, 2)"))
    e = exc.value
    assert "unknown sampler 'unifrom'" in str(e) and "did you mean 'uniform'" in str(e)
    assert (e.line, e.column) == (5, 20)
    assert "^^^^^^^" in e.render()
    with pytest.raises(SpecError, match="has no option 'wdith'"):
        simulate(_spec_with("u, v ~ normal(0, 1, wdith=2)"))
    with pytest.raises(SpecError, match="draws 2 variables jointly"):
        simulate(_spec_with("u ~ ring(1, 2), v ~ uniform(1, 2)"))
    with pytest.raises(SpecError, match="draws fields"):
        simulate(_spec_with("u, v ~ grf()"))
    with pytest.raises(SpecError, match="needs a < b"):
        simulate(_spec_with("u, v ~ uniform(2, 1)"))


@pytest.mark.parametrize("shape", ["rectangle", "triangle", "circle", "complex"])
def test_cardiac_slabs(shape):
    """(v, h, s) of thesis §2.7.3: one scar of the shape, depolarised onsets outside it,
    the gate recovered everywhere."""
    dom = Domain((24, 24), ((0.0, 24.0), (0.0, 24.0)), (Boundary("neumann"),) * 2)
    x = draw(f"cardiac_{shape}(onsets=2, onset_size=3, scar_min=4, scar_max=8)",
             ("v", "h", "s"), n=40, domain=dom)
    v, h, s = x[:, 0], x[:, 1], x[:, 2]
    assert set(s.unique().tolist()) <= {0.0, 1.0} and set(v.unique().tolist()) <= {0.0, 1.0}
    assert bool((h == 1).all())
    assert float((v * s).abs().max()) == 0.0                 # no onset on the scar
    assert bool(((v.sum(dim=(1, 2)) >= 9) & (v.sum(dim=(1, 2)) <= 18)).all())  # 2 blocks of 3×3
    area = s.sum(dim=(1, 2))
    assert float(area.min()) > 0
    if shape == "rectangle":
        rows, cols = s.any(dim=2).sum(dim=1), s.any(dim=1).sum(dim=1)
        assert bool((area == rows * cols).all())               # a filled axis-aligned box
        assert int(rows.min()) >= 4 and int(rows.max()) <= 8
    elif shape == "triangle":
        rows, cols = s.any(dim=2).sum(dim=1), s.any(dim=1).sum(dim=1)
        fill = area / (rows * cols)
        assert float(fill.max()) < 0.8 and float(fill.min()) > 0.4   # about half its box
    elif shape == "circle":
        rows, cols = s.any(dim=2).sum(dim=1), s.any(dim=1).sum(dim=1)
        fill = area / (rows * cols)          # π/4 for a disc (small ones are pixelated)
        assert 0.72 < float(fill.median()) < 0.86 and bool(((rows - cols).abs() <= 1).all())
    # A different seed gives other slabs; the same seed the same ones.
    y = draw(f"cardiac_{shape}(onsets=2, onset_size=3, scar_min=4, scar_max=8)",
             ("v", "h", "s"), n=40, domain=dom)
    assert torch.equal(x, y)
