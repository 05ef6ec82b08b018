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

Operators are applied as weighted sums of shifted slices of the ghost-padded field (one
gather per padded axis, one fused multiply-add per stencil entry), which is what a
hand-written ``torch.roll`` model does; the cross-shaped Laplacian pads each arm only
along its own axis. Coefficients are Python floats computed from the exact fractions, so
a module converted with ``.double()`` applies float64-exact stencils.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

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


class ExactBuffers(torch.nn.Module):
    """A module whose floating buffers keep a float64 original, so that ``.double()``
    after building in float32 gives float64-accurate coordinates and wavenumbers rather
    than float32 values widened."""

    def __init__(self):
        super().__init__()
        self._exact: dict[str, torch.Tensor] = {}

    def _exact_buffer(self, name: str, value: torch.Tensor, persistent: bool = False):
        self._exact[name] = value.to(torch.float64)
        self.register_buffer(name, value.to(torch.get_default_dtype()), persistent=persistent)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        for name, exact in self._exact.items():
            cur = self._buffers[name]
            self._buffers[name] = exact.to(device=cur.device, dtype=cur.dtype)
        return out


class GridOperators(ExactBuffers):
    """All spatial operators of one domain; index tables and wavenumbers are buffers."""

    def __init__(self, domain: Domain, stencil: str | None = None):
        super().__init__()
        self.domain = domain
        self.family = STENCILS[stencil or domain.stencil]
        self.ndim = domain.ndim
        self.spacing = domain.spacing
        self.boundaries = domain.boundaries
        self.shape = tuple(domain.shape)
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
        self._build_stencils()

    def _register_wavenumbers(self):
        for k, (n, length) in enumerate(zip(self.domain.shape, self.domain.lengths)):
            last = k == self.ndim - 1
            freq = torch.fft.rfftfreq(n, d=1.0 / n) if last else torch.fft.fftfreq(n, d=1.0 / n)
            kvec = 2 * math.pi / length * freq.double()
            shape = [1] * self.ndim
            shape[k] = -1
            self._exact_buffer(f"k{k}", kvec.reshape(shape))
            # First derivatives drop the Nyquist mode (its derivative is not real-valued).
            k1 = kvec.clone()
            if n % 2 == 0:
                k1[n // 2 if not last else -1] = 0.0
            self._exact_buffer(f"k1_{k}", k1.reshape(shape))

    # -- stencils as lists of (offset, coefficient) ----------------------------------------
    def _build_stencils(self):
        """Turn the family's tables into ``{padded axes: [(offsets, coefficient)]}``."""
        fam = self.family
        self._terms: dict[tuple[int, int], tuple] = {}
        exact: dict[tuple[int, int], dict[tuple[int, ...], Fraction]] = {}
        if fam.spectral:
            return
        for k in range(self.ndim):
            for stencil, order in ((fam.d1, 1), (fam.d2, 2)):
                scale = Fraction(1) / Fraction(self.spacing[k]) ** stencil.derivative
                entries = {}
                for j, c in enumerate(stencil.coefficients):
                    if c != 0:
                        off = [0] * self.ndim
                        off[k] = j - stencil.width
                        entries[tuple(off)] = c * scale
                exact[(k, order)] = entries
                self._terms[(k, order)] = _group(entries)
        entries: dict[tuple[int, ...], Fraction] = {}
        if fam.laplacian_2d is not None and self.ndim == 2 and \
                math.isclose(self.spacing[0], self.spacing[1]):
            scale = Fraction(1) / Fraction(self.spacing[0]) ** 2
            for i, row in enumerate(fam.laplacian_2d):
                for j, c in enumerate(row):
                    if c != 0:
                        entries[(i - 1, j - 1)] = c * scale
        else:
            for k in range(self.ndim):
                for off, c in exact[(k, 2)].items():
                    entries[off] = entries.get(off, Fraction(0)) + c
        self._lap_terms = _group(entries)

    # -- application --------------------------------------------------------------------
    def _pad(self, u: torch.Tensor, axes) -> torch.Tensor:
        """Ghost cells along the non-periodic ``axes`` (periodic ones are rolled instead)."""
        for k in axes:
            bc = self.boundaries[k]
            if bc.kind == "periodic":
                continue
            dim = u.dim() - self.ndim + k
            u = pad_axis(u, dim, self.width, bc, getattr(self, f"index{k}"))
        return u

    def _stencil(self, u: torch.Tensor, groups) -> torch.Tensor:
        """Σ c·u[x + offset·h] over the stencil entries. Entries with equal coefficients
        are summed first, so a 5-point Laplacian costs 4 shifts, 4 adds and 2 scalings."""
        w = self.width
        lead = u.dim() - self.ndim
        by_coeff: dict[float, list[torch.Tensor]] = {}
        for axes, items in groups:
            p = self._pad(u, axes)
            for off, c in items:
                view, shifts, dims = p, [], []
                if axes:
                    index = [slice(None)] * p.dim()
                    for k, o in enumerate(off):
                        if self.boundaries[k].kind == "periodic":
                            if o:
                                shifts.append(-o)
                                dims.append(lead + k)
                        elif k in axes:
                            index[lead + k] = slice(w + o, w + o + self.shape[k])
                    view = p[tuple(index)]
                    if shifts:
                        view = view.roll(shifts, dims)
                by_coeff.setdefault(c, []).append(view)
        out = None
        # Larger groups first: their sum is a fresh tensor that can be scaled in place.
        for c, views in sorted(by_coeff.items(), key=lambda kv: -len(kv[1])):
            if len(views) > 1:
                term = views[0] + views[1]
                for v in views[2:]:
                    term.add_(v)
                if out is None:
                    out = term.mul_(c) if c != 1.0 else term
                    continue
                out.add_(term, alpha=c)
            elif out is None:
                out = views[0] * c
            else:
                out.add_(views[0], alpha=c)
        return out

    def derivative(self, u: torch.Tensor, axis: int, order: int) -> torch.Tensor:
        if self.family.spectral:
            return self._spectral(u, {axis: order})
        return self._stencil(u, self._terms[(axis, order)])

    def laplacian(self, u: torch.Tensor) -> torch.Tensor:
        if self.family.spectral:
            return self._spectral(u, {k: 2 for k in range(self.ndim)})
        return self._stencil(u, self._lap_terms)

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
        return torch.fft.irfftn(uh * mult.to(uh.dtype), s=u.shape[-self.ndim:], dim=dims)

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


def _group(entries: dict[tuple[int, ...], Fraction]):
    """Group stencil entries by the axes they shift along (those need ghost padding);
    coefficients become floats rounded once from the exact fractions."""
    groups: dict[tuple[int, ...], list] = {}
    for off, c in sorted(entries.items(), key=lambda kv: (sum(map(abs, kv[0])), kv[0])):
        if c == 0:
            continue
        axes = tuple(k for k, o in enumerate(off) if o != 0)
        groups.setdefault(axes, []).append((off, float(c)))
    return tuple((axes, tuple(items)) for axes, items in
                 sorted(groups.items(), key=lambda kv: (len(kv[0]), kv[0])))

