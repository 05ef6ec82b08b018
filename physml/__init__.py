"""physml: learn dynamical systems from data with neural networks and physics together.

    >>> import physml
    >>> spec = physml.load_spec("equations/damped_pendulum.phy")
    >>> F = physml.compile_dynamics(spec)
"""
from ._version import __version__  # noqa: E402

from .errors import SpecError  # noqa: E402
from .symbolic import compile_dynamics, register_function  # noqa: E402
from .data import load_dataset  # noqa: E402
from .experiment import (Run, check, evaluate, inspect, load_spec, parse_spec,  # noqa: E402
                         simulate, train)

__all__ = ["SpecError", "load_spec", "parse_spec", "check", "compile_dynamics",
           "register_function", "simulate", "load_dataset", "train", "Run", "evaluate",
           "inspect", "__version__"]
