"""3D ResNets: weight ports against torchvision (R(2+1)D-18, R3D-18, MC3-18) and the official CACL/VCOP keys."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import video as tv_video

from videozoo.backbones import resnet3d

FIXTURES = Path(__file__).parent / "fixtures"
TORCHVISION_TWINS = ["r2plus1d_18", "r3d_18", "mc3_18"]
VCOP = {"r3d": resnet3d.vcop_r3d, "r21d": resnet3d.vcop_r21d}
ALL = {name: getattr(resnet3d, name) for name in TORCHVISION_TWINS} | {f"vcop_{k}": v for k, v in VCOP.items()}


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN affine parameters and running statistics, so that eval mode tests them too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            for t, scale, shift in ((m.weight, 0.2, 1.0), (m.bias, 0.1, 0.0), (m.running_mean, 0.1, 0.0)):
                t.data.copy_(torch.randn(t.shape, generator=g) * scale + shift)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def pre_pool_shape(arch: str, t: int, h: int, w: int, width: int) -> tuple[int, ...]:
    """Stem and stages 2-4 halve h and w, rounding up; stages 2-4 halve t too (not MC3)."""
    return (8 * width, t if arch == "mc3_18" else math.ceil(t / 8), math.ceil(h / 16), math.ceil(w / 16))


# -- torchvision twins ----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=TORCHVISION_TWINS)
def twins(request) -> tuple[str, nn.Module, nn.Module]:
    torch.manual_seed(0)
    theirs = getattr(tv_video, request.param)(num_classes=400).eval()
    ours = getattr(resnet3d, request.param)(num_classes=400).eval()
    randomise_batchnorm(theirs, seed=1)
    return request.param, ours, theirs


def test_state_dict_names_and_shapes_are_torchvisions(twins) -> None:
    name, ours, theirs = twins
    assert shapes(ours) == shapes(theirs)
    headless = {k: v for k, v in shapes(theirs).items() if not k.startswith("fc.")}
    with torch.device("meta"):
        assert shapes(getattr(resnet3d, name)()) == headless
    assert ours.num_features == 512


def test_torchvision_weights_give_torchvisions_outputs(twins) -> None:
    name, ours, theirs = twins
    x = torch.randn(1, 3, 4, 32, 32)  # (B, C, T, H, W)
    maps = []
    hook = theirs.layer4.register_forward_hook(lambda _m, _i, out: maps.append(out))
    try:
        ours.load_state_dict(theirs.state_dict(), strict=True)  # torchvision -> videozoo
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(ours.forward_features(x), maps[-1], atol=1e-5, rtol=1e-4)
            assert maps[-1].shape[1:] == pre_pool_shape(name, 4, 32, 32, 64)

        randomise_batchnorm(ours, seed=2)  # videozoo -> torchvision
        theirs.load_state_dict(ours.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)
    finally:
        hook.remove()


def test_train_mode_step_matches_torchvision(twins) -> None:
    """Same batch statistics, same running statistics after one step (gradients follow from equal functions)."""
    _, ours, theirs = twins
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 2, 32, 32)  # BN sees 1x2x2 values per channel in layer4
    try:
        torch.testing.assert_close(ours.train()(x), theirs.train()(x), atol=1e-5, rtol=1e-4)
        ours_after = dict(ours.named_buffers())
        for key, value in theirs.named_buffers():
            torch.testing.assert_close(ours_after[key], value, atol=1e-6, rtol=1e-5)
    finally:
        ours.eval(), theirs.eval()


# -- every family member --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_pre_pool_map_at_16x112(name: str) -> None:
    with torch.device("meta"):  # shapes only, no compute
        model = ALL[name]()
        feats = model.forward_features(torch.empty(2, 3, 16, 112, 112))
    assert model.num_features == 512
    assert feats.shape == (2, 512, 16 if name == "mc3_18" else 2, 7, 7)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(1, 32, 32), (3, 37, 45)])
def test_tiny_forward_backward_any_clip(name: str, size: tuple[int, int, int]) -> None:
    depth = {"layers": (1, 1, 1, 1)} if name == "vcop_r3d" else {}  # as the registry's r3d_tiny
    model = ALL[name](width=8, num_classes=3, dropout=0.5, **depth)
    assert model.num_features == 64
    x = torch.randn(2, 3, *size, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    padded = tuple(max(s, m) for s, m in zip(size, model.min_input))  # pad_to_minimum
    feats = model.forward_features(model.check_input(x.detach()))
    arch = "mc3_18" if name == "mc3_18" else "r3d"
    assert feats.shape == (2, *pre_pool_shape(arch, *padded, width=8))


def test_width_scales_every_stage_and_r2plus1d_mid_widths() -> None:
    model = resnet3d.r2plus1d_18(width=16)
    assert model.stem[0].out_channels == 45 * 16 // 64 and model.stem[3].out_channels == 16
    assert [getattr(model, f"layer{i}")[0].conv2[1].num_features for i in (1, 2, 3, 4)] == [16, 32, 64, 128]
    full = resnet3d.r2plus1d_18()
    assert full.layer2[0].conv1[0][0].out_channels == (64 * 128 * 27) // (64 * 9 + 3 * 128) == 230
    assert full.layer2[0].conv2[0][0].out_channels == 230  # torchvision reuses the block's mid width


# -- VCOP / CACL ----------------------------------------------------------------------------------
def fill_like_the_probe(model: nn.Module) -> torch.Tensor:
    """The deterministic weights and input described by the fixture's ``probe.rule``."""
    g = torch.Generator().manual_seed(0)
    sd = model.state_dict()
    for key in sorted(sd):
        value = sd[key]
        if not value.is_floating_point():
            continue
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        elif key.endswith(".weight") and value.ndim == 5:
            value.copy_(torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5)
        else:
            value.copy_(torch.randn(value.shape, generator=g) * 0.1 + (1.0 if key.endswith(".weight") else 0.0))
    return torch.randn(1, 3, 8, 32, 32, generator=g)


@pytest.mark.parametrize("arch", VCOP)
def test_cacl_checkpoint_keys_map_by_prefix(arch: str) -> None:
    official = json.loads((FIXTURES / f"cacl_{arch}.json").read_text())
    prefix, head = official["checkpoint_prefix"], official["head_prefix"]
    with torch.device("meta"):
        classifier, backbone = VCOP[arch](num_classes=101), VCOP[arch]()
    renamed = {k.replace("fc.", head, 1) if k.startswith("fc.") else k: v for k, v in shapes(classifier).items()}
    assert renamed == {k: tuple(v) for k, v in official["keys"].items()}

    # a CACL checkpoint: the query encoder's base network under a prefix, beside everything else
    checkpoint = {prefix + k: torch.zeros(v, device="meta") for k, v in official["keys"].items()}
    checkpoint["module.queue"] = torch.zeros(128, 6400, device="meta")
    converted = {k.removeprefix(prefix): v for k, v in checkpoint.items() if k.startswith(prefix)}
    converted = {k: v for k, v in converted.items() if not k.startswith(head)}
    assert set(converted) == set(backbone.state_dict())


@pytest.mark.parametrize("arch", VCOP)
def test_same_outputs_as_the_official_code(arch: str) -> None:
    probe = json.loads((FIXTURES / f"cacl_{arch}.json").read_text())["probe"]
    with torch.device("meta"):  # skip the random init: every float tensor is filled below
        model = VCOP[arch]()
    model = model.to_empty(device="cpu").eval()
    x = fill_like_the_probe(model)
    assert list(x.shape) == probe["input_shape"]
    with torch.no_grad():
        y = model(x)[0]
    torch.testing.assert_close(y[:16], torch.tensor(probe["output_first16"]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y.sum(), torch.tensor(probe["output_sum"]), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(y.norm(), torch.tensor(probe["output_norm"]), atol=1e-3, rtol=1e-4)


def test_vcop_mid_widths_follow_the_formula() -> None:
    model = resnet3d.vcop_r21d()
    assert model.conv1.spatial_conv.out_channels == (3 * 7 * 7 * 3 * 64) // (7 * 7 * 3 + 3 * 64) == 83
    assert model.conv3.block1.downsampleconv.spatial_conv.out_channels == (64 * 128) // (64 + 128)
    assert model.conv3.block1.downsampleconv.temporal_conv.stride == (2, 1, 1)
    assert model.conv5.block1.conv2.spatial_conv.out_channels == (27 * 512 * 512) // (9 * 512 + 3 * 512)
