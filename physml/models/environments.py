"""Models over several environments (LEADS, thesis §3.4): ``dX/dt = F(X) + G_e(X)``.

- ``F`` is shared by every environment: the spec's ``prior:`` (with its ``learn``
  parameters) plus its ``augment`` network, built as for one environment;
- ``G_e`` (:class:`StackedNetworks`) is one small network per environment. The ``E``
  networks keep their weights stacked ``(E, …)``; a batch of trajectories from mixed
  environments is evaluated in one call, ``vmap`` over the rows of
  ``torch.func.functional_call`` with each row's weights (``W[env]``, gathered once per
  solve), never a Python loop over environments;
- ``learn alpha per environment`` gives a prior parameter one value per environment
  (:class:`EnvironmentParameters`, an ``(E,)`` tensor indexed by ``Batch.env``), which the
  compiled prior receives as per-trajectory values.

The environment of each row is set for one solve by :meth:`MultiEnvModel.at_environments`
(the rollout does it from ``Batch.env``).
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..symbolic import VectorField, compile_dynamics
from ..symbolic.compiler import param_scale, to_constrained, to_unconstrained
from ..symbolic.spec import Call, Spec
from .hybrid import HybridModel, build_model
from .nets import ACTIVATIONS, Scaled, _activation, _flag, build_network, fitted_scales, \
    init_linear, zero_last_layer

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _key(name: str) -> str:
    return name.replace(".", "__")


def _linear_chain(net: nn.Module) -> list[tuple[str | None, nn.Module]] | None:
    """An MLP as ``[(layer name, Linear) or (None, parameter-free module)]`` in order,
    or None if the network is anything else (then it is evaluated by vmap)."""
    leaves = [(n, m) for n, m in net.named_modules() if not list(m.children())]
    order = []
    for name, mod in leaves:
        if isinstance(mod, nn.Linear):
            order.append((name, mod))
        elif not list(mod.parameters(recurse=False)) and not list(mod.buffers(recurse=False)) \
                and isinstance(mod, tuple(ACTIVATIONS.values())):
            order.append((None, mod))
        else:
            return None
    # Only a plain chain (nn.Sequential of leaves) runs in that order.
    seq = [m for m in net.modules() if isinstance(m, nn.Sequential)]
    if len(seq) != 1 or len(list(seq[0].children())) != len(leaves):
        return None
    return order


class StackedNetworks(nn.Module):
    """``E`` networks of one architecture with stacked weights, ``G(x)_b = s_out ⊙
    G_{env_b}(x_b ⊘ s_in)`` for each row ``b``.

    ``make()`` builds one network; the ``E`` copies are independently initialised (as
    ``E`` separate networks would be), then their last layer is zeroed so that every
    ``G_e`` starts at 0 (the model is the shared ``F`` alone until the data ask for more).
    ``s_in``/``s_out`` are per-channel scales (:class:`~physml.models.nets.Scaled`), set
    by :meth:`fit_scales`: shared by the environments, or with ``per_env_scales`` one pair
    per environment, fitted on that environment's data alone (One-Per-Env, whose networks
    must not learn from each other's data, not even their scale).
    """

    def __init__(self, make: Callable[[], nn.Module], n_envs: int, channels: int,
                 zero_init: bool = True, per_env_scales: bool = False):
        super().__init__()
        nets = [make() for _ in range(n_envs)]
        if zero_init and zero_last_layer(nets[0]):
            for net in nets:
                last = [m for m in net.modules() if isinstance(m, _LAYERS)]
                if last:
                    nn.init.zeros_(last[-1].weight)
                    if last[-1].bias is not None:
                        nn.init.zeros_(last[-1].bias)
        params, buffers = stack_module_state(nets)
        self.n_envs = n_envs
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.weights = nn.ParameterDict({_key(k): nn.Parameter(v.detach().clone())
                                         for k, v in params.items()})
        for k, v in buffers.items():
            self.register_buffer("stacked_" + _key(k), v.clone())
        # The architecture without storage: functional_call supplies every tensor.
        self.base = [copy.deepcopy(nets[0]).to("meta")]  # a list: not a submodule
        self._linear_chain = _linear_chain(self.base[0])
        shape = (n_envs, channels) if per_env_scales else (channels,)
        self.per_env_scales = per_env_scales
        self.fit_scales_to_data = getattr(nets[0], "fit_scales_to_data", True)
        self.register_buffer("in_scale", torch.ones(shape))
        self.register_buffer("out_scale", torch.ones(shape))
        self._rows: dict[str, torch.Tensor] | None = None

    # -- the stacked tensors ---------------------------------------------------------
    def stacked(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the architecture, stacked ``(E, …)``."""
        out = {k: self.weights[_key(k)] for k in self.names}
        out.update({k: getattr(self, "stacked_" + _key(k)) for k in self.buffer_names})
        return out

    def weight_matrices(self) -> dict[str, torch.Tensor]:
        """The weight of every linear/convolution layer, ``(E, out, in·kernel)`` (the
        matrices of the spectral term of Ω, thesis §3.4.3)."""
        layers = {n for n, m in self.base[0].named_modules() if isinstance(m, _LAYERS)}
        return {k: self.weights[_key(k)].flatten(2) for k in self.names
                if k.rsplit(".", 1)[0] in layers and k.endswith("weight")}

    def network(self, e: int) -> nn.Module:
        """Environment ``e``'s network as a separate module (a copy, for reports/tests)."""
        net = copy.deepcopy(self.base[0]).to_empty(device=self.in_scale.device)
        net.load_state_dict({k: v[e].detach() for k, v in self.stacked().items()})
        return net

    # -- evaluation ----------------------------------------------------------------
    @contextmanager
    def at_rows(self, env: torch.Tensor):
        """Within the block, row ``b`` of every input uses environment ``env[b]``'s
        weights. How is decided here, once per solve (a solve evaluates the field many
        times): when every environment has as many rows, the rows are grouped by
        environment (one permutation) and each layer is one batched matmul over the
        ``E`` stacked weights; otherwise each row gets its environment's weights,
        gathered once."""
        self._rows = self._plan(env)
        try:
            yield self
        finally:
            self._rows = None

    def _plan(self, env: torch.Tensor) -> dict:
        env = env.reshape(-1)
        counts = torch.bincount(env, minlength=self.n_envs)
        n = int(counts[0])
        plan: dict = {"grouped": 0, "order": None}
        s_in, s_out = self.in_scale, self.out_scale   # (C,) or (E, C)
        if n > 0 and bool((counts == n).all()):
            order = torch.sort(env, stable=True).indices
            plan["grouped"] = n
            if not bool((order == torch.arange(order.numel(), device=order.device)).all()):
                inverse = torch.empty_like(order)
                inverse[order] = torch.arange(order.numel(), device=order.device)
                plan["order"], plan["inverse"] = order, inverse
            params = self.stacked()
            rows_in, rows_out = (s_in.repeat_interleave(n, 0), s_out.repeat_interleave(n, 0)) \
                if self.per_env_scales else (s_in, s_out)
        else:
            params = {k: v[env] for k, v in self.stacked().items()}
            if self.per_env_scales:
                s_in, s_out = s_in[env], s_out[env]
            rows_in, rows_out = s_in, s_out
        if self._linear_chain is not None:
            plan["layers"] = self._fold(params, s_in, s_out)
        else:
            plan["params"] = params
            plan["scales"] = (rows_in, rows_out)   # (C,) or one row per input row
        return plan

    def _fold(self, params: dict[str, torch.Tensor], s_in: torch.Tensor,
              s_out: torch.Tensor) -> list:
        """An MLP's layers as ``(Wᵀ, b)`` batched over environments (or rows), computed
        once per solve: transposed for ``baddbmm``, with the input scale folded into
        the first layer and the output scale into the last (fewer operations per
        evaluation, so a shorter graph to differentiate through)."""
        linear = [name for name, _ in self._linear_chain if name is not None]
        out = []
        for name, mod in self._linear_chain:
            if name is None:
                out.append(mod)
                continue
            W, b = params[name + ".weight"], params.get(name + ".bias")
            if b is None:
                b = W.new_zeros(W.shape[:2])
            if name == linear[0]:   # (C,) or (E, C): one input scale per column
                W = W / s_in.to(W.dtype).unsqueeze(-2)
            if name == linear[-1]:
                scale = s_out.to(W.dtype)
                W, b = W * scale.unsqueeze(-1), b * scale
            out.append((W.transpose(1, 2), b.unsqueeze(1)))
        return out

    def forward(self, x: torch.Tensor, env: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, *state)``; ``env`` ``(B,)`` (or the rows set by :meth:`at_rows`)."""
        plan = self._rows if env is None else self._plan(env)
        if plan is None:
            raise RuntimeError("StackedNetworks: no environment given for the rows")
        n = plan["grouped"]
        if plan["order"] is not None:
            x = x[plan["order"]]
        if "layers" in plan:
            # An MLP: each layer one batched matmul over the environments' weights.
            h = x.view(self.n_envs, n, -1) if n else x.unsqueeze(1)
            for layer in plan["layers"]:
                h = torch.baddbmm(layer[1], h, layer[0]) if isinstance(layer, tuple) \
                    else layer(h)
            out = h.reshape(x.shape[0], -1)
        else:
            s_in, s_out = plan["scales"]
            shape = (s_in.shape[0] if s_in.dim() == 2 else 1, -1) + (1,) * (x.dim() - 2)
            base = self.base[0]
            xs = x / s_in.view(shape)
            if n:  # (E·n, …) grouped by environment → (E, n, …): vmap over environments
                out = vmap(lambda p, xb: functional_call(base, p, (xb,)))(
                    plan["params"], xs.unflatten(0, (self.n_envs, n))).flatten(0, 1)
            else:
                out = vmap(lambda p, xb: functional_call(base, p, (xb.unsqueeze(0),)))(
                    plan["params"], xs).squeeze(1)
            out = out * s_out.view(shape)
        if plan["order"] is not None:
            out = out[plan["inverse"]]
        return out

    @torch.no_grad()
    def fit_scales(self, frames: torch.Tensor, dt: float, rate: bool = True,
                   env: torch.Tensor | None = None) -> None:
        """As :meth:`Scaled.fit_scales`: RMS of each channel and of its time derivative
        (``rate=False``: of the next state). With ``per_env_scales`` and ``env`` (each
        trajectory's environment), each environment's from its own trajectories (an
        environment without any keeps the RMS over all)."""
        if not self.fit_scales_to_data:  # `scale=false`: unit scales
            return
        every = fitted_scales(frames, dt, rate)
        if not self.per_env_scales or env is None:
            self.in_scale.copy_(every[0].to(self.in_scale.dtype))  # (broadcast over envs)
            self.out_scale.copy_(every[1].to(self.out_scale.dtype))
            return
        env_of = env.to(frames.device)
        for e in range(self.n_envs):
            rows = env_of == e
            s_in, s_out = fitted_scales(frames[rows], dt, rate) if bool(rows.any()) else every
            self.in_scale[e] = s_in.to(self.in_scale.dtype)
            self.out_scale[e] = s_out.to(self.out_scale.dtype)


class EnvironmentParameters(nn.Module):
    """Prior parameters with one learned value per environment (``learn alpha per
    environment from 0.5``), each an ``(E,)`` unconstrained tensor mapped into the
    parameter's bounds like a shared one (:func:`~physml.symbolic.compiler.to_constrained`).
    """

    def __init__(self, field: VectorField, starts: dict[str, float], n_envs: int):
        super().__init__()
        self.specs = {n: field.params_spec[n] for n in starts}
        self.scales = {n: param_scale(v, self.specs[n]) for n, v in starts.items()}
        dtype = torch.get_default_dtype()
        self.raw = nn.ParameterDict({n: nn.Parameter(torch.full(
            (n_envs,), to_unconstrained(v, self.specs[n], self.scales[n]), dtype=dtype))
            for n, v in starts.items()})

    def values(self) -> dict[str, torch.Tensor]:
        """Every environment's value of each parameter, ``(E,)``."""
        return {n: to_constrained(r, self.specs[n], self.scales[n]) for n, r in self.raw.items()}


class EnvironmentCode(nn.Module):
    """FT-NODE's network: an MLP whose every linear layer also receives the one-hot code
    of the row's environment (the baseline of thesis Table 3.14)."""

    def __init__(self, n: int, n_envs: int, hidden: int = 64, layers: int = 4,
                 activation: str = "swish", gain: float = 0.2, init: str = "orthogonal",
                 scale: bool = True, zero_last: bool = True):
        super().__init__()
        # the options of the spec's mlp(...), which it mirrors (nets.MLP)
        self.fit_scales_to_data = _flag("scale", scale)
        sizes = [n] + [hidden] * (layers - 1) + [n]
        self.layers = nn.ModuleList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            lin = nn.Linear(a + n_envs, b)
            init_linear(lin, init, gain)
            self.layers.append(lin)
        if _flag("zero_last", zero_last):
            nn.init.zeros_(self.layers[-1].weight)
        self.act = _activation(activation)()
        self.n_envs = n_envs
        self.register_buffer("in_scale", torch.ones(n))
        self.register_buffer("out_scale", torch.ones(n))
        self.per_env_scales = False   # one network: one pair of scales (fit_scales)
        self._code: torch.Tensor | None = None

    @contextmanager
    def at_rows(self, env: torch.Tensor):
        self._code = nn.functional.one_hot(env, self.n_envs).to(self.in_scale.dtype)
        try:
            yield self
        finally:
            self._code = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x / self.in_scale
        for i, lin in enumerate(self.layers):
            h = lin(torch.cat([h, self._code], dim=-1))
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h * self.out_scale

    fit_scales = StackedNetworks.fit_scales


class MultiEnvModel(HybridModel):
    """``F(t, X) + G_e(X)`` for environment ``e`` of each row (thesis Eq. 3.10), with the
    prior's per-environment parameters.

    Any part may be absent: no ``G_e`` (One-For-All), no shared ``F`` network, no prior
    (One-Per-Env has only ``G_e``), no networks at all (a purely physical model whose
    environments differ by their parameters).
    """

    def __init__(self, prior: nn.Module | None, augmentation: nn.Module | None,
                 per_env: StackedNetworks | EnvironmentCode | None,
                 env_params: EnvironmentParameters | None, n_envs: int,
                 env_names: tuple[str, ...] = (), two_phase: bool = False):
        nn.Module.__init__(self)
        if prior is None and augmentation is None and per_env is None:
            raise ValueError("a model needs a prior or a network")
        self.prior = prior
        self.augmentation = augmentation
        self.per_env = per_env
        self.env_params = env_params
        self.n_envs = n_envs
        self.env_names = tuple(env_names) or tuple(f"e{i + 1}" for i in range(n_envs))
        self.aug_inputs = bool(getattr(augmentation, "inputs", ()))
        self.aug_takes_time = bool(getattr(augmentation, "takes_time", False))
        self._env: torch.Tensor | None = None
        # GBML-like baseline: 0 while the shared network trains, 1 once each environment
        # fine-tunes its own copy (a buffer: saved, so a resumed run is in the same phase)
        self.two_phase = two_phase
        if two_phase:
            self.register_buffer("phase", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def start_fine_tuning(self) -> None:
        """Copy the shared network into every environment's network and use those from
        now on (the GBML-like baseline of Table 3.14: train One-For-All, then fine-tune a
        copy per environment)."""
        net, stacked = self.augmentation.net, self.per_env
        for name, value in net.state_dict().items():
            if name in stacked.names:
                stacked.weights[name.replace(".", "__")].copy_(value.expand_as(
                    stacked.weights[name.replace(".", "__")]))
        stacked.in_scale.copy_(self.augmentation.in_scale)
        stacked.out_scale.copy_(self.augmentation.out_scale)
        self.phase.fill_(1)

    @contextmanager
    def at_environments(self, env: torch.Tensor | None):
        """Row ``b`` of the states evaluated inside the block belongs to environment
        ``env[b]``: per-environment parameters and ``G_e`` weights are gathered once."""
        if env is None:
            if self.n_envs != 1:
                raise ValueError("a model over several environments needs each trajectory's "
                                 "environment (Batch.env)")
            env = torch.zeros((), dtype=torch.long)
        self._env = env
        try:
            if isinstance(self.prior, VectorField) and self.env_params is not None:
                self.prior.set_batch_params({k: v[env] for k, v in
                                             self.env_params.values().items()})
            if self.per_env is not None:
                with self.per_env.at_rows(env):
                    yield self
            else:
                yield self
        finally:
            self._env = None
            if isinstance(self.prior, VectorField):
                self.prior.set_batch_params(None)

    def row_order(self, env: torch.Tensor | None) -> torch.Tensor | None:
        """Rows grouped by environment (each G_e layer is then one bmm on contiguous
        rows, with no gather per evaluation); None when they already are."""
        if env is None or env.numel() < 2:
            return None
        order = torch.sort(env, stable=True).indices
        if bool((order == torch.arange(order.numel(), device=order.device)).all()):
            return None
        return order

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.two_phase:
            shared = self.prior(t, x) if self.prior is not None else None
            part = self.augmentation(x) if int(self.phase) == 0 else self.per_env(x)
            return part if shared is None else shared + part
        out = None
        if self.prior is not None or self.augmentation is not None:
            out = HybridModel.forward(self, t, x)
        if self.per_env is not None:
            g = self.per_env(x)
            out = g if out is None else out + g
        return out

    # -- what the objectives and reports need ----------------------------------------
    def env_norms(self, states: torch.Tensor, env: torch.Tensor, relative: bool
                  ) -> torch.Tensor:
        """``‖G_e‖²`` of each environment, ``(E,)``: the mean over its states of
        ``‖G_e(x)‖²`` (or ``(‖G_e(x)‖/‖x‖)²`` when ``relative``, thesis §3.4.3). Fields are
        summed over channels and averaged over grid points, as for APHYNITY."""
        if self.per_env is None:
            return states.new_zeros(self.n_envs)
        with self.per_env.at_rows(env):
            g = self.per_env(states)
        if g.dim() > 2:
            sq = g.pow(2).sum(dim=1).flatten(1).mean(dim=1)
            ref = states.pow(2).sum(dim=1).flatten(1).mean(dim=1)
        else:
            sq, ref = g.pow(2).sum(dim=1), states.pow(2).sum(dim=1)
        if relative:
            sq = sq / ref.clamp_min(1e-10)
        total = sq.new_zeros(self.n_envs).index_add(0, env, sq)
        count = sq.new_zeros(self.n_envs).index_add(0, env, torch.ones_like(sq))
        return total / count.clamp_min(1.0)

    def norm_terms(self, states, env, relative, times=None):
        """``env_norms``: ``‖G_e‖²`` of each environment (:meth:`env_norms`)."""
        return {"env_norms": self.env_norms(states, env, relative)}

    def augmentation_norm(self, states, relative, times=None):
        raise TypeError("a multi-environment model's norm is per environment: env_norms")

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Shared learned values by name; per-environment ones as ``name[env]``."""
        out = HybridModel.physical_parameters(self) if self.prior is not None else {}
        if self.env_params is not None:
            for name, values in self.env_params.values().items():
                for e, env in enumerate(self.env_names):
                    out[f"{name}[{env}]"] = values[e]
        return out

    def physical_raw_parameters(self) -> list[nn.Parameter]:
        out = HybridModel.physical_raw_parameters(self) if self.prior is not None else []
        return out + (list(self.env_params.raw.values()) if self.env_params is not None
                      else [])

    def fit_scales(self, frames: torch.Tensor, dt: float, rate: bool = True,
                   env: torch.Tensor | None = None) -> None:
        """The shared network's scales from every environment's data; the per-environment
        networks' from each environment's own where they keep one pair each."""
        HybridModel.fit_scales(self, frames, dt, rate)
        if self.per_env is not None:
            self.per_env.fit_scales(frames, dt, rate, env=env)


def _g_call(spec: Spec) -> Call:
    """The architecture of G_e: ``per_environment NET(...)``, else the ``augment`` one."""
    call = spec.per_environment or spec.augment
    if call is None or call.name == "none":
        if spec.system.domain is None:
            return Call("mlp", kwargs=(("hidden", 64), ("layers", 4), ("activation", "swish")))
        return Call("convnet", kwargs=(("channels", 64), ("layers", 4),
                                       ("activation", "swish"), ("norm", "none")))
    return call


def build_multi_env_model(spec: Spec, structure: str, n_envs: int | None = None
                          ) -> MultiEnvModel:
    """The model of a multi-environment method (``structure``):

    - ``leads``: shared prior and ``augment`` network, ``G_e`` per environment (the
      ``per_environment`` network; without that line, the ``augment`` architecture), and
      the ``per environment`` parameters; with neither network line nor ``per
      environment``... a prior with per-environment parameters only;
    - ``one_for_all``: one model for all (per-environment parameters shared);
    - ``one_per_env``: every learned parameter per environment, and the ``augment``
      network as ``G_e`` (nothing shared);
    - ``ft_node``: shared prior plus a network fed each row's one-hot environment code;
    - ``gbml``: shared prior, a shared network trained first, then one copy of it per
      environment fine-tuned (:meth:`MultiEnvModel.start_fine_tuning`).
    """
    n_envs = n_envs or max(1, len(spec.environments))
    names = tuple(e.name for e in spec.environments) if len(spec.environments) == n_envs \
        else ()
    system = spec.system
    shape = system.state_shape()
    prior, env_params = None, None
    if spec.prior is not None:
        if spec.prior.hamiltonian is not None:
            raise ValueError("a hamiltonian prior has no place in a multi-environment model "
                             "yet; write the prior's equations")
        learn = dict(spec.prior.learn)
        per = [] if structure == "one_for_all" else list(spec.prior.per_environment)
        if structure == "one_per_env":
            per = list(learn)
        shared = {k: v for k, v in learn.items() if k not in per}
        prior = compile_dynamics(spec, "prior", learn=shared, varying=per)
        if per:
            values = prior.param_values()
            starts = {n: learn[n] if learn[n] is not None else float(values[n]) for n in per}
            env_params = EnvironmentParameters(prior, starts, n_envs)
    has_aug = spec.augment is not None and spec.augment.name != "none"
    augmentation = None
    if has_aug and structure in ("leads", "one_for_all"):
        augmentation = build_model(spec, use_prior=False, use_network=True).augmentation
    per_env = None
    if structure == "leads" and (spec.per_environment is not None or has_aug):
        call = _g_call(spec)
        per_env = StackedNetworks(lambda: build_network(call, shape, system.domain), n_envs,
                                  shape[0])
    elif structure == "one_per_env" and (has_aug or prior is None):
        call = _g_call(spec)
        per_env = StackedNetworks(lambda: build_network(call, shape, system.domain), n_envs,
                                  shape[0], per_env_scales=True)
    elif structure == "ft_node":
        if system.domain is not None:
            raise ValueError("ft_node is written for ODE states (an MLP with the environment "
                             "code); use leads or one_per_env on a grid")
        opts = dict(spec.augment.options()) if has_aug and spec.augment.name == "mlp" else {}
        per_env = EnvironmentCode(shape[0], n_envs, **opts)
    if structure == "gbml":
        call = _g_call(spec)
        augmentation = Scaled(build_network(call, shape, system.domain), shape[0],
                              domain=system.domain)
        per_env = StackedNetworks(lambda: build_network(call, shape, system.domain), n_envs,
                                  shape[0])
        return MultiEnvModel(prior, augmentation, per_env, None, n_envs, names, two_phase=True)
    if structure == "one_for_all" and prior is None and augmentation is None:
        augmentation = Scaled(build_network(_g_call(spec), shape, system.domain), shape[0],
                              domain=system.domain)
    return MultiEnvModel(prior, augmentation, per_env, env_params, n_envs, names)


__all__ = ["StackedNetworks", "EnvironmentParameters", "EnvironmentCode", "MultiEnvModel",
           "build_multi_env_model"]
