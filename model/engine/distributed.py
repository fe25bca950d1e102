"""torch.distributed for ``logdistill distill`` under ``torchrun``: setup, batches, rank-0 decisions.

Without the torchrun environment (``RANK``/``WORLD_SIZE``) nothing here is active and training is
the single-process loop of :mod:`logdistill.model.engine.train`, unchanged.

Under torchrun every rank builds the same transfer set and student (same seed), the student is
wrapped in ``DistributedDataParallel`` (gloo on CPU, nccl when CUDA is available), and each epoch's
rows come from a :class:`torch.utils.data.DistributedSampler` seeded with ``seed`` and
``set_epoch(epoch)``. Rank ``r`` takes positions ``r, r+W, ...`` of the sampler's permutation, so
the k-th per-rank batches of all ranks together are exactly the k-th global batch of
``training.batchSize`` rows: the per-rank batch is ``ceil(batchSize / W)``. DDP averages the
gradients, so a step sees the same rows as a one-process step over that permutation.

Rank 0 alone scores the dev set; the score is broadcast, so every rank takes the same
early-stopping decision. A lost worker surfaces as a failed collective (gloo: the peer's
connection closes at once; otherwise the process-group timeout, ``LOGDISTILL_DIST_TIMEOUT_S``,
default 1800 s): :class:`WorkerLost` names the rank and the operation.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator

__all__ = ["Parallel", "WorkerLost", "from_env", "launched", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 1800.0
"""Collective timeout: long enough for rank 0's dev evaluation between epochs, short enough that a
hung peer fails the Job within the half hour rather than at activeDeadlineSeconds."""


class WorkerLost(RuntimeError):
    """A collective failed: a peer died or stopped answering within the timeout."""


def launched(environ: dict[str, str] | None = None) -> bool:
    """True when torchrun (or an equivalent launcher) set ``RANK`` and ``WORLD_SIZE``."""
    env = os.environ if environ is None else environ
    return "RANK" in env and "WORLD_SIZE" in env


def _int_env(env: dict[str, str], name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise ValueError(f"environment variable {name}={env.get(name)!r} is not an integer") from None


@dataclass
class Parallel:
    """One process of a distributed run; ``world_size == 1`` under torchrun still uses DDP."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    timeout_s: float

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return (f"rank {self.rank}/{self.world_size} (local {self.local_rank}), backend {self.backend},"
                f" collective timeout {self.timeout_s:.0f}s")

    # -- training hooks (called by logdistill.model.engine.train.fit) --------------------------------------
    def wrap(self, model: Any) -> Any:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self.backend == "nccl":
            device = torch.device("cuda", self.local_rank)
            model.to(device)
            return DistributedDataParallel(model, device_ids=[self.local_rank])
        return DistributedDataParallel(model)

    @property
    def device(self) -> Any:
        import torch

        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def to_device(self, value: Any) -> Any:
        """A tensor, or a dict of tensors, on this rank's device (a no-op on CPU)."""
        if value is None or self.backend != "nccl":
            return value
        if isinstance(value, dict):
            return {key: tensor.to(self.device) for key, tensor in value.items()}
        return value.to(self.device)

    def rank_batch_size(self, batch_size: int) -> int:
        return max(1, math.ceil(batch_size / self.world_size))

    def steps_per_epoch(self, n: int, batch_size: int) -> int:
        per_rank_rows = math.ceil(n / self.world_size)  # the sampler pads to equal shares
        return max(1, math.ceil(per_rank_rows / self.rank_batch_size(batch_size)))

    def epoch_batches(self, n: int, batch_size: int, seed: int, epoch: int) -> Iterator[Any]:
        """This rank's row indices (int64 tensors), one per step of ``epoch`` (1-based)."""
        import torch
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                     seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        rows = torch.tensor(list(iter(sampler)), dtype=torch.long)
        size = self.rank_batch_size(batch_size)
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    def from_main(self, compute: Callable[[], float], what: str) -> float:
        """``compute()`` on rank 0 only, its value broadcast to every rank."""
        import torch

        # nccl broadcasts device tensors only; gloo takes CPU ones.
        value = torch.tensor([float(compute()) if self.is_main else 0.0], dtype=torch.float64, device=self.device)
        self._collective(lambda: _dist().broadcast(value, src=0), what)
        return float(value.item())

    def _collective(self, call: Callable[[], Any], what: str) -> None:
        try:
            call()
        except Exception as err:  # gloo raises RuntimeError/DistBackendError, with or without a timeout
            raise WorkerLost(
                f"distributed training: {what} failed on rank {self.rank} of {self.world_size}"
                f" (a worker was lost or did not answer within {self.timeout_s:.0f}s): {err}") from err

    def close(self) -> None:
        dist = _dist()
        if dist.is_initialized():
            dist.destroy_process_group()


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def from_env(environ: dict[str, str] | None = None, *, stream: Any = sys.stderr) -> Parallel | None:
    """Initialise the default process group from the torchrun environment; None when not launched."""
    env = dict(os.environ if environ is None else environ)
    if not launched(env):
        return None
    import torch

    rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
    local_rank = int(env.get("LOCAL_RANK", "0") or 0)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise ValueError(f"environment variable {name} is required when RANK/WORLD_SIZE are set")
    timeout_s = float(env.get("LOGDISTILL_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    parallel = Parallel(rank, world, local_rank, backend, timeout_s)
    try:
        _dist().init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                   timeout=timedelta(seconds=timeout_s))
    except Exception as err:
        raise WorkerLost(f"distributed training: rendezvous at {env['MASTER_ADDR']}:{env['MASTER_PORT']} failed"
                         f" on rank {rank} of {world}: {err}") from err
    if stream is not None:
        print(f"[logdistill] distributed: {parallel.describe()}", file=stream, flush=True)
    return parallel
