"""CoCLR: co-training of an RGB and a flow network, each mining positives for the other.

Paper:
    Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning (CoCLR). NeurIPS 2020.
    Built on MoCo: He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning.
    CVPR 2020.

Stage 2 of CoCLR (stage 1 is :class:`~videozoo.methods.InfoNCE` per modality). The network being trained is a
MoCo (query encoder, momentum key encoder, queue of keys). Beside it sits a *frozen* network of the other
modality (the "sampler"): it embeds the other-modality clip of every key, and those embeddings fill a second
queue aligned with the first. The positives of a query are

* its own key (column 0 of the logits),
* every queue entry from the same source video (``source_id``; UCF101's group ``gXX``),
* the ``topk`` queue entries whose *other-modality* embedding is closest to the key's own (same-source entries
  excluded), once the second queue is full,

and the loss is the multi-instance NCE ``-log Σ_positives softmax(logits)``. With probability ``drop_self_p`` (one
coin per step) the self-positive is dropped for the rows that have other positives (the official code's fix,
issue #43: after InfoNCE the self-similarity is already high and would dominate). Alternating which modality is
trained (RGB mining from flow, then flow mining from RGB) gives one cycle.

Parameter names against the official ``model/pretrain.py`` (``CoCLR``), beyond those of :mod:`.infonce`:

    official                          videozoo
    sampler.0.* / .2.* / .4.*         sampler.backbone.* / sampler.head.conv1.* / sampler.head.conv2.*
    queue_second (dim, K)             queue_second.features (K, dim)   (transposed)
    queue_vname (K,)                  queue.vname
    queue_label (K,)                  queue.label   (the official writes ones; here the class label, for logs)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from videozoo.heads.projection import CoCLRHead
from videozoo.losses import FeatureQueue, drop_self_positive, multi_positive_nce
from videozoo.methods.base import Encoder, advance_steps, track_host_steps
from videozoo.methods.infonce import InfoNCE

__all__ = ["CoCLR", "mine_topk"]


def mine_topk(similarity: torch.Tensor, *, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K) bool: for each row, the ``k`` columns of highest ``similarity`` that ``exclude`` does not mark.

    ``similarity`` (B, K); ``exclude`` (B, K) bool (CoCLR: same-source entries, positives already). A row
    with fewer than ``k`` columns left gets all of them.
    """
    k = min(k, similarity.shape[1])
    picked = torch.zeros_like(similarity, dtype=torch.bool)
    if k <= 0:
        return picked
    if exclude is not None:
        similarity = similarity.masked_fill(exclude, float("-inf"))
    picked.scatter_(1, similarity.topk(k, dim=1).indices, True)
    return picked if exclude is None else picked & ~exclude


class CoCLR(InfoNCE):
    """CoCLR's co-training stage: train ``backbone`` with positives mined by the frozen ``other_backbone``.

    Batch (the collated output of ``VideoDataset(num_views=2, flow_root=...)``):

    * ``batch[input_key]`` (B, 2, C, T, H, W): two clips of the modality being trained, query then key;
    * ``batch[other_key]`` (B, 2, C', T, H, W): the other modality of the same two clips (same frames, crop
      and flip), of which the key's (view 1) is used; or (B, C', T, H, W), the key's other-modality clip only;
    * ``batch["source_id"]`` (B,) long: the source video (a negative id means unknown: no same-source positives);
    * ``batch["label"]`` (B,), optional: class labels, used only to log how often mining finds the same class.

    RGB mining from flow is ``input_key="video", other_key="flow"``; flow mining from RGB swaps them (the
    official ``--reverse``).

    Args:
        backbone, head: the network being trained and its projection head; start from the stage-1 InfoNCE
            encoder of this modality (:meth:`InfoNCE.export_encoder`). ``head=None`` starts a new head.
        other_backbone, other_head: the network of the other modality, of which a frozen copy mines positives;
            its head defines the space in which neighbours are mined, so pass the trained one (``None`` starts a
            random head, with a warning).
        topk: positives mined per query (5).
        drop_self_p: probability of dropping the self-positive for rows that have other positives (0.9).
        queue_size, temperature, dim, hidden_dim, input_key: as :class:`InfoNCE`.
        other_key: the batch entry of the other modality.
        seed: seeds the per-step coin of ``drop_self_p`` (with the step count, which is in the state dict,
            so every rank flips the same coin and a resumed run continues the sequence).
    """

    queue_fields: ClassVar[Mapping[str, int]] = {"vname": -1, "label": -1}
    compile_verified = True  # tests/test_compile.py

    def __init__(
        self,
        *,
        backbone: nn.Module,
        other_backbone: nn.Module,
        head: nn.Module | None = None,
        other_head: nn.Module | None = None,
        dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 2048,
        temperature: float = 0.07,
        topk: int = 5,
        drop_self_p: float = 0.9,
        input_key: str = "video",
        other_key: str = "flow",
        seed: int = 0,
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
        if other_head is None:
            warnings.warn(
                "CoCLR: no other_head given; mining runs in the space of a random projection head. Pass the "
                "other modality's trained head (InfoNCE.export_encoder().head).",
                stacklevel=2,
            )
            width = other_backbone.num_features
            other_head = CoCLRHead(in_dim=width, hidden_dim=hidden_dim or width, out_dim=dim)
        # a frozen *copy*: the caller's modules stay trainable (the next half-cycle trains this very network)
        self.sampler = Encoder(backbone=copy.deepcopy(other_backbone), head=copy.deepcopy(other_head))
        self.sampler.requires_grad_(False).eval()
        self.queue_second = FeatureQueue(size=queue_size, dim=dim)  # aligned slot by slot with self.queue
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        track_host_steps(self)
        self.topk, self.drop_self_p, self.other_key, self.seed = topk, drop_self_p, other_key, seed

    def train(self, mode: bool = True) -> CoCLR:
        super().train(mode)
        self.sampler.eval()  # always frozen, BatchNorm on its running statistics (official: sampler.eval())
        return self

    # -- positives ------------------------------------------------------------------------------------
    def positive_mask(self, other: torch.Tensor, source_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The positives of each query among ``[own key, queue]``, and which of them were mined.

        ``other`` (B, dim): the frozen network's embedding of each key's other-modality clip; ``source_id`` (B,).
        Returns ``mask`` (B, 1+K) bool (column 0, the own key, always set) and ``mined`` (B, K) bool.
        Mining starts once the second queue is full: before that it holds random vectors, not neighbours.
        """
        queue_ids = self.queue.field("vname")  # (K,), -1 in empty slots
        same_source = (source_id[:, None] == queue_ids[None, :]) & (source_id[:, None] >= 0)  # (B, K)
        mined = torch.zeros_like(same_source)
        if self.topk > 0:
            with torch.autocast(other.device.type, enabled=False):  # float32: bf16 would shuffle near-ties
                similarity = other.float() @ self.queue_second.features.T  # (B, K) cosine, in the other modality
            # mined always, kept once the queue is full: a host-side `if queue.full` would wait for the device
            full = self.queue_second.num_filled >= self.queue_second.size  # 0-d bool, on the device
            mined = mine_topk(similarity, k=self.topk, exclude=same_source) & full
        own = torch.ones_like(same_source[:, :1])  # (B, 1)
        return torch.cat([own, same_source | mined], dim=1), mined

    def _coin(self) -> torch.Generator:
        """A CPU generator for this step's self-positive coin: the same on every rank, resumable."""
        # torch's CPU generator keeps only 32 bits of a seed, so (seed << 32) + step would ignore the seed: mix both.
        state = np.random.SeedSequence([self.seed, self._host_steps]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(state))

    @torch.compiler.disable
    def _flip_coin(self, device: torch.device) -> torch.Tensor:
        """This training step's coin as a 0-d bool on ``device`` (a fill, no copy); the step count moves on.

        Drawn on the host, outside any compiled graph, from ``(seed, step)``: the draw :func:`drop_self_positive`
        made with :meth:`_coin` before, so runs continue the same sequence.
        """
        drop = bool(torch.rand((), generator=self._coin()) < self.drop_self_p)
        advance_steps(self)
        return torch.full((), drop, dtype=torch.bool, device=device)

    # -- the method ----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], *, momentum: float = 0.999) -> dict[str, Any]:
        coin = self._flip_coin(batch[self.input_key].device) if self.training else None  # first: one graph after it
        q, k = self.query_and_key(batch[self.input_key], momentum=momentum)  # (B, dim) each
        other = batch[self.other_key]
        if other.ndim == batch[self.input_key].ndim:  # both multi-view: take the key view's other modality
            other = other[:, 1]
        with torch.no_grad():
            kf = self.sampler(other).float()  # (B, dim)
        source_id = torch.as_tensor(batch["source_id"], device=q.device).long()
        label = torch.as_tensor(batch.get("label", torch.full_like(source_id, -1)), device=q.device).long()

        logits = self.logits(q, k)  # (B, 1+K)
        mask, mined = self.positive_mask(kf, source_id)
        loss_mask = drop_self_positive(mask, drop=coin) if coin is not None else mask
        loss = multi_positive_nce(logits, loss_mask, validate=False)  # column 0 or another positive in every row

        best = logits.argmax(dim=1)  # (B,)
        logs = {
            "loss": loss.detach(),
            "top1": mask.gather(1, best[:, None]).float().mean(),  # the best match is a positive
            "self_top1": (best == 0).float().mean(),
            "positives": mask[:, 1:].sum(dim=1).float().mean(),  # besides the own key
            "mining": mined.any().float(),
            **self._queue_logs(),
        }
        # how often a mined neighbour has the query's class; NaN (not logged) before mining or without labels
        same_class = label[:, None] == self.queue.field("label")[None, :]  # (B, K)
        known = (label >= 0).all() & mined.any()
        precision = (mined & same_class).sum().float() / mined.sum().clamp(min=1)
        logs["mined_precision"] = torch.where(known, precision, torch.full_like(precision, float("nan")))

        self.enqueue(k, vname=source_id, label=label)
        if self.training:
            self.queue_second.enqueue(kf)
        return {"loss": loss, "logs": logs}
