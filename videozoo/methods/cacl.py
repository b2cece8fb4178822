"""CACL: a 3D CNN and a video transformer contrast each other's views, and the CNN predicts the shuffle degree.

Papers:
    Guo, Xiong, Zhong, Wang, Guo, Han, Huang. Cross-Architecture Self-supervised Video Representation Learning
    (CACL). CVPR 2022.
    He, Fan, Wu, Xie, Girshick. Momentum Contrast for Unsupervised Visual Representation Learning (MoCo). CVPR 2020.

Every clip comes with a frame-shuffled copy (:mod:`videozoo.methods.shuffle`); a *pair* is (clip, shuffled copy).
Two augmentations of one pair are the query and the key. The CNN embeds both clips of a pair, concatenates them
(2·512) and projects to 128 (``contrast_fc1``); the transformer reads the pair as one 2T-frame sequence (CLS,
768 → 128). MoCo momentum copies of both encoders embed the key pair, and the queue receives both keys. Four
positives, each an InfoNCE term against the queue: (q_cnn, k_cnn), (q_cnn, q_tf), (q_cnn, k_tf), (q_tf, k_tf);
the loss is their mean. The shuffle-degree head reads the CNN's query-pair features (1024 → 512 → ReLU →
dropout 0.5 → 16) and is trained with cross-entropy on Levenshtein labels, weighted by ``sdp_weight``.

Where the official code (guoshengcv/CACL) differs, both are here (docs/methods/cacl.md names the preset of each):

* ``tf_negatives``: the official scores (q_tf, k_tf) against the *CNN query's* negatives ``q_cnn·queue``
  (``"cnn"``); the default scores it against its own anchor's, ``q_tf·queue`` (``"transformer"``).
* ``key_order``: the official key pair is (shuffled, clip), the query pair (clip, shuffled) (``"swapped"``);
  the default keeps (clip, shuffled) for both (``"same"``).
* ``sdp_weight``: 1 trains jointly (the paper); the released script multiplies the loss by 0 and trains the
  shuffle-degree head by a separate script (:class:`ShuffleDegree`).
* ``order_mode``: see :func:`~videozoo.methods.shuffle.sample_orders` (the official dataset uses ``"positions"``).

Parameter names against the official ``MoCo_Transformer`` (``models/vmoco_with_transformer.py``), for converters:

    official (module.)                              videozoo
    encoder_q.base_network.*                        cnn_q.backbone.*
    encoder_q.contrast_fc1.*                        cnn_q.head.proj.*
    encoder_q.fc7.* / encoder_q.fc8.*               sdp_head.fc7.* / sdp_head.fc8.*
    encoder_transformer.video_embed.extract_feature_net.*   tf_q.backbone.frame_model.*
    encoder_transformer.video_embed.embed_head.*    tf_q.backbone.embed_head.*
    encoder_transformer.{cls_token,pos_embed,blocks,norm}   tf_q.backbone.{same}
    encoder_transformer.embed_head.*                tf_q.head.proj.*
    encoder_k.* / encoder_transformer_k.*           cnn_k.encoder.* / tf_k.encoder.*  (fc7/fc8 not copied)
    queue (dim, K), queue_ptr                       queue.features (K, dim), queue.ptr
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videozoo.backbones.base import VideoBackbone
from videozoo.backbones.frame_transformer import create_frame_model
from videozoo.distributed import batch_shuffle, batch_unshuffle, get_rank, get_world_size
from videozoo.heads.projection import MLPHead
from videozoo.losses import FeatureQueue, MomentumEncoder, per_positive_nce
from videozoo.methods.base import Encoder, Method, advance_steps, split_views, track_host_steps
from videozoo.methods.shuffle import (
    OrderMode,
    achievable_distances,
    apply_order,
    edit_distance,
    label_of_distance,
    num_shuffle_classes,
    permutation_with_distance,
    sample_orders,
)

__all__ = [
    "CACL",
    "FrameNetwork",
    "PairEncoder",
    "ShuffleDegree",
    "ShuffleDegreeHead",
    "achievable_distances",
    "cacl_loss",
    "edit_distance",
    "permutation_with_distance",
]


# ================================================================================================
# Parts
# ================================================================================================
class ShuffleDegreeHead(nn.Sequential):
    """VCOP's order head as CACL uses it: fc7 (in → hidden) → ReLU → dropout → fc8 (hidden → classes), logits."""

    def __init__(self, *, in_dim: int, num_classes: int, hidden_dim: int = 512, dropout: float = 0.5) -> None:
        super().__init__(
            OrderedDict(
                fc7=nn.Linear(in_dim, hidden_dim),
                relu=nn.ReLU(inplace=True),
                dropout=nn.Dropout(dropout),
                fc8=nn.Linear(hidden_dim, num_classes),
            )
        )


class PairEncoder(nn.Module):
    """A backbone on both clips of a pair, pooled features concatenated, then a head (official ``Wrapper_Model``).

    ``features(pair)``: ``(B, 2, C, T, H, W)`` → ``(B, 2·D)``. The clips go through the backbone one after the
    other, as in the official code, so BatchNorm normalises clips and shuffled copies over separate batches.
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        backbone.reset_head(0, dropout=0.0)
        self.backbone, self.head = backbone, head

    def features(self, pair: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.backbone(pair[:, i]) for i in range(pair.shape[1])], dim=1)  # (B, 2·D)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pair))  # (B, dim)


class FrameNetwork(VideoBackbone):
    """A timm 2D network on every frame, frame embeddings averaged: CACL's frame network under the contract.

    Lets :class:`~videozoo.methods.InfoNCE` run MoCo on single frames (clips of ``T = 1``), the stage that made
    CACL's frozen frame ResNet-50 (never released). ``forward_features``: ``(B, D, T)``; ``forward``: ``(B, D)``.
    The trained timm network is ``.model`` (``FrameTransformer.frame_model`` takes its state dict).
    """

    min_input = (1, 1, 1)

    def __init__(
        self,
        *,
        model: str | nn.Module = "resnet50",
        pretrained: bool = False,
        in_channels: int = 3,
        num_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.in_channels = in_channels
        self.model = (
            create_frame_model(model, pretrained=pretrained, in_channels=in_channels)
            if isinstance(model, str)
            else model
        )
        self.num_features = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.model(rearrange(x, "b c t h w -> (b t) c h w"))  # (B·T, D)
        return rearrange(frames, "(b t) d -> b d t", b=x.shape[0])


def pair_tokens(pair: torch.Tensor) -> torch.Tensor:
    """(B, 2, C, T, H, W) → (B, C, 2T, H, W): the transformer reads clip then shuffled copy as one sequence."""
    return rearrange(pair, "b v c t h w -> b c (v t) h w")


def cacl_loss(
    q: torch.Tensor,
    tf_q: torch.Tensor,
    k: torch.Tensor,
    tf_k: torch.Tensor,
    queue: torch.Tensor,
    *,
    temperature: float,
    tf_negatives: Literal["transformer", "cnn"] = "transformer",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean of CACL's four InfoNCE terms; returns ``(loss, positive logits (B, 4), CNN negative logits (B, K))``.

    ``q``, ``tf_q``: the CNN's and the transformer's query embeddings, ``k``, ``tf_k``: their momentum keys, all
    (B, D) and L2-normalised; ``queue`` (K, D). Positives, each against the negatives of its anchor:
    q·k, q·tf_q, q·tf_k (anchor q: negatives q·queue) and tf_q·tf_k (anchor tf_q: negatives tf_q·queue, or
    q·queue with ``tf_negatives="cnn"`` as the official code). Logits are divided by ``temperature``.
    """
    positives = torch.stack([(q * k).sum(1), (q * tf_q).sum(1), (q * tf_k).sum(1), (tf_q * tf_k).sum(1)], dim=1)
    positives = positives / temperature  # (B, 4)
    negatives = q @ queue.T / temperature  # (B, K)
    if tf_negatives == "cnn":
        return per_positive_nce(positives, negatives), positives, negatives
    if tf_negatives != "transformer":
        raise ValueError(f"tf_negatives must be 'transformer' or 'cnn', got {tf_negatives!r}")
    tf_term = per_positive_nce(positives[:, 3:], tf_q @ queue.T / temperature)
    return (3 * per_positive_nce(positives[:, :3], negatives) + tf_term) / 4, positives, negatives


class _OrderSampler(nn.Module):
    """Draws the frame orders of a step from ``(seed, step)``: every rank draws the global batch's and keeps its rows.

    So a two-process step shuffles each clip as the one-process step on the same global batch does, and a resumed
    run continues the sequence (``num_steps`` is a buffer, with a host copy read without waiting for the GPU).
    ``batch["order"]`` (B, T), if given, wins.
    """

    def __init__(self, *, order_mode: OrderMode, seed: int) -> None:
        super().__init__()
        self.order_mode, self.seed = order_mode, seed
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        track_host_steps(self)

    def orders(self, batch: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's ``(orders (B, T), labels (B,))`` on ``x``'s device; drawn on the host (a Python loop)."""
        b, t = x.shape[0], x.shape[2]
        if batch.get("order") is not None:
            orders = torch.as_tensor(batch["order"]).long()
            labels = torch.tensor([label_of_distance(edit_distance(range(t), o)) for o in orders.tolist()])
        else:
            generator = torch.Generator().manual_seed((self.seed << 32) + self._host_steps)
            orders, labels = sample_orders(b * get_world_size(), t, mode=self.order_mode, generator=generator)
            rows = slice(get_rank() * b, (get_rank() + 1) * b)
            orders, labels = orders[rows], labels[rows]
        # non-blocking: a plain copy from host memory would wait for the GPU to finish the previous step
        return orders.to(x.device, non_blocking=True), labels.to(x.device, non_blocking=True)

    @torch.compiler.disable
    def draw(self, batch: dict[str, Any], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`orders` outside any compiled graph; in training the step count then moves on."""
        out = self.orders(batch, x)
        if self.training:
            advance_steps(self)
        return out


# ================================================================================================
# Methods
# ================================================================================================
class CACL(Method):
    """Cross-architecture MoCo (3D CNN × video transformer) with shuffle-degree prediction, for any 3D backbone.

    Batch: ``{input_key: (B, 2, C, T, H, W)}`` — two augmentations of the *same* frames (query, key), as the
    official dataset (``VideoDataset(num_views=2, views_share_clip=True)``); the method shuffles the frames of both
    views with one order per clip. Optional ``batch["order"]`` (B, T) gives the orders instead.

    Args:
        backbone: the 3D CNN (exported by :meth:`export_backbone`); its classifier is removed.
        transformer: the video transformer (:func:`videozoo.backbones.frame_transformer.frame_transformer`), or any
            backbone that takes a ``2T``-frame clip; its frozen frame network stays frozen.
        dim, queue_size, temperature: MoCo's 128, 6400 (CNN and transformer keys together), 0.07.
        num_frames: frames per clip ``T`` (16): the shuffle-degree head has :func:`num_shuffle_classes` outputs.
        sdp_weight: weight of the shuffle-degree loss (1: the paper's joint training; 0: the released script).
        sdp_hidden, sdp_dropout: the head's 512 and 0.5.
        order_mode, tf_negatives, key_order: see the module docstring.
        seed: seeds the frame orders (with the step count).
    """

    compile_verified = True  # tests/test_compile.py

    def __init__(
        self,
        *,
        backbone: nn.Module,
        transformer: nn.Module,
        dim: int = 128,
        queue_size: int = 6400,
        temperature: float = 0.07,
        num_frames: int = 16,
        sdp_weight: float = 1.0,
        sdp_hidden: int = 512,
        sdp_dropout: float = 0.5,
        order_mode: OrderMode = "distance",
        tf_negatives: Literal["transformer", "cnn"] = "transformer",
        key_order: Literal["same", "swapped"] = "same",
        input_key: str = "video",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if key_order not in ("same", "swapped") or tf_negatives not in ("transformer", "cnn"):
            raise ValueError(
                f"key_order must be 'same'/'swapped' and tf_negatives 'transformer'/'cnn', got "
                f"{key_order!r}, {tf_negatives!r}"
            )
        width = backbone.num_features
        self.cnn_q = PairEncoder(backbone=backbone, head=MLPHead(in_dim=2 * width, out_dim=dim))
        self.cnn_k = MomentumEncoder(self.cnn_q)
        self.tf_q = Encoder(backbone=transformer, head=MLPHead(in_dim=transformer.num_features, out_dim=dim))
        self.tf_k = MomentumEncoder(self.tf_q)
        self.sdp_head = ShuffleDegreeHead(
            in_dim=2 * width, num_classes=num_shuffle_classes(num_frames), hidden_dim=sdp_hidden, dropout=sdp_dropout
        )
        self.queue = FeatureQueue(size=queue_size, dim=dim)
        self.sampler = _OrderSampler(order_mode=order_mode, seed=seed)
        self.dim, self.temperature, self.num_frames, self.sdp_weight = dim, temperature, num_frames, sdp_weight
        self.tf_negatives, self.key_order, self.input_key = tf_negatives, key_order, input_key

    @property
    def backbone(self) -> nn.Module:
        return self.cnn_q.backbone

    def export_transformer(self) -> nn.Module:
        """A copy of the online transformer (frame network included), head removed, in eval mode."""
        return copy.deepcopy(self.tf_q.backbone).eval()

    def forward(self, batch: dict[str, Any], *, momentum: float = 0.999) -> dict[str, Any]:
        x_q, x_k = split_views(batch[self.input_key])  # (B, C, T, H, W) each, the same frames
        if x_q.shape[2] != self.num_frames:
            raise ValueError(f"CACL was built for {self.num_frames}-frame clips, got {x_q.shape[2]} frames")
        orders, labels = self.sampler.draw(batch, x_q)  # (B, T), (B,)
        pair_q = torch.stack([x_q, apply_order(x_q, orders)], dim=1)  # (B, 2, C, T, H, W): clip, shuffled
        key_views = [x_k, apply_order(x_k, orders)]
        pair_k = torch.stack(key_views[::-1] if self.key_order == "swapped" else key_views, dim=1)

        feats = self.cnn_q.features(pair_q)  # (B, 2·D): shared by the contrast and the shuffle-degree heads
        q, tf_q = self.cnn_q.head(feats), self.tf_q(pair_tokens(pair_q))  # (B, dim) each
        sdp_logits = self.sdp_head(feats)  # (B, classes)
        if self.training:  # MoCo: the key encoders move before they embed the keys
            self.cnn_k.update(self.cnn_q, momentum=momentum)
            self.tf_k.update(self.tf_q, momentum=momentum)
        with torch.no_grad():
            # shuffle-BN (He et al. 2020, Sec. 3.3): the key CNN normalises over other clips than the query CNN
            pair_k, idx_unshuffle = batch_shuffle(pair_k)
            k = batch_unshuffle(self.cnn_k(pair_k), idx_unshuffle)  # (B, dim)
            tf_k = batch_unshuffle(self.tf_k(pair_tokens(pair_k)), idx_unshuffle)  # (B, dim)

        # float32 losses: under bf16 autocast logits / 0.07 would lose the digits that separate keys
        q, tf_q, k, tf_k = q.float(), tf_q.float(), k.float(), tf_k.float()
        # no clone: the queue write below replaces its buffer, so backward still sees these negatives
        contrast, positives, negatives = cacl_loss(
            q, tf_q, k, tf_k, self.queue.features, temperature=self.temperature, tf_negatives=self.tf_negatives
        )
        sdp = F.cross_entropy(sdp_logits.float(), labels)
        loss = contrast + self.sdp_weight * sdp
        hardest = negatives.max(dim=1, keepdim=True).values  # (B, 1)
        logs = {
            "loss": loss.detach(), "loss_contrast": contrast.detach(), "loss_sdp": sdp.detach(),
            "sdp_acc": (sdp_logits.argmax(dim=1) == labels).float().mean(),
            "contrast_acc": (positives.detach() > hardest).float().mean(),  # the official "moco acc"
            **{f"pos_sim{i}": positives[:, i].detach().mean() * self.temperature for i in range(4)},
            "queue_fill": self.queue.num_filled.float() / self.queue.size,
        }  # fmt: skip
        if self.training:
            self.queue.enqueue(k)  # CNN keys of all ranks, then transformer keys: one queue for both
            self.queue.enqueue(tf_k)
        return {"loss": loss, "logs": logs}


class ShuffleDegree(Method):
    """Shuffle-degree prediction alone: the official ``train_pretrain_sdp.py``, the released second script.

    Batch: ``{input_key: (B, C, T, H, W)}`` (or ``(B, V, C, T, H, W)``, of which view 0 is used). The backbone
    embeds each clip and its shuffled copy, the :class:`ShuffleDegreeHead` classifies the concatenation. The
    official script draws uniformly random orders (``order_mode="permutation"``).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_frames: int = 16,
        hidden_dim: int = 512,
        dropout: float = 0.5,
        order_mode: OrderMode = "permutation",
        input_key: str = "video",
        seed: int = 0,
    ) -> None:
        super().__init__()
        width = backbone.num_features
        self.pair = PairEncoder(backbone=backbone, head=nn.Identity())
        self.sdp_head = ShuffleDegreeHead(
            in_dim=2 * width, num_classes=num_shuffle_classes(num_frames), hidden_dim=hidden_dim, dropout=dropout
        )
        self.sampler = _OrderSampler(order_mode=order_mode, seed=seed)
        self.input_key = input_key

    @property
    def backbone(self) -> nn.Module:
        return self.pair.backbone

    def forward(self, batch: dict[str, Any], **schedule: Any) -> dict[str, Any]:
        x = batch[self.input_key]
        x = x[:, 0] if x.ndim == 6 else x  # (B, C, T, H, W)
        orders, labels = self.sampler.draw(batch, x)
        logits = self.sdp_head(self.pair.features(torch.stack([x, apply_order(x, orders)], dim=1)))  # (B, classes)
        loss = F.cross_entropy(logits.float(), labels)
        return {"loss": loss, "logs": {"loss": loss.detach(), "sdp_acc": (logits.argmax(1) == labels).float().mean()}}
