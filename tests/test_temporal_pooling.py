"""STiCA's transformer temporal pooling against the formula, written out with plain torch ops."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from videozoo.heads import TransformerPooling


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def reference_pooling(
    feature_map: torch.Tensor, params: dict[str, torch.Tensor], depth: int, heads: int, eps: float
) -> torch.Tensor:
    """The STiCA pooling from its definition: spatial mean, then post-norm layers with q/k projections only."""
    b, d, t = feature_map.shape[:3]
    x = feature_map.reshape(b, d, t, -1).mean(dim=3).transpose(1, 2)  # (B, T, D)
    dh = d // heads
    for i in range(depth):
        p = {k.split(f"transformer.{i}.", 1)[1]: v for k, v in params.items() if k.startswith(f"transformer.{i}.")}
        q = x @ p["mha.q_lin.weight"].T + p["mha.q_lin.bias"]
        k = x @ p["mha.k_lin.weight"].T + p["mha.k_lin.bias"]
        v = x  # no value projection
        context = torch.empty_like(x)
        for h in range(heads):
            cols = slice(h * dh, (h + 1) * dh)
            scores = (q[:, :, cols] / math.sqrt(dh)) @ k[:, :, cols].transpose(1, 2)  # (B, T, T)
            weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
            weights = weights / weights.sum(dim=-1, keepdim=True)
            context[:, :, cols] = weights @ v[:, :, cols]  # heads concatenated, no output projection
        x = layer_norm(x + context, p["norm1.weight"], p["norm1.bias"], eps)
        hidden = x @ p["ffn.lin1.weight"].T + p["ffn.lin1.bias"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
        ffn = hidden @ p["ffn.lin2.weight"].T + p["ffn.lin2.bias"]
        x = layer_norm(x + ffn, p["norm2.weight"], p["norm2.bias"], eps)
    return x[:, 0]  # token 0: no CLS token, no positional embedding


def randomise(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 2 else 0.5) + (1.0 if p.ndim == 1 else 0.0))


@pytest.mark.parametrize(("depth", "heads", "t"), [(2, 4, 4), (1, 2, 8), (3, 1, 3)])
def test_matches_the_formula(depth: int, heads: int, t: int) -> None:
    pool = TransformerPooling(dim=16, depth=depth, heads=heads, ffn_dim=24).eval()
    randomise(pool)
    x = torch.randn(3, 16, t, 3, 5)  # (B, D, T, H, W)
    with torch.no_grad():
        want = reference_pooling(x.double(), {k: v.double() for k, v in pool.state_dict().items()}, depth, heads, 1e-12)
        got = pool(x)
    assert got.shape == (3, 16)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_parameter_names_are_the_official_ones() -> None:
    names = set(TransformerPooling(dim=8, depth=1, heads=2, ffn_dim=8).state_dict())
    assert names == {
        f"transformer.0.{n}.{w}"
        for n in ("mha.q_lin", "mha.k_lin", "norm1", "ffn.lin1", "ffn.lin2", "norm2")
        for w in ("weight", "bias")
    }
    with_vo = set(TransformerPooling(dim=8, depth=1, heads=2, ffn_dim=8, value_output_proj=True).state_dict())
    assert with_vo - names == {f"transformer.0.mha.{n}.{w}" for n in ("v_lin", "out_lin") for w in ("weight", "bias")}
    assert TransformerPooling().transformer[0].norm1.eps == 1e-12


def test_depth_zero_is_average_pooling() -> None:
    pool = TransformerPooling(dim=16, depth=0)
    x = torch.randn(2, 16, 4, 7, 7)
    torch.testing.assert_close(pool(x), x.mean(dim=(2, 3, 4)))
    tokens = torch.randn(2, 5, 16)  # (B, T, D), already space-pooled
    torch.testing.assert_close(pool(tokens), tokens.mean(dim=1))
    assert not list(pool.parameters())


@pytest.mark.parametrize("t", [4, 8])
def test_shapes_for_stica_clip_lengths(t: int) -> None:
    pool = TransformerPooling()  # STiCA's: 512-d, 2 layers, 4 heads, FFN 2048
    feature_map = torch.randn(2, 512, t, 7, 7, requires_grad=True)  # R(2+1)D-18 on 30 or 60 frames at 112²
    out = pool(feature_map)
    assert out.shape == (2, 512)
    out.sum().backward()
    assert feature_map.grad is not None and all(p.grad is not None for p in pool.parameters())
    tokens = feature_map.detach().mean(dim=(3, 4)).transpose(1, 2)  # (B, T, D)
    torch.testing.assert_close(pool(tokens), out.detach(), rtol=1e-5, atol=1e-5)


def test_time_steps_resamples_like_the_official_adaptive_pool() -> None:
    pool = TransformerPooling(dim=16, heads=4, ffn_dim=32, time_steps=4).eval()
    plain = TransformerPooling(dim=16, heads=4, ffn_dim=32).eval()
    plain.load_state_dict(pool.state_dict())
    crop = torch.randn(2, 16, 2, 3, 3)  # a small temporal crop of the feature map
    resampled = nn.AdaptiveAvgPool3d((4, 1, 1))(crop).flatten(2).transpose(1, 2)  # (B, 4, D), steps repeated
    with torch.no_grad():
        torch.testing.assert_close(pool(crop), plain(resampled))


def test_dropout_only_in_training_and_bad_shapes_rejected() -> None:
    pool = TransformerPooling(dim=16, heads=4, ffn_dim=32, dropout=0.5)
    x = torch.randn(2, 16, 4, 2, 2)
    assert not torch.equal(pool(x), pool(x))
    pool.eval()
    torch.testing.assert_close(pool(x), pool(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(B, 16, T, H, W\) or \(B, T, 16\)"):
        pool(torch.randn(2, 8, 4, 2, 2))
    with pytest.raises(ValueError, match="divisible"):
        TransformerPooling(dim=10, heads=4)
