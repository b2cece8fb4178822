"""Contrastive losses: InfoNCE, its global-batch and multi-positive forms.

* InfoNCE (Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018) with a
  MoCo queue of negatives (He et al., CVPR 2020) or the other keys of the batch: :func:`info_nce`.
* The symmetric loss with negatives from the whole global batch used by GDT and STiCA (Patrick et al.,
  ICCV 2021): :func:`global_nce`, :func:`symmetric_global_nce`.
* CoCLR's multi-instance NCE, -log of the softmax mass on all positives (Han et al., NeurIPS 2020):
  :func:`multi_positive_nce`, with :func:`drop_self_positive` for the official code's random drop.
* CACL's per-positive NCE, each positive scored against shared negatives: :func:`per_positive_nce`.

Embeddings are expected L2-normalised already (the projection heads do it); logits are cosine / T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum

from videozoo.distributed import all_gather_with_grad, concat_all_gather, get_rank

__all__ = [
    "drop_self_positive",
    "global_nce",
    "info_nce",
    "info_nce_logits",
    "multi_positive_nce",
    "per_positive_nce",
    "symmetric_global_nce",
]


def info_nce_logits(
    query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None, *, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets of InfoNCE; see :func:`info_nce`.

    With ``negatives`` (K, D): logits (B, 1+K), column 0 is the positive q·k (MoCo's layout, which
    CoCLR's positive masks index). Without: logits (B, B) = q·kᵀ, target i for row i.
    """
    if negatives is None:
        logits = query @ key.T  # (B, B)
        targets = torch.arange(query.shape[0], device=query.device)
    else:
        positive = einsum(query, key, "b d, b d -> b")[:, None]  # (B, 1)
        logits = torch.cat([positive, query @ negatives.T], dim=1)  # (B, 1+K)
        targets = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return logits / temperature, targets


def info_nce(
    query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None, *, temperature: float
) -> torch.Tensor:
    """InfoNCE: -log exp(q·k⁺/T) / Σ exp(q·k/T), mean over the B queries.

    ``query``, ``key``: (B, D), row i of ``key`` is the positive of row i of ``query``.
    ``negatives``: (K, D), e.g. a MoCo queue; if None, the other keys of the batch are the negatives.
    Gradient flows into whatever requires it; MoCo keys come from a momentum encoder under no_grad.
    A queue written in place before ``backward`` must be passed as a copy (``FeatureQueue`` writes out of place).
    """
    logits, targets = info_nce_logits(query, key, negatives, temperature=temperature)
    return F.cross_entropy(logits, targets)


def global_nce(query: torch.Tensor, key: torch.Tensor, *, temperature: float, detach_keys: bool = True) -> torch.Tensor:
    """InfoNCE of the local queries against the keys of the whole global batch (all ranks).

    ``query``, ``key``: (B, D) on each rank; row i of this rank's ``key`` is the positive of its row i,
    every other key of every rank is a negative. The loss is the mean over local rows, so with DDP's
    gradient averaging it equals the single-process loss on the global batch, value and gradient.

    ``detach_keys=True`` is what GDT/STiCA do (``gdt_loss`` in the official ``main_stica.py`` detaches the
    gathered keys, local ones included): gradient reaches the network only through the queries, and the
    symmetric form makes each modality a query once. ``detach_keys=False`` lets it flow through the keys
    too (SimCLR/CLIP style), using :func:`~videozoo.distributed.all_gather_with_grad`.
    """
    keys = concat_all_gather(key) if detach_keys else all_gather_with_grad(key)  # (W*B, D)
    logits = query @ keys.T / temperature  # (B, W*B)
    # this rank's keys sit at rows rank*B ... rank*B + B-1 of the gathered batch
    targets = torch.arange(query.shape[0], device=query.device) + get_rank() * query.shape[0]
    return F.cross_entropy(logits, targets)


def symmetric_global_nce(
    a: torch.Tensor, b: torch.Tensor, *, temperature: float, detach_keys: bool = True
) -> torch.Tensor:
    """½ (a→b + b→a) :func:`global_nce`: GDT/STiCA's audio-visual loss (T=0.1 there).

    ``a``, ``b``: (B, D), row i of ``a`` pairs with row i of ``b`` (e.g. video and audio of one clip).
    """
    return 0.5 * (
        global_nce(a, b, temperature=temperature, detach_keys=detach_keys)
        + global_nce(b, a, temperature=temperature, detach_keys=detach_keys)
    )


def multi_positive_nce(logits: torch.Tensor, positive_mask: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
    """CoCLR's multi-instance NCE: -log Σ_{j positive} softmax(logits)_j, mean over rows.

    ``logits``: (B, N), temperature already applied; ``positive_mask``: (B, N) bool. Every row needs at
    least one positive. Computed as logsumexp over positives minus logsumexp over all, which equals the
    official ``-log((softmax(logits) * mask).sum(1))`` without its underflow to log(0).
    ``validate=False`` skips checking that: the check reads the mask on the host, which waits for a GPU and
    breaks a compiled graph; for callers whose masks have a positive in every row by construction.
    """
    positive_mask = positive_mask.bool()
    if validate and not bool(positive_mask.any(dim=1).all()):
        raise ValueError("multi_positive_nce: every row of positive_mask needs at least one positive")
    positive = logits.masked_fill(~positive_mask, float("-inf")).logsumexp(dim=1)  # (B,)
    return (logits.logsumexp(dim=1) - positive).mean()


def drop_self_positive(
    positive_mask: torch.Tensor,
    *,
    p: float = 0.9,
    generator: torch.Generator | None = None,
    drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """With probability ``p``, drop the self-positive (column 0) of rows that have other positives.

    This is what the official CoCLR training loop does (``main_coclr.py``, the fix of issue #43): one
    coin flip per step, for the whole batch; when it comes up (p=0.9) every row with at least one
    positive besides its own key loses column 0, because after the InfoNCE stage the self-similarity is
    already high and dominates the loss. Rows whose only positive is their own key keep it: for them the
    loss stays plain InfoNCE. Returns a new mask; the input is not modified. ``generator`` (a CPU
    generator) makes the flip reproducible. ``drop`` (a 0-d bool tensor, e.g. on the GPU) is a coin flipped
    already: ``p`` and ``generator`` are then unused, and nothing is read back to the host.
    """
    positive_mask = positive_mask.bool()
    if drop is None:
        drop = torch.rand((), generator=generator) < p
    has_others = positive_mask[:, 1:].any(dim=1)  # (B,)
    mask = positive_mask.clone()
    mask[:, 0] &= ~(has_others & drop)  # a 0-d CPU coin works with a mask on any device
    return mask


def per_positive_nce(positive_logits: torch.Tensor, negative_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows and positives of -log exp(p) / (exp(p) + Σ_negatives exp(n)).

    ``positive_logits``: (B, P), ``negative_logits``: (B, K), temperature already applied. Each positive
    is a separate InfoNCE term against the same negatives; the positives do not compete with each other,
    unlike :func:`multi_positive_nce`. This is CACL's loss (``similarity_cross_entropy`` in the official
    ``train_pretrain.py``), its four positive pairs scored against the queue.
    """
    negatives = negative_logits.logsumexp(dim=1, keepdim=True)  # (B, 1)
    denominators = torch.logaddexp(positive_logits, negatives)  # (B, P)
    return (denominators - positive_logits).mean()
