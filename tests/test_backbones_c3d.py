"""C3D-BN in the VCOP/CACL layout: official checkpoint keys, official outputs, shapes, any clip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videozoo.backbones.c3d import c3d

OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "cacl_c3d.json").read_text())


def test_pre_pool_map_and_cacl_retrieval_feature_at_16x112() -> None:
    with torch.device("meta"):  # shapes only, no compute
        model = c3d()
        feats = model.forward_features(torch.empty(2, 3, 16, 112, 112))
    assert model.num_features == 512
    assert feats.shape == (2, 512, 2, 7, 7)
    assert F.max_pool3d(feats, (1, 2, 2)).flatten(1).shape == (2, 9216)  # CACL's retrieval feature


def test_cacl_checkpoint_keys_map_by_prefix() -> None:
    prefix, head = OFFICIAL["checkpoint_prefix"], OFFICIAL["head_prefix"]
    with torch.device("meta"):
        classifier, backbone = c3d(num_classes=101), c3d()
    renamed = {
        k.replace("fc.", head, 1) if k.startswith("fc.") else k: tuple(v.shape)
        for k, v in classifier.state_dict().items()
    }
    assert renamed == {k: tuple(v) for k, v in OFFICIAL["keys"].items()}
    checkpoint = [prefix + k for k in OFFICIAL["keys"] if not k.startswith(head)] + ["module.queue"]
    assert {k.removeprefix(prefix) for k in checkpoint if k.startswith(prefix)} == set(backbone.state_dict())


def test_same_outputs_as_the_official_code() -> None:
    """Deterministic weights and input as the fixture's ``probe.rule`` describes, output of the official C3D."""
    probe = OFFICIAL["probe"]
    with torch.device("meta"):  # skip the random init: every float tensor is filled below
        model = c3d()
    model = model.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for key in sorted(state):
        value = state[key]
        if not value.is_floating_point():
            continue
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        elif key.endswith(".weight") and value.ndim == 5:
            value.copy_(torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5)
        else:
            value.copy_(torch.randn(value.shape, generator=g) * 0.1 + (1.0 if key.endswith(".weight") else 0.0))
    x = torch.randn(probe["input_shape"], generator=g)
    with torch.no_grad():
        y = model(x)[0]
    torch.testing.assert_close(y[:16], torch.tensor(probe["output_first16"]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(y.sum(), torch.tensor(probe["output_sum"]), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(y.norm(), torch.tensor(probe["output_norm"]), atol=1e-3, rtol=1e-4)


def test_convs_have_bias_and_width_scales_everything() -> None:
    model = c3d(width=8)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert [m.out_channels for m in convs] == [8, 16, 32, 32, 64, 64, 64, 64]
    assert all(m.bias is not None for m in convs)
    assert model.num_features == 64


@pytest.mark.parametrize(
    ("size", "pre_pool"), [((1, 32, 32), (1, 2, 2)), ((3, 37, 45), (1, 2, 2)), ((8, 64, 48), (1, 4, 3))]
)
def test_tiny_forward_backward_any_clip(size: tuple[int, int, int], pre_pool: tuple[int, int, int]) -> None:
    model = c3d(width=8, num_classes=3, dropout=0.5)
    x = torch.randn(2, 3, *size, requires_grad=True)
    model(x).sum().backward()  # clips shorter than 8 frames are padded by repeating the last one
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    assert model.forward_features(model.check_input(x.detach())).shape == (2, 64, *pre_pool)
