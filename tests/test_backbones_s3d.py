"""S3D in CoCLR's layout: shapes, odd inputs, the CoCLR key rename, and equal outputs with torchvision's S3D."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from videozoo.backbones.s3d import S3D, s3d

COCLR_KEYS = json.loads((Path(__file__).parent / "fixtures" / "coclr_s3d_keys.json").read_text())
# CoCLR's S3D registers every layer twice: blockN.i is the same module as the named layer.
COCLR_BLOCK_ALIASES = {
    "block1.0": "Conv_1a",
    "block2.1": "Conv_2b",
    "block2.2": "Conv_2c",
    "block3.1": "Mixed_3b",
    "block3.2": "Mixed_3c",
    "block4.1": "Mixed_4b",
    "block4.2": "Mixed_4c",
    "block4.3": "Mixed_4d",
    "block4.4": "Mixed_4e",
    "block4.5": "Mixed_4f",
    "block5.1": "Mixed_5b",
    "block5.2": "Mixed_5c",
}


def coclr_to_videozoo(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The rename rule: keep ``encoder_q.0.*``, strip that prefix, drop the ``block1.`` … ``block5.`` duplicates."""
    prefix = "encoder_q.0."
    return {
        k[len(prefix) :]: v
        for k, v in state_dict.items()
        if k.startswith(prefix) and not re.match(r"block[1-5]\.", k[len(prefix) :])
    }


def torchvision_to_videozoo(key: str) -> str:
    """torchvision ``s3d().features.*`` names → ours (same architecture, nested Sequentials instead of names)."""
    layers = {
        0: "Conv_1a",
        2: "Conv_2b",
        3: "Conv_2c",
        5: "Mixed_3b",
        6: "Mixed_3c",
        8: "Mixed_4b",
        9: "Mixed_4c",
        10: "Mixed_4d",
        11: "Mixed_4e",
        12: "Mixed_4f",
        14: "Mixed_5b",
        15: "Mixed_5c",
    }
    index, rest = re.fullmatch(r"features\.(\d+)\.(.+)", key).groups()
    layer = layers[int(index)]
    sep = {"0.0.": "conv1.", "0.1.": "bn1.", "1.0.": "conv2.", "1.1.": "bn2."}  # TemporalSeparableConv
    unit = {"0.": "conv.", "1.": "bn."}  # Conv3dNormActivation
    if layer in ("Conv_1a", "Conv_2c"):
        return layer + "." + sep[rest[:4]] + rest[4:]
    if layer == "Conv_2b":
        return layer + "." + unit[rest[:2]] + rest[2:]
    branch, rest = re.fullmatch(r"(branch\d)\.(.+)", rest).groups()
    if branch == "branch0":  # a bare Conv3dNormActivation; ours wraps it in a Sequential
        return f"{layer}.{branch}.0.{unit[rest[:2]]}{rest[2:]}"
    position, rest = rest.split(".", 1)
    if branch in ("branch1", "branch2") and position == "1":
        return f"{layer}.{branch}.1.{sep[rest[:4]]}{rest[4:]}"
    return f"{layer}.{branch}.{position}.{unit[rest[:2]]}{rest[2:]}"


def randomise_bn(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so equal outputs mean equal networks."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)


@pytest.mark.parametrize("gating", [False, True])
def test_coclr_checkpoint_keys_map_by_plain_rename(gating: bool) -> None:
    official = COCLR_KEYS["s3dg" if gating else "s3d"]
    model = s3d(gating=gating)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    renamed = {k[len("encoder_q.0.") :]: shape for k, shape in official.items()}
    kept = {k: shape for k, shape in renamed.items() if not re.match(r"block[1-5]\.", k)}
    assert kept == ours  # same names, same shapes, nothing missing or extra
    # every dropped key is a duplicate of a kept one, with the same shape
    for k, shape in renamed.items():
        if k not in kept:
            block, rest = re.fullmatch(r"(block\d\.\d)\.(.+)", k).groups()
            assert kept[f"{COCLR_BLOCK_ALIASES[block]}.{rest}"] == shape
    # the rule as a function on a (fake) checkpoint, head and key encoder included
    fake = {k: torch.zeros(shape) for k, shape in official.items()}
    fake |= {"encoder_q.2.weight": torch.zeros(1024, 1024, 1, 1, 1), "encoder_k.0.Conv_1a.conv1.weight": torch.zeros(1)}
    model.load_state_dict(coclr_to_videozoo(fake), strict=True)


def test_torchvision_s3d_is_the_same_network() -> None:
    from torchvision.models.video import s3d as tv_s3d

    tv = tv_s3d().eval()
    ours = s3d().eval()
    for m in ours.modules():  # torchvision uses eps 1e-3; CoCLR trained with PyTorch's 1e-5
        if isinstance(m, nn.BatchNorm3d):
            m.eps = 1e-3
    randomise_bn(tv)
    state = {torchvision_to_videozoo(k): v for k, v in tv.state_dict().items() if k.startswith("features.")}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        want = tv.features(x)  # (1, 1024, 1, 2, 2)
        got = ours.forward_features(x)
    assert got.shape == want.shape == (1, 1024, 1, 2, 2)
    assert want.abs().mean() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_pre_pool_shapes() -> None:
    """3x32x128² → 1024x4x4x4: widths checked at full size, the t/h/w arithmetic at 1/8 width (it is the same)."""
    model, tiny = s3d().eval(), s3d(width_mult=0.125).eval()
    assert (model.num_features, tiny.num_features) == (1024, 128)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 5, 17, 17)).shape == (1, 1024, 1, 1, 1)
        assert model(torch.randn(1, 3, 1, 37, 45)).shape == (1, 1024)
        assert tiny.forward_features(torch.randn(1, 3, 32, 128, 128)).shape == (1, 128, 4, 4, 4)
        assert tiny.forward_features(torch.randn(1, 3, 16, 112, 112)).shape == (1, 128, 2, 3, 3)


def test_min_input_is_the_exact_minimum() -> None:
    model = s3d(width_mult=0.125).eval()
    t, h, w = S3D.min_input
    with torch.no_grad():
        model.forward_features(torch.randn(1, 3, t, h, w))  # runs unpadded
        for smaller in ((t - 1, h, w), (t, h - 1, w), (t, h, w - 1)):
            with pytest.raises(RuntimeError):
                model.forward_features(torch.randn(1, 3, *smaller))
        for size in ((t, 32, 32), (6, 18, 19), (7, 31, 33), (9, 37, 45)):  # anything above the minimum runs
            assert model.forward_features(torch.randn(1, 3, *size)).shape[:2] == (1, 128)
        # below it, the input is replicate-padded: a 1-frame clip is the still video of that frame
        frame = torch.randn(1, 3, 1, 32, 32)
        torch.testing.assert_close(model(frame), model(frame.expand(-1, -1, t, -1, -1)))


@pytest.mark.parametrize("gating", [False, True])
def test_gated_full_size_builds_with_a_head(gating: bool) -> None:
    model = s3d(gating=gating, num_classes=7)
    n_gates = sum(1 for name, _ in model.named_parameters() if ".gating_b" in name)
    assert n_gates == (9 * 4 * 2 if gating else 0)  # 9 blocks x 4 branches x (weight, bias)
    assert model.fc.out_features == 7


@pytest.mark.parametrize("size", [(1, 32, 32), (4, 32, 32), (5, 17, 17), (7, 37, 45), (2, 8, 8)])
@pytest.mark.parametrize("gating", [False, True])
def test_tiny_forward_backward_on_odd_inputs(size: tuple[int, int, int], gating: bool) -> None:
    model = s3d(width_mult=0.125, gating=gating, num_classes=3, dropout=0.5)
    assert model.num_features == 128
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_in_channels_and_reset_head() -> None:
    model = s3d(width_mult=0.125, in_channels=2)
    assert model(torch.randn(2, 2, 3, 32, 32)).shape == (2, 128)
    model.reset_head(5)
    assert model(torch.randn(2, 2, 3, 32, 32)).shape == (2, 5)


def test_conv_has_no_bias_and_bn_has_pytorch_defaults() -> None:
    model = s3d(width_mult=0.125)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv3d))
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm3d))
