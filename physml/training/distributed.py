"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --nproc_per_node=N -m physml train SPEC`` starts N processes with the usual
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``…). Each process
builds the same model from the same seed, takes its share of every global batch, and DDP
averages the gradients. Decisions that must agree across processes — the loss reported to
APHYNITY's λ update, whether a step produced NaN/inf or blew up — are all-reduced, so
ranks never diverge or wait on each other. Only rank 0 writes files.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Distributed:
    """The process group of this run (a single process when not under torchrun)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.owns_group = False
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            self.owns_group = True
        if dist.is_initialized():
            self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.device = device

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP around the rollout module (the identity in a single process)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (every ``world``-th, starting at ``rank``)."""
        return rows[self.rank::self.world] if self.active else rows

    def mean(self, value: float) -> float:
        """The mean over processes of a float (the same float in a single process)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t) / self.world

    def all_ok(self, ok: bool) -> bool:
        """True only where every process says True."""
        if not self.active:
            return ok
        t = torch.tensor([1 if ok else 0], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(int(t))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's value of a flag (a Ctrl-C seen by one process stops them all)."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(int(t))

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
