"""CACL's frame transformer: token contract, frozen frame network, positional embedding rule, timm reference."""

from __future__ import annotations

import pytest
import torch

from videozoo.backbones.frame_transformer import FrameTransformer, frame_transformer

TINY = dict(frame_model="test_resnet", dim=32, depth=2, heads=2, mlp_dim=64)  # the registry's tiny variant


@pytest.mark.parametrize("size", [(1, 32, 32), (4, 32, 32), (3, 37, 45), (16, 32, 32)])
def test_tokens_and_embedding_shapes(size: tuple[int, int, int]) -> None:
    model = frame_transformer(**TINY)
    x = torch.randn(2, 3, *size)
    assert model.num_features == 32
    tokens = model.forward_features(model.check_input(x))
    assert tokens.shape == (2, size[0] + 1, 32)  # CLS + one token per frame
    emb = model(x)
    torch.testing.assert_close(emb, tokens[:, 0])  # forward = CLS token
    emb.square().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


def test_frame_model_is_frozen_and_stays_in_eval_mode() -> None:
    model = frame_transformer(**TINY).train()
    assert not model.frame_model.training and model.blocks.training
    assert all(not p.requires_grad for p in model.frame_model.parameters())
    stats = {k: v.clone() for k, v in model.frame_model.state_dict().items() if "running" in k}
    assert stats
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    for k, v in model.frame_model.state_dict().items():
        if k in stats:
            torch.testing.assert_close(v, stats[k], rtol=0, atol=0)  # BN statistics did not move
    assert all(p.grad is None for p in model.frame_model.parameters())
    assert model.embed_head.weight.grad is not None
    model.eval()
    model.train()
    assert not model.frame_model.training


def test_unfrozen_frame_model_trains() -> None:
    model = frame_transformer(**TINY, freeze_frame_model=False).train()
    assert model.frame_model.training
    model(torch.randn(2, 3, 2, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.frame_model.parameters())


def test_positional_embedding_rule() -> None:
    model = frame_transformer(**TINY, max_frames=2)
    with torch.no_grad():
        model.pos_embed.copy_(torch.tensor([[[9.0] * 32, [0.0] * 32, [4.0] * 32]]))  # CLS, frame 0, frame 1
    cls, p0, p1 = 9.0, 0.0, 4.0
    torch.testing.assert_close(model.position_embedding(1), model.pos_embed[:, :2])  # shorter: the first ones
    torch.testing.assert_close(model.position_embedding(2), model.pos_embed)
    # longer: linear interpolation of the frame embeddings, align_corners=False (sample at (i + 0.5) * 2/4 - 0.5)
    want = [cls, p0, 0.75 * p0 + 0.25 * p1, 0.25 * p0 + 0.75 * p1, p1]
    torch.testing.assert_close(model.position_embedding(4)[0, :, 0], torch.tensor(want))
    assert model(torch.randn(1, 3, 5, 32, 32)).shape == (1, 32)  # a clip longer than max_frames runs


def test_blocks_equal_timm_vit_blocks() -> None:
    """Our pre-norm block is timm's ViT block (qkv without bias, LayerNorm eps 1e-5, GELU): same names, same output."""
    from timm.models.vision_transformer import Block

    model = frame_transformer(**TINY).eval()
    reference = Block(dim=32, num_heads=2, mlp_ratio=2.0, qkv_bias=False).eval()
    reference.load_state_dict(model.blocks[0].state_dict(), strict=True)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.blocks[0](x), reference(x), rtol=1e-5, atol=1e-5)


def test_cacl_defaults_and_unknown_frame_model() -> None:
    model = FrameTransformer(frame_model="test_resnet")  # dim 768, 6 blocks, 6 heads, MLP 3072, 33 positions
    assert model.num_features == 768 and len(model.blocks) == 6 and model.pos_embed.shape == (1, 33, 768)
    assert model.blocks[0].attn.heads == 6 and model.blocks[0].mlp.fc1.out_features == 3072
    assert model.blocks[0].attn.qkv.bias is None
    with pytest.raises(ValueError, match=r"'resnet05' is not a timm model.*Did you mean"):
        frame_transformer(frame_model="resnet05")


def test_head_dropout_and_channels() -> None:
    model = frame_transformer(**TINY, num_classes=5, dropout=0.5, in_channels=2)
    assert model(torch.randn(2, 2, 3, 32, 32)).shape == (2, 5)
    model.reset_head(0)
    assert model(torch.randn(2, 2, 3, 32, 32)).shape == (2, 32)
