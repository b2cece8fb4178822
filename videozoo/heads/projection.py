"""Projection heads: map a backbone's pooled embedding to the space where the contrastive loss lives.

* :class:`CoCLRHead` - CoCLR (Han et al., NeurIPS 2020): pool -> 1x1x1 conv D->D -> ReLU -> 1x1x1 conv
  D->128 -> L2 norm, with conv-shaped weights so official checkpoints load by renaming keys.
* :class:`GDTHead` - GDT and STiCA (Patrick et al., ICCV 2021): dropout 0.3 -> linear 512->512 (no bias)
  -> BN -> ReLU -> dropout 0.3 -> linear 512->256 -> L2 norm.
* :class:`MLPHead` - the general form of the two (one or two linear layers), e.g. CACL's 768->128.

Heads receive what the backbone contract gives: the pooled embedding ``(B, D)`` of ``forward``, or
(CoCLRHead only) the map ``(B, D, T, H, W)`` of ``forward_features``. They never see ``.fc``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

__all__ = ["CoCLRHead", "GDTHead", "MLPHead", "rename_keys"]


def rename_keys(state_dict: Mapping[str, torch.Tensor], prefixes: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Keep the entries whose key starts with one of ``prefixes``' keys, renamed to its value; drop the rest."""
    out = {}
    for key, value in state_dict.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
    return out


class CoCLRHead(nn.Module):
    """CoCLR's projection: global average pool -> conv1 (1x1x1, D->D) -> ReLU -> conv2 (1x1x1, D->out) -> L2.

    The official model is ``nn.Sequential(backbone, AdaptiveAvgPool3d(1), Conv3d, ReLU, Conv3d)``
    (``model/pretrain.py``), hence the keys ``encoder_q.2.*`` and ``encoder_q.4.*`` with conv weights of
    shape (out, in, 1, 1, 1). ``conv1``/``conv2`` keep those shapes; :meth:`official_keys` renames. A 1x1x1
    conv on a pooled 1x1x1 map is a linear layer, which is how it is computed here, so (B, D) vectors work
    as well as (B, D, T, H, W) maps.
    """

    def __init__(self, *, in_dim: int = 1024, hidden_dim: int = 1024, out_dim: int = 128, normalize: bool = True):
        super().__init__()
        self.conv1 = nn.Conv3d(in_dim, hidden_dim, kernel_size=1)
        self.conv2 = nn.Conv3d(hidden_dim, out_dim, kernel_size=1)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            x = reduce(x, "b d t h w -> b d", "mean")  # AdaptiveAvgPool3d((1, 1, 1)) in the original
        elif x.ndim != 2:
            raise ValueError(f"CoCLRHead expects (B, D) or (B, D, T, H, W), got {tuple(x.shape)}")
        x = F.relu(F.linear(x, rearrange(self.conv1.weight, "o i 1 1 1 -> o i"), self.conv1.bias))  # (B, hidden)
        x = F.linear(x, rearrange(self.conv2.weight, "o i 1 1 1 -> o i"), self.conv2.bias)  # (B, out)
        return F.normalize(x, dim=1) if self.normalize else x

    @staticmethod
    def official_keys(state_dict: Mapping[str, torch.Tensor], *, prefix: str = "encoder_q.") -> dict[str, torch.Tensor]:
        """The head's entries of an official CoCLR/InfoNCE ``state_dict``, named for this module.

        ``prefix`` picks the network: ``encoder_q.`` (the trained one), ``encoder_k.`` or ``sampler.``.
        """
        return rename_keys(state_dict, {f"{prefix}2.": "conv1.", f"{prefix}4.": "conv2."})


class MLPHead(nn.Sequential):
    """[dropout ->] linear [-> BN] -> ReLU [-> dropout] -> linear [-> L2 norm], or one linear layer.

    ``hidden_dim=None`` gives ``[dropout ->] proj`` (a single linear layer, as CACL's 768->128 and
    1024->128 embeddings); otherwise the layers are named ``fc1``, ``bn`` (with ``batch_norm``), ``fc2``.
    ``dropout`` applies before each linear layer, as in GDT. Input (B, in_dim), output (B, out_dim).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        batch_norm: bool = False,
        hidden_bias: bool = True,
        normalize: bool = True,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if hidden_dim is None:
            if dropout > 0:
                layers["drop"] = nn.Dropout(dropout)
            layers["proj"] = nn.Linear(in_dim, out_dim)
        else:
            if dropout > 0:
                layers["drop1"] = nn.Dropout(dropout)
            layers["fc1"] = nn.Linear(in_dim, hidden_dim, bias=hidden_bias)
            if batch_norm:
                layers["bn"] = nn.BatchNorm1d(hidden_dim)
            layers["relu"] = nn.ReLU(inplace=True)
            if dropout > 0:
                layers["drop2"] = nn.Dropout(dropout)
            layers["fc2"] = nn.Linear(hidden_dim, out_dim)
        super().__init__(layers)
        self.in_dim, self.out_dim, self.normalize = in_dim, out_dim, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_dim}), got {tuple(x.shape)}")
        x = super().forward(x)  # (B, out_dim)
        return F.normalize(x, dim=1) if self.normalize else x


class GDTHead(MLPHead):
    """GDT/STiCA's projection: dropout 0.3 -> fc1 512->512 (no bias) -> BN -> ReLU -> dropout 0.3 -> fc2 512->256 -> L2.

    The official ``MLP`` (``model.py``) is a Sequential of Flatten, Dropout, Linear, Unsqueeze, BatchNorm1d,
    Flatten, ReLU, Dropout, Linear, so its weights sit at ``block_forward.{2,4,8}``; the Unsqueeze only
    feeds BatchNorm1d a (B, C, 1) tensor, which gives the same statistics as (B, C). L2 normalisation
    happens outside the MLP there (``norm_feat``); here it is part of the head.
    """

    def __init__(
        self,
        *,
        in_dim: int = 512,
        hidden_dim: int = 512,
        out_dim: int = 256,
        dropout: float = 0.3,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            in_dim=in_dim,
            hidden_dim=hidden_dim,
            out_dim=out_dim,
            dropout=dropout,
            batch_norm=True,
            hidden_bias=False,
            normalize=normalize,
        )

    @staticmethod
    def official_keys(state_dict: Mapping[str, torch.Tensor], *, prefix: str = "mlp_v.") -> dict[str, torch.Tensor]:
        """The head's entries of an official GDT/STiCA ``state_dict``, named for this module.

        ``prefix``: ``mlp_v.`` (video) or ``mlp_a.`` (audio); STiCA's own checkpoints add ``module.``.
        """
        p = f"{prefix}block_forward."
        return rename_keys(state_dict, {f"{p}2.": "fc1.", f"{p}4.": "bn.", f"{p}8.": "fc2."})
