"""MoCo's memory: a ring queue of keys and a momentum (EMA) copy of the encoder.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020; used for
video by CoCLR (Han et al., NeurIPS 2020) and CACL. Both keep everything in buffers so that a checkpoint
resumes with the same negatives.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from videozoo.distributed import concat_all_gather

__all__ = ["FeatureQueue", "MomentumEncoder"]


class FeatureQueue(nn.Module):
    """A first-in first-out queue of ``size`` feature vectors with optional integer fields per entry.

    ``extra`` maps field names to the value of an empty slot, e.g. ``{"vname": -1, "label": -1}`` for
    CoCLR's source-video ids; each field becomes a (size,) long buffer of that name, aligned with
    ``features`` (size, dim). The features start as random unit vectors, as in MoCo, so that the queue
    serves as negatives from the first step.

    Wrap-around: a batch of N entries goes to slots ``ptr, ptr+1, ...`` modulo ``size``, so a batch that
    runs past the end continues at slot 0, overwriting the oldest entries, and ``ptr`` moves on by N.
    ``size`` need not be a multiple of N (MoCo asserts it is); a batch larger than the queue leaves only
    its last ``size`` entries. Either way the queue always holds the ``size`` most recent entries.
    ``full`` turns true once ``size`` entries have been written (CoCLR starts mining then).
    """

    def __init__(self, *, size: int, dim: int, extra: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.size, self.dim = size, dim
        self.register_buffer("features", F.normalize(torch.randn(size, dim), dim=1))  # (K, D)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.long))  # saturates at size
        self.extra_names = tuple(extra or ())
        for name, empty in (extra or {}).items():
            if hasattr(self, name):
                raise ValueError(f"FeatureQueue: extra field name {name!r} is already an attribute")
            self.register_buffer(name, torch.full((size,), empty, dtype=torch.long))

    @property
    def full(self) -> bool:
        return int(self.num_filled) >= self.size

    def field(self, name: str) -> torch.Tensor:
        """The (size,) buffer of an extra field."""
        if name not in self.extra_names:
            raise KeyError(f"FeatureQueue has no field {name!r}; it has {self.extra_names}")
        return getattr(self, name)

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor, *, gather: bool = True, **fields: torch.Tensor) -> None:
        """Write a batch: ``features`` (N, D) and one (N,) tensor per extra field, all aligned.

        With ``gather`` (default) the batch is first concatenated over all ranks, as MoCo does, so every
        rank holds the same queue; in one process that is the identity. Writes replace the buffers with new
        tensors rather than writing into them, so a tensor read from the queue before the write (the
        negatives that ``backward`` still needs) keeps its values. In-place writes needed a ``.clone()`` at
        every read, and ``torch.compile`` removes such a clone of a buffer when it saves it for backward:
        the gradient then silently used the updated queue (``tests/test_training_loop.py``).
        """
        if set(fields) != set(self.extra_names):
            raise ValueError(f"FeatureQueue.enqueue needs exactly the fields {self.extra_names}, got {tuple(fields)}")
        if features.shape[1:] != (self.dim,):
            raise ValueError(f"FeatureQueue.enqueue: expected features (N, {self.dim}), got {tuple(features.shape)}")
        if gather:
            features = concat_all_gather(features)
            fields = {name: concat_all_gather(value) for name, value in fields.items()}
        n = features.shape[0]
        keep = min(n, self.size)
        # the last `keep` entries land at slots (ptr + n - keep), ..., (ptr + n - 1) modulo size
        slots = (self.ptr + (n - keep) + torch.arange(keep, device=self.ptr.device)) % self.size  # (keep,)
        self.features = self.features.index_copy(0, slots, features[n - keep :].to(self.features))
        for name, value in fields.items():
            buffer = getattr(self, name)
            setattr(self, name, buffer.index_copy(0, slots, value[n - keep :].to(buffer)))
        self.ptr.copy_((self.ptr + n) % self.size)
        self.num_filled.copy_((self.num_filled + n).clamp(max=self.size))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, extra={self.extra_names}"


class MomentumEncoder(nn.Module):
    """An exponential moving average of a network's parameters: MoCo's key encoder.

    Starts as a deep copy of ``online``; :meth:`update` then sets θ_k ← m·θ_k + (1−m)·θ_q for every
    parameter, with the momentum ``m`` passed in by the caller (methods own the schedule). Buffers are
    not averaged, as in MoCo: the copy's BatchNorm layers run in training mode on the (shuffled) key
    batch and keep their own running statistics. It never receives gradient; :meth:`forward` runs
    under ``no_grad``.
    """

    def __init__(self, online: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(online)
        self.encoder.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module, *, momentum: float) -> None:
        """θ_k ← momentum·θ_k + (1−momentum)·θ_q, for ``online`` the network this copy started from."""
        named_k, named_q = list(self.encoder.named_parameters()), list(online.named_parameters())
        if [(n, p.shape) for n, p in named_k] != [(n, p.shape) for n, p in named_q]:
            raise ValueError("MomentumEncoder.update: `online` does not have the parameters of the copied network")
        params_k, params_q = [p for _, p in named_k], [p.detach() for _, p in named_q]
        # one fused kernel per op for all parameters, as torch.optim does (hundreds of tensors on a GPU)
        torch._foreach_mul_(params_k, momentum)
        torch._foreach_add_(params_k, params_q, alpha=1.0 - momentum)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)
