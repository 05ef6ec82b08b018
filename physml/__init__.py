"""physml: learn dynamical systems from data with neural networks and physics together.

    >>> import physml
    >>> spec = physml.load_spec("equations/damped_pendulum.phy")
    >>> F = physml.compile_dynamics(spec)
"""
from .errors import SpecError
from .lang import load_spec, parse_spec
from .symbolic import compile_dynamics, register_function

__version__ = "0.1.0"

__all__ = ["SpecError", "load_spec", "parse_spec", "compile_dynamics", "register_function",
           "__version__"]
from .simulate import simulate  # noqa: E402
from .data import load_dataset  # noqa: E402

__all__ += ["simulate", "load_dataset"]
