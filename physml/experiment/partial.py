"""Partial observation in an experiment: which channels are measured, the encoder, and a
check that every forecast has an initial state to start from (thesis ch. 2)."""
from __future__ import annotations

from ..errors import OptionError
from ..models.encoders import build_encoder
from ..symbolic.spec import Spec
from ..training.config import TrainConfig


def observed_channels(spec: Spec) -> list[int] | None:
    """The state channels ``observe`` lists, in the state's order (None: all observed)."""
    return spec.observed_channels()


def readout_of(spec: Spec):
    """``H`` of linear observations (``observe u + v``) as a tensor, else None."""
    if spec.observe_matrix is None:
        return None
    import torch

    return torch.tensor(spec.observe_matrix, dtype=torch.get_default_dtype())


def _encoder_channels(spec: Spec) -> tuple[list[int], bool]:
    """The input channels of an encoder (of the frames Trajectories hold) and whether they
    are measured quantities rather than state channels."""
    if spec.observe_matrix is not None:
        return list(range(len(spec.observe_matrix))), True
    chans = observed_channels(spec)
    return (chans if chans is not None else list(range(spec.system.state_shape()[0]))), False


def encoder_frames(spec: Spec) -> int:
    """``K``: the frames an encoder sees, the data's ``history`` past frames and ``t0``."""
    return (spec.data.history if spec.data is not None else 0) + 1


def attach_observation(rollout, spec: Spec, cfg: TrainConfig) -> None:
    """Set up the rollout for the spec's observation, encoder and the chapter's training
    details (``substeps``, ``scheduled_sampling``); ValueError for what cannot run."""
    observed = observed_channels(spec)
    if cfg.teacher_forcing is not None and (spec.hidden_variables() or
                                            readout_of(spec) is not None):
        # Teacher forcing restarts a forecast from a measured state; a frame with hidden
        # variables (or linear observations) never gives one, so it would never restart.
        raise ValueError("training option `teacher_forcing` restarts forecasts from fully "
                         "measured frames, and with hidden variables (`observe`) no frame is "
                         "one; use `scheduled_sampling K`, which resets the measured "
                         "channels only")
    encoder = None
    if spec.encoder is not None:
        n = spec.system.state_shape()[0]
        chans, measured = _encoder_channels(spec)
        encoder = build_encoder(spec.encoder, chans, n, encoder_frames(spec),
                                spec.system.domain, measured=measured)
    given = [spec.system.variables.index(v) for v in spec.encoder_given]
    rollout.observe(observed, encoder, substeps=cfg.substeps,
                    scheduled_sampling=cfg.scheduled_sampling, readout=readout_of(spec),
                    given=given)


def check_initial_states(spec: Spec, cfg: TrainConfig, data) -> None:
    """Without an encoder, forecasts start from the data's initial states (Setting 2):
    a hidden variable needs its value at ``t0`` in the data, or ``fit_initial`` (training
    trajectories only) must estimate it. ValueError saying what to add otherwise."""
    hidden = spec.encoder_given if spec.encoder is not None else spec.hidden_variables()
    if not hidden:
        return
    variables = spec.system.variables
    for name, traj in (("train", data.train), ("validation", data.val)):
        if traj is None or len(traj) == 0:
            continue
        known = traj.x0_known.flatten(2).all(dim=2).all(dim=0) if traj.x0_known.dim() > 2 \
            else traj.x0_known.all(dim=0)
        missing = [v for i, v in enumerate(variables) if v in hidden and not bool(known[i])]
        at = "at t0" if traj.whole is traj else "at the first frame of every window " \
            "(`windows all`)"
        if missing and spec.encoder is not None:
            raise ValueError(f"`encoder ... given {', '.join(missing)}`: the {name} data hold "
                             "no value at t0 for it; give the initial values in the data "
                             "file (NaN after t0), or drop it from `given`")
        if missing and not (cfg.fit_initial and name == "train"):
            raise ValueError(
                f"the hidden variable{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(m) for m in missing)} {'have' if len(missing) > 1 else 'has'} "
                f"no value {at} in the {name} data, so forecasts have no initial state; "
                "estimate it from the observed frames with `encoder mlp(...)` (ODE) or "
                "`encoder unet(...)` (grid), or give the initial values in the data file "
                "(the hidden variable's array, NaN after t0)")


def check_encoder(spec: Spec) -> None:
    """The spec's encoder builds for its system: else an error at the ``encoder`` line
    (``unet`` on ODE states, a grid ``depth`` halves too often, a bad option value)."""
    if spec.encoder is None:
        return
    n = spec.system.state_shape()[0]
    chans, measured = _encoder_channels(spec)
    try:
        build_encoder(spec.encoder, chans, n, encoder_frames(spec), spec.system.domain,
                      measured=measured)
    except (ValueError, TypeError) as exc:
        raise OptionError(f"`encoder {spec.encoder.name}`: {exc}", spec.encoder.pos, spec.text,
                          length=len(spec.encoder.name)) from None
