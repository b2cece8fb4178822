"""torch.distributed helpers shared by every method; each is a cheap identity in one process.

The methods are written once for the multi-GPU case (``torchrun``) and run unchanged on one GPU or CPU:

* :func:`init_from_env` starts the process group from torchrun's environment, or does nothing;
* :func:`all_gather_with_grad` concatenates a tensor from every rank with gradients flowing back to
  the rank that produced each slice (global-batch negatives, GDT/STiCA: Patrick et al., ICCV 2021);
* :func:`concat_all_gather` does the same without gradient (MoCo keys for the queue: He et al., CVPR 2020);
* :func:`batch_shuffle` / :func:`batch_unshuffle` implement MoCo's shuffle-BN;
* :func:`convert_sync_batchnorm` swaps BatchNorm for SyncBatchNorm when there is more than one rank.

Every collective assumes that all ranks pass tensors of the same shape (use ``drop_last=True``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistEnv",
    "all_gather_with_grad",
    "all_reduce_mean",
    "batch_shuffle",
    "batch_unshuffle",
    "concat_all_gather",
    "convert_sync_batchnorm",
    "get_rank",
    "get_world_size",
    "init_from_env",
    "is_distributed",
    "is_main_process",
]


# -- who am I ---------------------------------------------------------------------------------------
def is_distributed() -> bool:
    """True when a process group is initialised (even one of size 1)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


@dataclass(frozen=True)
class DistEnv:
    """What :func:`init_from_env` found: this process's place and the device it should use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_from_env(backend: str | None = None, *, timeout: timedelta | None = None) -> DistEnv:
    """Initialise the default process group from torchrun's variables, if there are any.

    torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; without
    ``WORLD_SIZE`` this is a plain single-process run and nothing is initialised. ``backend`` defaults to
    NCCL when CUDA is available (each process then takes GPU ``LOCAL_RANK``) and gloo otherwise.
    Calling it again once a group exists only reports the environment.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if "WORLD_SIZE" not in os.environ:
        return DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    if cuda:
        torch.cuda.set_device(device)  # before NCCL's first collective, or every rank lands on GPU 0
    if not is_distributed():
        kwargs = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"), init_method="env://", **kwargs)
    return DistEnv(rank=get_rank(), world_size=get_world_size(), local_rank=local_rank, device=device)


# -- gathering --------------------------------------------------------------------------------------
def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from all ranks in rank order -> (world_size * B, ...), with gradient.

    The backward pass sums, over ranks, the gradient each rank's loss sends to a slice and returns it
    to the rank that owns the slice. With DDP averaging gradients afterwards, a loss averaged over the
    local batch then gets exactly the gradient of the same loss computed on the global batch in one process.
    """
    if get_world_size() == 1:
        return x
    # torch's autograd all_gather (reduce-scatter in backward on NCCL, all-to-all + sum on gloo);
    # imported here because torch.distributed.nn also loads the RPC modules, which one process never needs
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from all ranks in rank order -> (world_size * B, ...), no gradient.

    Detached in one process too, so that a single-GPU run trains the same function as a multi-GPU one.
    """
    if get_world_size() == 1:
        return x.detach()
    gathered = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(gathered, x.contiguous())
    return torch.cat(gathered, dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a detached copy), for logging numbers every rank agrees on."""
    x = x.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(x)
        x /= get_world_size()
    return x


# -- MoCo shuffle-BN --------------------------------------------------------------------------------
@torch.no_grad()
def batch_shuffle(x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle the global batch across ranks; return this rank's share and the index that undoes it.

    MoCo's shuffle-BN (He et al., CVPR 2020): the key encoder's BatchNorm then computes statistics over
    a different subset of samples than the query encoder's, so the query cannot find its key through
    the batch statistics ("cheating" through BN). Rank 0 draws the permutation and broadcasts it.

    In one process this is a permutation within the batch. Batch statistics do not depend on the order,
    so it changes nothing beyond rounding; it is kept so that one code path serves both cases. Without a
    ``generator`` the permutation is drawn on the batch's device (its RNG, checkpointed by the trainer).
    Returns ``(x_shuffled, idx_unshuffle)``: ``x_shuffled`` (B, ...), ``idx_unshuffle`` (world_size * B,).
    """
    x_all = concat_all_gather(x)  # (W*B, ...)
    n = x_all.shape[0]
    # drawn where the batch is: a CPU permutation copied to the GPU would wait for the device at every step
    device = x.device if generator is None else generator.device
    idx_shuffle = torch.randperm(n, generator=generator, device=device).to(x.device, non_blocking=True)
    if get_world_size() > 1:
        dist.broadcast(idx_shuffle, src=0)  # every rank must agree on one permutation
    idx_unshuffle = torch.argsort(idx_shuffle)
    return x_all[_this_rank(idx_shuffle)], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Undo :func:`batch_shuffle`: rows of ``x`` (B, ...) go back to the rank and place they came from."""
    return concat_all_gather(x)[_this_rank(idx_unshuffle)]


def _this_rank(idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global index (W*B,) -> (B,)."""
    return idx.view(get_world_size(), -1)[get_rank()]


# -- SyncBN -----------------------------------------------------------------------------------------
def convert_sync_batchnorm(model: nn.Module, *, process_group: dist.ProcessGroup | None = None) -> nn.Module:
    """Replace BatchNorm layers by SyncBatchNorm when training on more than one rank.

    GDT/STiCA train with SyncBN (Patrick et al., ICCV 2021). In one process it returns ``model`` as is:
    PyTorch's SyncBatchNorm raises on CPU input as soon as a process group exists, and synchronising a
    single rank is pointless. For the same reason a multi-process run without an accelerator (gloo on
    CPU, as in the tests) keeps plain BatchNorm, with a warning.
    """
    if get_world_size() == 1:
        return model
    if not torch.cuda.is_available():
        warnings.warn("SyncBatchNorm needs a GPU; keeping per-process BatchNorm on CPU", stacklevel=2)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=process_group)
