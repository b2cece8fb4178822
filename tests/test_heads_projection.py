"""Projection heads: shapes, L2 norm, and equality with the official module layouts after key renaming."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videozoo.heads.projection import CoCLRHead, GDTHead, MLPHead


def official_coclr_encoder(d: int, out: int) -> nn.Sequential:
    """CoCLR's ``encoder_q`` layout (model/pretrain.py), with an identity in place of the backbone."""
    return nn.Sequential(
        nn.Identity(), nn.AdaptiveAvgPool3d((1, 1, 1)), nn.Conv3d(d, d, 1), nn.ReLU(), nn.Conv3d(d, out, 1)
    )


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1)


class _Unsqueeze(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-1)


class OfficialGDTMLP(nn.Module):
    """GDT's ``MLP`` layout (model.py): weights at block_forward.2 / .4 / .8."""

    def __init__(self, d: int, hidden: int, out: int, p: float) -> None:
        super().__init__()
        self.block_forward = nn.Sequential(
            _Flatten(),
            nn.Dropout(p),
            nn.Linear(d, hidden, bias=False),
            _Unsqueeze(),
            nn.BatchNorm1d(hidden),
            _Flatten(),
            nn.ReLU(inplace=True),
            nn.Dropout(p),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_forward(x)


def test_coclr_head_shapes_match_the_official_checkpoint() -> None:
    head = CoCLRHead()
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        "conv1.weight": (1024, 1024, 1, 1, 1),
        "conv1.bias": (1024,),
        "conv2.weight": (128, 1024, 1, 1, 1),
        "conv2.bias": (128,),
    }


def test_coclr_head_loads_official_keys_and_matches_official_forward() -> None:
    official = official_coclr_encoder(16, 8)
    checkpoint = {f"encoder_q.{k}": v for k, v in official.state_dict().items()}
    checkpoint["encoder_q.0.Conv_1a.weight"] = torch.zeros(1)  # backbone keys are left out
    checkpoint["encoder_k.2.weight"] = torch.zeros(1)
    head = CoCLRHead(in_dim=16, hidden_dim=16, out_dim=8)
    head.load_state_dict(CoCLRHead.official_keys(checkpoint))  # strict: exactly the head's keys
    feature_map = torch.randn(3, 16, 2, 4, 4)  # (B, D, T, H, W)
    expected = F.normalize(official(feature_map).flatten(1), dim=1)
    torch.testing.assert_close(head(feature_map), expected)
    pooled = feature_map.mean(dim=(2, 3, 4))
    torch.testing.assert_close(head(pooled), expected)  # a pooled (B, D) embedding gives the same
    assert set(CoCLRHead.official_keys(checkpoint, prefix="encoder_k.")) == {"conv1.weight"}


def test_coclr_head_output_is_unit_norm_and_rejects_other_layouts() -> None:
    head = CoCLRHead(in_dim=8, hidden_dim=8, out_dim=4)
    torch.testing.assert_close(head(torch.randn(5, 8)).norm(dim=1), torch.ones(5))
    raw = CoCLRHead(in_dim=8, hidden_dim=8, out_dim=4, normalize=False)
    assert not torch.allclose(raw(torch.randn(5, 8)).norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="CoCLRHead expects"):
        head(torch.randn(5, 8, 4))


def test_gdt_head_layers_and_shapes() -> None:
    head = GDTHead()
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["fc1.weight"] == (512, 512) and "fc1.bias" not in shapes
    assert shapes["bn.running_var"] == (512,)
    assert shapes["fc2.weight"] == (256, 512) and shapes["fc2.bias"] == (256,)
    assert [type(m).__name__ for m in head] == ["Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head.drop1.p == head.drop2.p == 0.3


@pytest.mark.parametrize("train", [False, True])
def test_gdt_head_loads_official_keys_and_matches_official_forward(train: bool) -> None:
    p = 0.0 if train else 0.3  # in training mode compare BN batch statistics without random dropout
    official = OfficialGDTMLP(12, 10, 6, p)
    official.block_forward[4].running_mean.uniform_()  # non-trivial running stats for eval mode
    checkpoint = {f"module.mlp_v.{k}": v for k, v in official.state_dict().items()}
    head = GDTHead(in_dim=12, hidden_dim=10, out_dim=6, dropout=p)
    head.load_state_dict(GDTHead.official_keys(checkpoint, prefix="module.mlp_v."))
    official.train(train)
    head.train(train)
    x = torch.randn(4, 12)
    torch.testing.assert_close(head(x), F.normalize(official(x), dim=1))


def test_mlp_head_single_linear_and_two_layer_forms() -> None:
    single = MLPHead(in_dim=768, out_dim=128)  # CACL's transformer embedding
    assert [name for name, _ in single.named_children()] == ["proj"]
    x = torch.randn(3, 768)
    torch.testing.assert_close(single(x), F.normalize(single.proj(x), dim=1))
    two = MLPHead(in_dim=8, hidden_dim=16, out_dim=4, normalize=False)
    assert [name for name, _ in two.named_children()] == ["fc1", "relu", "fc2"]
    y = torch.randn(3, 8)
    torch.testing.assert_close(two(y), two.fc2(F.relu(two.fc1(y))))


def test_mlp_head_is_keyword_only_and_checks_its_input() -> None:
    with pytest.raises(TypeError):
        MLPHead(8, 4)  # type: ignore[misc]
    head = MLPHead(in_dim=8, out_dim=4)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        head(torch.randn(2, 8, 1))
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        head(torch.randn(2, 7))
