"""Rank helpers of logdistill.model.engine.distributed that need no process group: the per-rank batches
together are the global batches, the environment is read strictly, and no env means no DDP."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from logdistill.model.engine.distributed import Parallel, from_env, launched  # noqa: E402

pytestmark = pytest.mark.torch


def _rank(rank: int, world: int) -> Parallel:
    return Parallel(rank=rank, world_size=world, local_rank=0, backend="gloo", timeout_s=60)


@pytest.mark.parametrize("n,batch,world", [(100, 32, 2), (101, 32, 2), (97, 30, 3), (10, 4, 4)])
def test_rank_batches_together_are_each_global_batch_of_one_permutation(n, batch, world):
    import torch
    from torch.utils.data import DistributedSampler

    ranks = [list(_rank(r, world).epoch_batches(n, batch, seed=13, epoch=2)) for r in range(world)]
    steps = _rank(0, world).steps_per_epoch(n, batch)
    assert all(len(batches) == steps for batches in ranks)  # every rank takes the same number of steps
    # The global order: DistributedSampler's permutation for (seed, epoch), padded to equal shares.
    reference = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=13)
    reference.set_epoch(2)
    order = list(iter(reference))
    per_rank = -(-batch // world)
    total = -(-n // world) * world
    padded = (order + order)[:total]
    for step in range(steps):
        together = sorted(torch.cat([ranks[r][step] for r in range(world)]).tolist())
        assert together == sorted(padded[step * per_rank * world:(step + 1) * per_rank * world])
    seen = torch.cat([b for batches in ranks for b in batches]).tolist()
    assert set(seen) == set(range(n))  # every row each epoch; at most world-1 padded repeats
    assert len(seen) - n < world


def test_epochs_are_reshuffled_and_reproducible():
    one = _rank(0, 2)
    first = [b.tolist() for b in one.epoch_batches(50, 8, seed=1, epoch=1)]
    assert first == [b.tolist() for b in one.epoch_batches(50, 8, seed=1, epoch=1)]
    assert first != [b.tolist() for b in one.epoch_batches(50, 8, seed=1, epoch=2)]


def test_without_torchrun_environment_nothing_is_initialised():
    assert not launched({})
    assert from_env({"PATH": "/bin"}) is None


def test_a_bad_torchrun_environment_is_a_clear_error():
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        from_env({"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    with pytest.raises(ValueError, match="RANK=2 is outside WORLD_SIZE=2"):
        from_env({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    with pytest.raises(ValueError, match="MASTER_ADDR is required"):
        from_env({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"})
