"""Reports on trained runs: test metrics, identified equations, plots.

:mod:`.symbolic` (printing equations) needs only SymPy; the rest needs torch and is
imported on first use, so ``physml check`` of a system file loads no torch.
"""
_LAZY = {"evaluate": ".report", "inspect": ".report", "write_report": ".report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["evaluate", "inspect", "write_report"]
