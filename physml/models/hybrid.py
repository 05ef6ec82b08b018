"""Hybrid models ``dX/dt = F_p(X; θ_p) + F_a(X; θ_a)`` assembled from a spec (thesis §3.3).

- ``F_p`` is the compiled ``prior:`` block (a :class:`~physml.symbolic.VectorField` whose
  learnable parameters are the ones named in ``learn``), or a learnable Hamiltonian
  (:class:`HamiltonianPrior`), or absent (a fully neural model);
- ``F_a`` is the ``augment`` network, or absent (a purely physical model).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..symbolic import VectorField, compile_dynamics
from ..symbolic.spec import Call, Spec
from .nets import MLP, Scaled, build_network


class HamiltonianPrior(nn.Module):
    """A learnable Hamiltonian ``H_θ(q, p)`` giving ``F = (∂H/∂p, −∂H/∂q)`` (thesis §3.3.2,
    Greydanus et al. 2019). Used as the prior of the damped pendulum: conservative by
    construction, so the augmentation must carry the friction."""

    def __init__(self, hidden: int = 200, layers: int = 3, activation: str = "tanh",
                 gain: float = 1.0):
        super().__init__()
        self.H = MLP(2, hidden=hidden, layers=layers, activation=activation, gain=gain, n_out=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.requires_grad_(True)
            H = self.H(x).sum()
            dH = torch.autograd.grad(H, x, create_graph=True)[0]
        return torch.stack([dH[..., 1], -dH[..., 0]], dim=-1)


class HybridModel(nn.Module):
    """``F(t, X) = F_p(t, X) + F_a(X)`` with either part optional."""

    def __init__(self, prior: nn.Module | None, augmentation: nn.Module | None):
        super().__init__()
        if prior is None and augmentation is None:
            raise ValueError("a model needs a prior, an augmentation network, or both")
        self.prior = prior
        self.augmentation = augmentation
        # `augment ... with x, y, t`: the network takes extra inputs (and t)
        self.aug_inputs = bool(getattr(augmentation, "inputs", ()))
        self.aug_takes_time = bool(getattr(augmentation, "takes_time", False))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prior is None:
            return self.augmentation(x, t) if self.aug_inputs else self.augmentation(x)
        out = self.prior(t, x)
        if self.augmentation is not None:
            out = out + (self.augmentation(x, t) if self.aug_inputs else self.augmentation(x))
        return out

    def at_environments(self, env: torch.Tensor | None):
        """A context for one solve whose rows belong to environments ``env`` (``(B,)``):
        one model serves every environment here (see
        :class:`~physml.models.environments.MultiEnvModel`)."""
        return nullcontext()

    def row_order(self, env: torch.Tensor | None) -> torch.Tensor | None:
        """A permutation of a solve's rows that this model evaluates faster (None: as
        they come)."""
        return None

    def norm_terms(self, states: torch.Tensor, env: torch.Tensor, relative: bool,
                   times: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The regulariser terms of a batch's states (``aug_norm``, Eq. 3.6)."""
        return {"aug_norm": self.augmentation_norm(states, relative, times)}

    def solving(self):
        """A context for one solve: the prior's parameters are transformed once
        (:meth:`VectorField.frozen_parameters`)."""
        if isinstance(self.prior, VectorField):
            return self.prior.frozen_parameters()
        return nullcontext()

    # -- what the reports need ----------------------------------------------------------
    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Current values of the prior's *learned* parameters."""
        if isinstance(self.prior, VectorField):
            values = self.prior.param_values()
            return {k: values[k] for k in self.prior.learnable}
        return {}

    def fit_scales(self, frames: torch.Tensor, dt: float, rate: bool = True,
                   env: torch.Tensor | None = None) -> None:
        """Scale the network's inputs and outputs to the training data (:class:`Scaled`);
        ``rate=False``: its output is the next state (``solver direct``), not a rate.
        ``env`` (each trajectory's environment) matters to models over several
        environments only (:class:`~physml.models.environments.MultiEnvModel`)."""
        if isinstance(self.augmentation, Scaled):
            self.augmentation.fit_scales(frames, dt, rate=rate)

    def physical_raw_parameters(self) -> list[nn.Parameter]:
        if isinstance(self.prior, VectorField):
            return list(self.prior.raw.parameters())
        return []

    def augmentation_norm(self, states: torch.Tensor, relative: bool,
                          times: torch.Tensor | None = None) -> torch.Tensor:
        """Thesis Eq. (3.6) estimate of ``‖F_a‖²`` on a batch of states ``(M, *state)``:
        mean of ``‖F_a(x)‖²``, or of ``(‖F_a(x)‖/‖x‖)²`` when ``relative`` (pendulum).
        ``times`` ``(M,)``: the time of each state, for a network that takes ``t``
        (``augment ... with t``; None: t = 0). Coordinates need nothing here.

        For fields ``(M, C, *grid)`` the norm is the L² norm per unit area,
        ``(1/|Ω|)∫ Σ_c F_a,c(x)² dx``: summed over channels, averaged over grid points (the
        research code's convention). It does not grow with the resolution, so the
        thesis's λ₀ and τ₂ keep their meaning on any grid.
        """
        if self.augmentation is None:
            return states.new_zeros(())
        fa = self.augmentation(states, times) if self.aug_inputs else self.augmentation(states)
        if fa.dim() > 2:
            sq = fa.pow(2).sum(dim=1).flatten(1).mean(dim=1)
            ref = states.pow(2).sum(dim=1).flatten(1).mean(dim=1)
        else:
            sq = fa.pow(2).sum(dim=1)
            ref = states.pow(2).sum(dim=1)
        if relative:
            sq = sq / ref.clamp_min(1e-10)
        return sq.mean()


def build_model(spec: Spec, use_prior: bool = True, use_network: bool = True) -> HybridModel:
    """The vector field a spec describes, with the parts a training method uses.

    ``use_prior``: the ``prior:`` block (compiled, or a learnable Hamiltonian);
    ``use_network``: the ``augment`` network (an MLP/ConvNet when the spec names none and
    there is no prior). A method's objective class says which it needs
    (:attr:`~physml.objectives.Objective.uses_prior`, ``uses_network``).
    """
    system = spec.system
    shape = system.state_shape()
    domain = system.domain
    prior: nn.Module | None = None
    augmentation: nn.Module | None = None
    if use_prior:
        if spec.prior is None:
            raise ValueError("this method needs a `prior:` block (the known physics)")
        if spec.prior.hamiltonian is not None:
            prior = HamiltonianPrior(**spec.prior.hamiltonian.options())
        else:
            prior = compile_dynamics(spec, "prior")
    if use_network:
        call = spec.augment
        if call is None or call.name == "none":
            if use_prior and call is not None:
                raise ValueError("this method needs an augmentation network (`augment none` "
                                 "leaves it nothing to learn with)")
            call = Call("mlp", kwargs=(("hidden", 200), ("layers", 3))) if domain is None \
                else Call("convnet", kwargs=(("channels", 16), ("layers", 3)))
        outputs = [system.variables.index(v) for v in spec.augment_on] or None
        inputs = spec.augment_with if spec.augment is not None else ()
        augmentation = Scaled(build_network(call, shape, domain, extra=len(inputs)), shape[0],
                              outputs=outputs, inputs=inputs, domain=domain)
    return HybridModel(prior, augmentation)
