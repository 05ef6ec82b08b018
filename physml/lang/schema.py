"""Which names the experiment blocks accept. Unknown ones are errors with a suggestion.

These tables are the language's contract with the simulation and training stages: the
stages read the same names, so a key accepted here is a key that does something.
"""
from __future__ import annotations

SPLITS = ("train", "val", "test")

#: ``train METHOD(kwargs)``: each method and the keyword arguments it takes.
METHODS: dict[str, tuple[str, ...]] = {
    "neural": (),
    "physics": (),
    "augmented": (),
    "aphynity": ("lambda0", "tau2", "niter", "adaptive", "norm"),
    "leads": ("lambda_inv", "spectral", "power_iters"),
    "partial": ("history",),
    "derivative": (),
}

#: ``train method(...) KEY VALUE …``: options after the method, with their types.
TRAIN_OPTIONS: dict[str, type] = {
    "epochs": int,
    "steps": int,
    "batch": int,
    "lr": float,
    "lr_phys": float,
    "tau1": float,
    "solver": str,
    "step": float,
    "rtol": float,
    "atol": float,
    "adjoint": bool,
    "seed": int,
    "patience": int,
    "val_every": int,
    "horizon": int,
    "curriculum": str,
    "teacher_forcing": float,
    "fit_initial": bool,
    "recompute": bool,
    "loss": str,
    "grad_clip": float,
    "minutes": float,
    "weight_decay": float,
    "compile": bool,
    "threads": int,
}

#: ``augment NAME(kwargs)`` / ``hamiltonian NAME(kwargs)`` / ``encoder NAME(kwargs)``.
NETWORKS: dict[str, tuple[str, ...]] = {
    "none": (),
    "mlp": ("hidden", "layers", "activation", "gain"),
    "convnet": ("channels", "layers", "kernel", "activation", "batchnorm"),
    "resnet": ("channels", "blocks", "kernel", "activation"),
    "fno": ("modes", "width", "layers"),
    "unet": ("channels", "levels"),
}

#: ``solver NAME(kwargs)`` in a ``data:`` block.
DATA_SOLVERS: dict[str, tuple[str, ...]] = {
    "dopri5": ("rtol", "atol", "step"),
    "dopri8": ("rtol", "atol", "step"),
    "rk4": ("step",),
    "euler": ("step",),
    "midpoint": ("step",),
    "spectral_cn": ("step",),
}
