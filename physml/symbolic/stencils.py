"""Spatial operators on regular grids: finite-difference stencils as coefficient tables,
boundary padding, and spectral operators.

A stencil family maps each derivative order to a central difference table with its formal
order of accuracy (``Stencil.order``), so one test checks every table (convergence under
refinement). Boundaries are applied by padding with ghost nodes (see
:class:`~physml.symbolic.spec.Domain` for the grid convention):

- ``periodic``: wrap around;
- ``neumann`` (zero flux): even reflection about the wall half a cell outside the first
  node, ``u[-k] = u[k-1]``, which makes the discrete flux through the wall vanish;
- ``dirichlet g``: odd reflection about the wall value, ``u[-k] = 2 g - u[k-1]``.

Operators are applied with one gather per axis and one convolution (the Laplacian's
cross-shaped stencil is a single kernel), which is what a hand-written model does too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from .spec import Boundary, Domain


@dataclass(frozen=True)
class Stencil:
    """Central difference ``Σ_k c_k u[i+k] / h^derivative`` with offsets ``-w..w``."""

    derivative: int
    coefficients: tuple[Fraction, ...]  # for offsets -w..w
    order: int

    @property
    def width(self) -> int:
        return len(self.coefficients) // 2


def _fr(*xs) -> tuple[Fraction, ...]:
    return tuple(Fraction(x) for x in xs)


@dataclass(frozen=True)
class StencilFamily:
    """Tables for the first and second derivative, and optionally a 2-D Laplacian kernel."""

    name: str
    d1: Stencil | None
    d2: Stencil | None
    laplacian_2d: tuple[tuple[Fraction, ...], ...] | None = None  # 3x3 kernel / h²
    spectral: bool = False

    @property
    def order(self) -> int:
        if self.spectral:
            return math.inf
        return min(s.order for s in (self.d1, self.d2) if s is not None)


STENCILS: dict[str, StencilFamily] = {
    "central2": StencilFamily(
        "central2",
        Stencil(1, _fr(-0.5, 0, 0.5), 2),
        Stencil(2, _fr(1, -2, 1), 2)),
    "central4": StencilFamily(
        "central4",
        Stencil(1, _fr(Fraction(1, 12), Fraction(-2, 3), 0, Fraction(2, 3), Fraction(-1, 12)), 4),
        Stencil(2, _fr(Fraction(-1, 12), Fraction(4, 3), Fraction(-5, 2), Fraction(4, 3),
                       Fraction(-1, 12)), 4)),
    # Isotropic 9-point Laplacian (Patra & Karttunen 2006): (1/6h²)[[1,4,1],[4,-20,4],[1,4,1]].
    # Second-order, with an isotropic leading error; derivatives fall back to central2.
    "isotropic": StencilFamily(
        "isotropic",
        Stencil(1, _fr(-0.5, 0, 0.5), 2),
        Stencil(2, _fr(1, -2, 1), 2),
        laplacian_2d=tuple(tuple(Fraction(v, 6) for v in row)
                           for row in ((1, 4, 1), (4, -20, 4), (1, 4, 1)))),
    # Fourier pseudo-spectral derivatives; periodic domains only.
    "spectral": StencilFamily("spectral", None, None, spectral=True),
}


def boundary_index(n: int, width: int, bc: Boundary) -> torch.Tensor:
    """Indices that pad an axis of ``n`` nodes with ``width`` ghost nodes on each side."""
    idx = torch.arange(-width, n + width)
    if bc.kind == "periodic":
        return idx % n
    # Even reflection about the walls at -1/2 and n-1/2: -k ↦ k-1, n-1+k ↦ n-k.
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
    if (idx < 0).any() or (idx >= n).any():
        raise ValueError(f"grid axis of {n} nodes is too small for a stencil of width {width}")
    return idx


def pad_axis(u: torch.Tensor, dim: int, width: int, bc: Boundary,
             index: torch.Tensor) -> torch.Tensor:
    """Ghost-node padding of ``u`` along ``dim`` for the boundary condition ``bc``."""
    if width == 0:
        return u
    out = u.index_select(dim, index)
    if bc.kind == "dirichlet":
        n = u.shape[dim]
        # Odd reflection about the wall value g: ghost = 2 g - mirrored node.
        lo = out.narrow(dim, 0, width)
        mid = out.narrow(dim, width, n)
        hi = out.narrow(dim, width + n, width)
        out = torch.cat([2 * bc.value - lo, mid, 2 * bc.value - hi], dim=dim)
    return out


class GridOperators(torch.nn.Module):
    """All spatial operators of one domain, with index tables and kernels as buffers."""

    def __init__(self, domain: Domain, stencil: str | None = None):
        super().__init__()
        self.domain = domain
        self.family = STENCILS[stencil or domain.stencil]
        self.ndim = domain.ndim
        self.spacing = domain.spacing
        self.boundaries = domain.boundaries
        if self.family.spectral:
            if not domain.periodic:
                raise ValueError("the spectral stencil needs a periodic domain")
        width = max(s.width for s in (self.family.d1, self.family.d2) if s) \
            if not self.family.spectral else 0
        self.width = width
        for k, (n, bc) in enumerate(zip(domain.shape, domain.boundaries)):
            self.register_buffer(f"index{k}", boundary_index(n, width, bc) if width else
                                 torch.arange(n), persistent=False)
        if domain.periodic:
            self._register_wavenumbers()
        self._register_kernels()

    def _register_wavenumbers(self):
        for k, (n, length) in enumerate(zip(self.domain.shape, self.domain.lengths)):
            last = k == self.ndim - 1
            freq = torch.fft.rfftfreq(n, d=1.0 / n) if last else torch.fft.fftfreq(n, d=1.0 / n)
            kvec = 2 * math.pi / length * freq.double()
            shape = [1] * self.ndim
            shape[k] = -1
            self.register_buffer(f"k{k}", kvec.reshape(shape), persistent=False)
            # First derivatives drop the Nyquist mode (its derivative is not real-valued).
            k1 = kvec.clone()
            if n % 2 == 0:
                k1[n // 2 if not last else -1] = 0.0
            self.register_buffer(f"k1_{k}", k1.reshape(shape), persistent=False)

    def _register_kernels(self):
        fam = self.family
        if fam.spectral:
            return
        w = self.width
        size = 2 * w + 1
        for k in range(self.ndim):
            for stencil, tag in ((fam.d1, "d1"), (fam.d2, "d2")):
                kernel = torch.zeros([size if a == k else 1 for a in range(self.ndim)],
                                     dtype=torch.float64)
                coeffs = torch.tensor([float(c) for c in stencil.coefficients], dtype=torch.float64)
                off = w - stencil.width
                # The kernel has size 1 on every other axis, so its flat view runs along k.
                kernel.view(-1)[off:off + len(coeffs)] = coeffs / self.spacing[k] ** stencil.derivative
                self.register_buffer(f"kernel_{tag}_{k}", kernel, persistent=False)
        # The Laplacian as one kernel (cross-shaped, or the isotropic 9-point one).
        lap = torch.zeros([size] * self.ndim, dtype=torch.float64)
        if fam.laplacian_2d is not None and self.ndim == 2 and \
                math.isclose(self.spacing[0], self.spacing[1]):
            off = w - 1
            lap[off:off + 3, off:off + 3] = torch.tensor(
                [[float(v) for v in row] for row in fam.laplacian_2d], dtype=torch.float64
            ) / self.spacing[0] ** 2
        else:
            centre = [w] * self.ndim
            for k in range(self.ndim):
                kern = getattr(self, f"kernel_d2_{k}")
                idx = list(centre)
                for j in range(size):
                    idx[k] = j
                    lap[tuple(idx)] += kern.reshape(-1)[j]
        self.register_buffer("kernel_lap", lap, persistent=False)

    # -- application --------------------------------------------------------------------
    def _pad(self, u: torch.Tensor, axes) -> torch.Tensor:
        for k in axes:
            dim = u.dim() - self.ndim + k
            u = pad_axis(u, dim, self.width, self.boundaries[k], getattr(self, f"index{k}"))
        return u

    def _conv(self, u: torch.Tensor, kernel: torch.Tensor, axes) -> torch.Tensor:
        """Apply ``kernel`` to ``u`` of shape ``(..., *grid)`` with boundary padding."""
        lead = u.shape[: u.dim() - self.ndim]
        x = self._pad(u, axes).reshape(-1, 1, *[
            s + (2 * self.width if k in axes else 0) for k, s in enumerate(u.shape[-self.ndim:])])
        kern = kernel.to(dtype=u.dtype)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.ndim - 1]
        y = conv(x, kern.reshape(1, 1, *kern.shape))
        return y.reshape(*lead, *y.shape[-self.ndim:])

    def derivative(self, u: torch.Tensor, axis: int, order: int) -> torch.Tensor:
        if self.family.spectral:
            return self._spectral(u, {axis: order})
        return self._conv(u, getattr(self, f"kernel_d{order}_{axis}"), (axis,))

    def laplacian(self, u: torch.Tensor) -> torch.Tensor:
        if self.family.spectral:
            return self._spectral(u, {k: 2 for k in range(self.ndim)})
        return self._conv(u, self.kernel_lap, tuple(range(self.ndim)))

    def divergence(self, *components: torch.Tensor) -> torch.Tensor:
        out = self.derivative(components[0], 0, 1)
        for k, c in enumerate(components[1:], start=1):
            out = out + self.derivative(c, k, 1)
        return out

    def _spectral(self, u: torch.Tensor, orders: dict[int, int]) -> torch.Tensor:
        dims = tuple(range(-self.ndim, 0))
        uh = torch.fft.rfftn(u, dim=dims)
        mult = None
        for axis, order in orders.items():
            k = getattr(self, f"k1_{axis}" if order == 1 else f"k{axis}")
            term = (1j * k) ** order
            mult = term if mult is None else mult + term
        return torch.fft.irfftn(uh * mult.to(uh.dtype if uh.is_complex() else torch.complex128),
                                s=u.shape[-self.ndim:], dim=dims)

    def inverse_laplacian(self, f: torch.Tensor) -> torch.Tensor:
        """Zero-mean ψ with Δψ = f on the periodic box (the mean of f is dropped)."""
        if not self.domain.periodic:
            raise ValueError("inv_lap needs a periodic domain")
        dims = tuple(range(-self.ndim, 0))
        fh = torch.fft.rfftn(f, dim=dims)
        k2 = sum(getattr(self, f"k{k}") ** 2 for k in range(self.ndim))
        inv = torch.where(k2 > 0, -1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)),
                          torch.zeros_like(k2))
        return torch.fft.irfftn(fh * inv.to(fh.real.dtype), s=f.shape[-self.ndim:], dim=dims)
