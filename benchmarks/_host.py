"""What the benchmarks record of the machine beside their timings."""
from __future__ import annotations

import os
import platform

import torch


def host() -> dict:
    """Threads, the 1-minute load average (timings on a shared machine need it), the CPU
    and the torch version."""
    return {
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
