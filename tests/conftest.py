"""Shared fixtures."""
import pytest
import torch


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def one_thread():
    """Small tensors: one intra-op thread avoids contention on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _physml_limits_env(monkeypatch):
    """`--memory-budget` / `--allow-path` set PHYSML_* variables for the CLI process; tests
    invoke the CLI in-process, so each test starts from (and restores) the same values."""
    for name in ("PHYSML_MEMORY_BUDGET", "PHYSML_USE_PATH"):
        monkeypatch.delenv(name, raising=False)
    yield
