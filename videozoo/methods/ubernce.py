"""UberNCE: InfoNCE whose positives are the queue entries of the same class, CoCLR's supervised upper bound.

Paper:
    Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning (CoCLR). NeurIPS 2020,
    Sec. 4 ("UberNCE"): with the labels as an oracle for "which other clips are positives", it bounds what
    positive mining (CoCLR) can reach. Built on MoCo (He et al., CVPR 2020).

As the official code (``UberNCE`` in ``model/pretrain.py``, the loss in ``main_nce.py``): the queue stores the
class label of each key; a query's positives are its own key and every queue entry of its class; the loss is the
mean over positives of ``-log softmax`` (each positive scored against all entries, positives included). CoCLR's
multi-instance form ``-log Σ_positives softmax`` is available as ``loss="multi"``.

Parameter names as :mod:`.infonce`, plus ``queue_label (K,)`` → ``queue.label``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from videozoo.losses import multi_positive_nce
from videozoo.methods.infonce import InfoNCE

__all__ = ["UberNCE", "mean_positive_nce"]


def mean_positive_nce(logits: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
    """-(1/|P_i|) Σ_{j ∈ P_i} log softmax(logits_i)_j, mean over rows i (official UberNCE loss, main_nce.py).

    ``logits`` (B, N), temperature applied; ``positive_mask`` (B, N) bool, at least one positive per row.
    """
    positive_mask = positive_mask.bool()
    if not bool(positive_mask.any(dim=1).all()):
        raise ValueError("mean_positive_nce: every row of positive_mask needs at least one positive")
    log_prob = logits.log_softmax(dim=1)  # (B, N)
    per_row = torch.where(positive_mask, log_prob, 0.0).sum(dim=1) / positive_mask.sum(dim=1)  # (B,)
    return -per_row.mean()


class UberNCE(InfoNCE):
    """Supervised InfoNCE with label positives (CoCLR's upper bound), for any backbone.

    Batch: ``{input_key: (B, 2, C, T, H, W), label_key: (B,) long}``; labels must be known (>= 0).

    Args:
        loss: ``"mean"`` (official: mean over positives of -log softmax) or ``"multi"`` (-log Σ softmax).
        label_key: the batch entry with the class labels.
        the rest: as :class:`InfoNCE`.
    """

    queue_fields: ClassVar[Mapping[str, int]] = {"label": -1}

    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: nn.Module | None = None,
        dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 2048,
        temperature: float = 0.07,
        input_key: str = "video",
        label_key: str = "label",
        loss: Literal["mean", "multi"] = "mean",
    ) -> None:
        super().__init__(
            backbone=backbone,
            head=head,
            dim=dim,
            hidden_dim=hidden_dim,
            queue_size=queue_size,
            temperature=temperature,
            input_key=input_key,
        )
        if loss not in ("mean", "multi"):
            raise ValueError(f"UberNCE loss must be 'mean' or 'multi', got {loss!r}")
        self.label_key, self.loss_kind = label_key, loss

    def positive_mask(self, label: torch.Tensor) -> torch.Tensor:
        """(B, 1+K) bool: the own key, and every queue entry of the query's class (empty slots hold -1)."""
        same_class = label[:, None] == self.queue.field("label")[None, :]  # (B, K)
        return torch.cat([torch.ones_like(same_class[:, :1]), same_class], dim=1)

    def forward(self, batch: dict[str, Any], *, momentum: float = 0.999) -> dict[str, Any]:
        q, k = self.query_and_key(batch[self.input_key], momentum=momentum)  # (B, dim) each
        label = torch.as_tensor(batch[self.label_key], device=q.device).long()  # (B,)
        if bool((label < 0).any()):
            raise ValueError("UberNCE needs a class label (>= 0) for every sample")
        logits = self.logits(q, k)  # (B, 1+K)
        mask = self.positive_mask(label)
        loss = mean_positive_nce(logits, mask) if self.loss_kind == "mean" else multi_positive_nce(logits, mask)
        best = logits.argmax(dim=1)
        logs = {
            "loss": loss.detach(),
            "top1": mask.gather(1, best[:, None]).float().mean(),
            "positives": mask[:, 1:].sum(dim=1).float().mean(),
            **self._queue_logs(),
        }
        self.enqueue(k, label=label)
        return {"loss": loss, "logs": logs}
