"""Reports on trained runs: test metrics, identified equations, plots."""
from .report import evaluate, inspect, write_report

__all__ = ["evaluate", "inspect", "write_report"]
