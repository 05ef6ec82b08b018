"""physml: learn dynamical systems from data with neural networks and physics together.

    >>> import physml
    >>> spec = physml.load_spec("equations/damped_pendulum.phy")
    >>> F = physml.compile_dynamics(spec)
"""
__version__ = "0.1.0"

from .errors import SpecError  # noqa: E402
from .lang import load_spec, parse_spec  # noqa: E402
from .symbolic import compile_dynamics, register_function  # noqa: E402
from .simulation import simulate  # noqa: E402
from .data import load_dataset  # noqa: E402
from .training import Run, train  # noqa: E402
from .reporting import evaluate, inspect  # noqa: E402

__all__ = ["SpecError", "load_spec", "parse_spec", "compile_dynamics", "register_function",
           "simulate", "load_dataset", "train", "Run", "evaluate", "inspect", "__version__"]
