"""InfoNCE on video: MoCo with CoCLR's projection head, the first stage of CoCLR.

Papers:
    He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning (MoCo). CVPR 2020.
    Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning (CoCLR). NeurIPS 2020.

Two clips of one video (two augmented views) make a positive pair; the negatives are the keys of earlier batches
kept in a queue. The query goes through the online encoder (backbone → :class:`~videozoo.heads.CoCLRHead`), the
key through its momentum copy with shuffle-BN, and the loss is cross-entropy over ``[q·k⁺, q·queue]/T``. CoCLR
trains one such network per modality (RGB, flow) before co-training them (:mod:`videozoo.methods.coclr`).

Parameter names against the official ``model/pretrain.py`` (TengdaHan/CoCLR), for converters:

    official                          videozoo
    encoder_q.0.*                     encoder_q.backbone.*        (S3D: the named copy, not block1..5)
    encoder_q.2.{weight,bias}         encoder_q.head.conv1.*      (1x1x1 conv D -> D)
    encoder_q.4.{weight,bias}         encoder_q.head.conv2.*      (1x1x1 conv D -> 128)
    encoder_k.{0,2,4}.*               encoder_k.encoder.{backbone,head.conv1,head.conv2}.*
    queue (dim, K)                    queue.features (K, dim)     (transposed)
    queue_ptr (1,)                    queue.ptr ()                (+ queue.num_filled, which the official lacks)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from videozoo.distributed import batch_shuffle, batch_unshuffle
from videozoo.heads.projection import CoCLRHead
from videozoo.losses import FeatureQueue, MomentumEncoder, info_nce_logits
from videozoo.methods.base import Encoder, Method, split_views

__all__ = ["InfoNCE"]


class InfoNCE(Method):
    """MoCo on video (CoCLR's stage 1), for any backbone and either modality.

    Batch: ``{input_key: (B, 2, C, T, H, W)}`` — two views of each clip, the first the query, the second the
    key (``VideoDataset(num_views=2)`` gives this under ``"video"``, and under ``"flow"`` with ``flow_root``).

    Args:
        backbone: the network to train; its classifier is removed (``reset_head(0)``).
        head: a projection head to start from (e.g. from an earlier stage); default a new
            ``CoCLRHead(num_features -> hidden_dim -> dim)``.
        dim: embedding width (128).
        hidden_dim: the head's hidden width (default ``backbone.num_features``, 1024 for S3D).
        queue_size: negatives kept (CoCLR: 2048 on UCF101, 16384 on K400). Need not divide by the batch.
        temperature: softmax temperature T (0.07).
        input_key: the batch entry to train on: ``"video"`` (RGB) or ``"flow"``.
    """

    queue_fields: ClassVar[Mapping[str, int]] = {}  # extra per-entry queue fields (labels, source ids)
    compile_verified = True  # tests/test_compile.py; read from each class itself, so subclasses need their own

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
    ) -> None:
        super().__init__()
        width = backbone.num_features
        if head is None:
            head = CoCLRHead(in_dim=width, hidden_dim=hidden_dim or width, out_dim=dim)
        self.encoder_q = Encoder(backbone=backbone, head=head)
        self.encoder_k = MomentumEncoder(self.encoder_q)  # starts as an exact copy, as MoCo's init
        self.queue = FeatureQueue(size=queue_size, dim=dim, extra=self.queue_fields)
        self.dim, self.temperature, self.input_key = dim, temperature, input_key

    @property
    def backbone(self) -> nn.Module:
        return self.encoder_q.backbone

    def export_encoder(self) -> Encoder:
        """A copy of the online backbone + head, to start a later stage from (CoCLR starts from InfoNCE's).

        Users get the backbone alone, through :meth:`export_backbone`.
        """
        return copy.deepcopy(self.encoder_q).train()

    # -- the pieces every MoCo-style method shares -------------------------------------------------
    def query_and_key(self, views: torch.Tensor, *, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed view 0 as queries (with gradient) and view 1 as keys (momentum encoder, shuffle-BN).

        ``views`` (B, 2, C, T, H, W) -> q, k (B, dim), L2-normalised, float32. In training mode the momentum
        encoder is updated (θ_k ← m·θ_k + (1−m)·θ_q) *before* it embeds the keys, as in MoCo and CoCLR.
        """
        x_q, x_k = split_views(views)
        q = self.encoder_q(x_q)  # (B, dim)
        if self.training:
            self.encoder_k.update(self.encoder_q, momentum=momentum)
        with torch.no_grad():
            # shuffle-BN: the key encoder normalises over another subset of the global batch than the query
            # encoder, so a query cannot find its key through the batch statistics (He et al. 2020, Sec. 3.3)
            x_k, idx_unshuffle = batch_shuffle(x_k)
            k = batch_unshuffle(self.encoder_k(x_k), idx_unshuffle)  # (B, dim)
        # losses in float32: in bf16 the logits / 0.07 would lose the digits that tell keys apart
        return q.float(), k.float()

    def logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(B, 1+K) = [q·k, q·queue] / T; column 0 is the positive (MoCo's layout, which masks index)."""
        # no clone: the queue write after this step's loss replaces its buffer, so backward keeps these values
        # float32 even under bf16 autocast, which would otherwise run these matmuls in bf16
        with torch.autocast(q.device.type, enabled=False):
            logits, _ = info_nce_logits(q.float(), k.float(), self.queue.features, temperature=self.temperature)
        return logits

    def enqueue(self, k: torch.Tensor, **fields: torch.Tensor) -> None:
        """Gather the keys of all ranks and push them into the queue (training mode only)."""
        if self.training:
            self.queue.enqueue(k, **fields)

    # -- the method ----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], *, momentum: float = 0.999) -> dict[str, Any]:
        q, k = self.query_and_key(batch[self.input_key], momentum=momentum)
        logits = self.logits(q, k)  # (B, 1+K)
        targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, targets)
        logs = {"loss": loss.detach(), "top1": (logits.argmax(dim=1) == 0).float().mean(), **self._queue_logs()}
        self.enqueue(k)
        return {"loss": loss, "logs": logs}

    def _queue_logs(self) -> dict[str, torch.Tensor]:
        """How full the queue was when this step's loss was computed (before its own keys went in)."""
        return {"queue_fill": self.queue.num_filled.float() / self.queue.size}
