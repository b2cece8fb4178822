"""Determinism for exact resume: seeds derived from (seed, epoch, index), RNG snapshots, the epoch's batches.

An uninterrupted run and one killed and resumed mid-epoch must see the same batches with the same
augmentations, whatever the number of DataLoader workers. Three pieces make that true:

* :func:`epoch_batches` - the epoch's order is a permutation seeded by ``(seed, epoch)``, cut into
  global batches and sharded by rank, so resuming is slicing a list (never replaying a loader);
* :class:`SeededDataset` - every sample is drawn with python/numpy/torch RNGs seeded from
  ``(seed, epoch, index)``, so an augmentation does not depend on which worker ran it or when;
* :func:`rng_state` / :func:`set_rng_state` - the main process's RNGs (dropout, shuffles, sampling in
  the method) go into the checkpoint as tensors and plain numbers (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["SeededDataset", "derive_seed", "epoch_batches", "rng_state", "seed_everything", "seeded", "set_rng_state"]

# Domain tags keep the seed streams apart: (seed, ORDER, epoch) never equals (seed, SAMPLE, epoch, i).
ORDER, SAMPLE, PROCESS = 0, 1, 2


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with python/numpy/torch-CPU RNGs seeded from ``seed``, then put the old states back.

    Restoring matters with ``num_workers=0``: samples are then drawn in the main process, and the
    method's RNG stream (dropout) must not depend on how the data was loaded. CUDA RNGs are left alone.
    """
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would reseed the GPUs too
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)


class SeededDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset so that sample ``i`` of epoch ``e`` is always drawn the same way.

    ``data[(e, i)]`` runs ``dataset[i]`` under :func:`seeded` with a seed from ``(seed, e, i)``. Datasets that
    draw their randomness from python, numpy's global RNG or torch's default generator (videozoo's do) then
    give the same clip, crop and colour jitter in any worker, in any order, before and after a resume.
    The trainer's batch sampler yields such ``(epoch, index)`` keys, so its persistent workers need no epoch
    attribute; a plain ``data[i]`` uses the epoch last given to :meth:`set_epoch`.
    """

    def __init__(self, dataset: Any, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        with seeded(derive_seed(self.seed, SAMPLE, epoch, index)):
            return self.dataset[index]


def epoch_batches(
    num_samples: int, *, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[list[int]]:
    """This rank's batches of one epoch: lists of ``batch_size`` sample indices.

    A permutation seeded by ``(seed, epoch)`` is cut into global batches of ``batch_size * world_size``
    (the incomplete last one is dropped: every rank must run the same number of equally shaped steps);
    rank ``r`` takes the ``r``-th contiguous block of each. Concatenating the ranks' batches in rank order
    (what ``all_gather`` does) therefore gives exactly the global batch one process would see, so a run on
    N processes computes the same steps as one process with an N times larger batch.
    """
    global_batch = batch_size * world_size
    steps = num_samples // global_batch
    generator = torch.Generator().manual_seed(derive_seed(seed, ORDER, epoch))
    order = torch.randperm(num_samples, generator=generator)[: steps * global_batch]
    return order.view(steps, world_size, batch_size)[:, rank].tolist()


# -- RNG snapshots as tensors and plain numbers (weights_only-loadable) ------------------------------
def rng_state() -> dict[str, Any]:
    """The main process's python, numpy, torch-CPU and (if initialised) CUDA RNG states."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        ("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
