"""Sparse regression of sampled functions on a library: STLSQ and its bootstrap.

Sequentially thresholded least squares (Brunton, Proctor & Kutz 2016, "Discovering
governing equations from data by sparse identification of nonlinear dynamical systems",
PNAS 113(15), Algorithm in the SI): fit by least squares, drop the terms below a
threshold, refit on the rest, until the active set stops changing.

Here the threshold is on each term's *contribution* — ``|ξ_j|·rms(Θ_j)`` — relative to a
reference scale (the RMS of the equation's whole rate ``dX/dt``), so it reads "a term that
carries less than 1 % of the dynamics is dropped" whatever the units of the terms. The
bootstrap (bagging, as in Fasel et al. 2022, "Ensemble-SINDy", Proc. R. Soc. A 478) refits
on resampled rows and gives every term an inclusion probability and a coefficient
interval.

SR3 (``engine="sr3"``; Zheng, Askham, Brunton, Kutz & Aravkin 2019, "A unified framework
for sparse relaxed regularized regression: SR3", IEEE Access 7; Champion, Zheng, Aravkin,
Brunton & Kutz 2020, IEEE Access 8) relaxes the problem with an auxiliary sparse copy
``w`` of the coefficients, ``min ½·mean(y − Θξ)² + λ‖w‖₀ + ‖ξ − w‖²/(2ν)``, and alternates
an exact least-squares step in ξ with the proximal step in w (a hard threshold at
``√(2λν)``, chosen equal to ``threshold``). It does not commit to a support after one
least-squares fit as STLSQ does, which helps when correlated terms trade weight.

The built-in engines need only NumPy; ``engine="pysindy"`` and ``"pysindy-sr3"`` run
PySINDy's ``STLSQ`` and ``SR3`` on the same normalised problem (``pip install pysindy``), to
cross-check.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENGINES = ("stlsq", "sr3", "pysindy", "pysindy-sr3")

#: SR3's relaxation ν on the normalised problem (unit-RMS columns).
SR3_NU = 1.0


@dataclass
class SparseFit:
    """One equation's fit: coefficients of the raw terms (zeros where dropped), each
    term's contribution (``|ξ_j|·rms(Θ_j)`` over the reference scale), and, with a
    bootstrap, inclusion probabilities and 95 % intervals of the coefficients."""

    coef: np.ndarray
    contribution: np.ndarray
    inclusion: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    residual: float = 0.0  # RMS of y − Θξ over the reference scale

    @property
    def active(self) -> np.ndarray:
        return self.coef != 0


def _normalise(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rms = np.sqrt(np.mean(theta ** 2, axis=0))
    rms = np.where(rms > 0, rms, 1.0)
    return theta / rms, rms


def _stlsq_normal(G: np.ndarray, b: np.ndarray, threshold: float, ridge: float,
                  max_iter: int) -> np.ndarray:
    """STLSQ from the normal equations ``G ξ = b`` of normalised columns (``G = ΘᵀΘ/n``):
    the threshold applies to the normalised coefficients directly."""
    n = len(b)
    active = np.ones(n, dtype=bool)
    xi = np.zeros(n)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        xi = np.zeros(n)
        if idx.size == 0:
            break
        A = G[np.ix_(idx, idx)] + ridge * np.eye(idx.size)
        xi[idx] = np.linalg.lstsq(A, b[idx], rcond=None)[0]
        keep = np.abs(xi) >= threshold
        if np.array_equal(keep, active):
            break
        active = keep
    xi[~active] = 0.0
    return xi


def _sr3_normal(G: np.ndarray, b: np.ndarray, threshold: float, ridge: float,
                max_iter: int, nu: float = SR3_NU, tol: float = 1e-10) -> np.ndarray:
    """SR3 with the L0 penalty from the normal equations ``G ξ = b`` (``G = ΘᵀΘ/m``):
    ``ξ ← (G + I/ν)⁻¹(b + w/ν)``, ``w ← ξ·[|ξ| ≥ threshold]``, until ``w`` stops changing
    (Zheng et al. 2019, Algorithm 1), starting from the least-squares solution as
    PySINDy does. The ξ-system is factorised once."""
    n = len(b)
    chol = np.linalg.cholesky(G + (ridge + 1.0 / nu) * np.eye(n))
    solve = lambda r: np.linalg.solve(chol.T, np.linalg.solve(chol, r))  # noqa: E731
    w = np.linalg.lstsq(G + ridge * np.eye(n), b, rcond=None)[0]  # from least squares
    for _ in range(max(max_iter, 1) * 40):
        xi = solve(b + w / nu)
        w_new = np.where(np.abs(xi) >= threshold, xi, 0.0)
        done = np.linalg.norm(w_new - w) <= tol * max(1.0, np.linalg.norm(w_new))
        w = w_new
        if done:
            break
    return w


def _stlsq_rows(tn: np.ndarray, yn: np.ndarray, threshold: float, ridge: float,
                max_iter: int, engine: str) -> np.ndarray:
    if engine == "pysindy":
        return _pysindy(tn, yn, threshold, ridge, max_iter)
    if engine == "pysindy-sr3":
        return _pysindy_sr3(tn, yn, threshold, max_iter)
    m = len(yn)
    sparse = _sr3_normal if engine == "sr3" else _stlsq_normal
    xi = sparse(tn.T @ tn / m, tn.T @ yn / m, threshold, ridge, max_iter)
    # The support found, its coefficients from the rows themselves (an orthogonal
    # factorisation: the normal equations square the condition number).
    idx = np.flatnonzero(xi)
    if idx.size:
        xi[idx] = np.linalg.lstsq(tn[:, idx], yn, rcond=None)[0]
    return xi


def _fit(tn: np.ndarray, yn: np.ndarray, always: np.ndarray, threshold: float, ridge: float,
         max_iter: int, engine: str) -> np.ndarray:
    """Normalised coefficients: STLSQ on the free columns, the ``always`` columns kept
    without threshold. The kept columns are regressed out first (Frisch–Waugh–Lovell:
    the free coefficients are those of the joint least squares), so either engine runs
    unchanged on the rest."""
    free = ~always
    xi = np.zeros(tn.shape[1])
    if always.any():
        Q, _ = np.linalg.qr(tn[:, always])
        tf = tn[:, free] - Q @ (Q.T @ tn[:, free])
        yf = yn - Q @ (Q.T @ yn)
    else:
        tf, yf = tn, yn
    if free.any():
        xi[free] = _stlsq_rows(tf, yf, threshold, ridge, max_iter, engine)
    if always.any():
        xi[always] = np.linalg.lstsq(tn[:, always], yn - tn[:, free] @ xi[free],
                                     rcond=None)[0]
    return xi


def stlsq(theta: np.ndarray, y: np.ndarray, threshold: float = 0.01,
          scale: float | None = None, ridge: float = 1e-10, max_iter: int = 25,
          engine: str = "stlsq", always: np.ndarray | None = None) -> SparseFit:
    """Sparse ``y ≈ Θ ξ`` (``theta`` ``(n, p)``, ``y`` ``(n,)``, float64).

    ``threshold``: the smallest contribution kept, relative to ``scale`` (default: the
    RMS of ``y``). ``ridge``: Tikhonov term on the normalised problem (conditioning only).
    ``always``: a mask of columns kept whatever their size (never thresholded).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown regression engine {engine!r}; engines: {', '.join(ENGINES)}")
    tn, yn, rms, scale, always = _prepared(theta, y, scale, always)
    xi = _fit(tn, yn, always, threshold, ridge, max_iter, engine)
    coef = xi * scale / rms
    resid = float(np.sqrt(np.mean((yn - tn @ xi) ** 2)))
    return SparseFit(coef=coef, contribution=np.abs(xi), residual=resid)


def _prepared(theta, y, scale, always):
    """The normalised problem: columns of ``theta`` scaled to unit RMS, ``y`` by ``scale``
    (default its RMS); the column RMS, the scale and the never-thresholded mask."""
    theta = np.asarray(theta, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    always = np.zeros(theta.shape[1], dtype=bool) if always is None else \
        np.asarray(always, dtype=bool)
    scale = float(np.sqrt(np.mean(y ** 2))) if scale is None else float(scale)
    scale = scale if scale > 0 else 1.0
    tn, rms = _normalise(theta)
    return tn, y / scale, rms, scale, always


def _pysindy(tn, yn, threshold, ridge, max_iter) -> np.ndarray:
    try:
        import pysindy
    except ImportError:
        raise ValueError("engine 'pysindy' needs PySINDy: pip install pysindy") from None
    opt = pysindy.STLSQ(threshold=threshold, alpha=ridge * len(yn), max_iter=max_iter)
    opt.fit(tn, yn)
    return np.asarray(opt.coef_, dtype=np.float64).reshape(-1)


def _pysindy_sr3(tn, yn, threshold, max_iter) -> np.ndarray:
    """PySINDy's SR3 on the same problem: its objective sums over the ``m`` rows, so
    ``ν = SR3_NU/m`` and ``λ = m·threshold²/(2·SR3_NU)`` put its hard threshold
    ``√(2λν)`` at ``threshold``; the support's coefficients are then refitted as ours."""
    try:
        import pysindy
    except ImportError:
        raise ValueError("engine 'pysindy-sr3' needs PySINDy: pip install pysindy") from None
    m = len(yn)
    opt = pysindy.SR3(reg_weight_lam=m * threshold ** 2 / (2 * SR3_NU), regularizer="L0",
                      relax_coeff_nu=SR3_NU / m, tol=1e-12, max_iter=max(max_iter, 1) * 40)
    opt.fit(tn, yn)
    w = np.asarray(opt.coef_full_ if hasattr(opt, "coef_full_") else opt.coef_,
                   dtype=np.float64).reshape(-1)
    w = np.where(np.abs(w) >= threshold, w, 0.0)
    idx = np.flatnonzero(w)
    if idx.size:
        w[idx] = np.linalg.lstsq(tn[:, idx], yn, rcond=None)[0]
    return w


def bootstrap(theta: np.ndarray, y: np.ndarray, threshold: float = 0.01,
              scale: float | None = None, n: int = 100, seed: int = 0,
              ridge: float = 1e-10, engine: str = "stlsq",
              always: np.ndarray | None = None) -> SparseFit:
    """:func:`stlsq` on all rows, plus ``n`` refits on rows drawn with replacement: the
    share of refits that keep each term (inclusion probability) and the 2.5–97.5 %
    percentiles of its coefficient over the refits that keep it."""
    fit = stlsq(theta, y, threshold, scale, ridge, engine=engine, always=always)
    if n <= 0:
        return fit
    tn, yn, rms, scale, always = _prepared(theta, y, scale, always)
    rng = np.random.default_rng(seed)
    m, p = tn.shape
    coefs = np.zeros((n, p))
    for i in range(n):
        rows = rng.integers(0, m, size=m)
        coefs[i] = _fit(tn[rows], yn[rows], always, threshold, ridge, 25, engine) * scale / rms
    kept = coefs != 0
    fit.inclusion = kept.mean(axis=0)
    low, high = np.zeros(p), np.zeros(p)
    for j in range(p):
        if kept[:, j].any():
            low[j], high[j] = np.percentile(coefs[kept[:, j], j], [2.5, 97.5])
    fit.low, fit.high = low, high
    return fit
