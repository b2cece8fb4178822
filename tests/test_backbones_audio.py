"""GDT / STiCA audio ResNet-9: GDT key rename, equality with torchvision's ResNet, any spectrogram duration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from videozoo.backbones import InputShapeError
from videozoo.backbones.audio import resnet9_audio

GDT_KEYS = json.loads((Path(__file__).parent / "fixtures" / "gdt_audio_keys.json").read_text())


def gdt_to_videozoo(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The rename rule: keep ``audio_network.base.*``, strip that prefix, drop GDT's unused 1000-way ``fc``."""
    prefix = "audio_network.base."
    return {
        k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix) and not k.startswith(prefix + "fc.")
    }


def test_gdt_checkpoint_keys_map_by_plain_rename() -> None:
    model = resnet9_audio()
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = GDT_KEYS["keys"]
    kept = {
        k[len("audio_network.base.") :]: shape
        for k, shape in official.items()
        if not k.startswith("audio_network.base.fc.")
    }
    assert kept == ours
    assert official["audio_network.base.fc.weight"] == [1000, 512]  # torchvision's head, never applied by GDT
    fake = {k: torch.zeros(shape) for k, shape in official.items()}
    fake |= {"video_network.base.stem.0.weight": torch.zeros(1), "mlp_a.block_forward.2.weight": torch.zeros(1)}
    model.load_state_dict(gdt_to_videozoo(fake), strict=True)


def test_same_network_as_torchvision_resnet_with_one_block_per_stage() -> None:
    """GDT's ResNet-9 is torchvision's ResNet(BasicBlock, [1, 1, 1, 1]) with a 1-channel stem: equal outputs."""
    from torchvision.models.resnet import BasicBlock, ResNet

    reference = ResNet(BasicBlock, [1, 1, 1, 1])
    reference.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    reference.fc = nn.Identity()
    g = torch.Generator().manual_seed(1)
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    model = resnet9_audio()
    model.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    model.eval()
    x = torch.randn(2, 1, 257, 99)  # 1 s of STiCA's 257-bin log filterbank
    with torch.no_grad():
        want = reference(x)
        assert model.forward_features(x).shape == (2, 512, 9, 4)
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(40, 50), (257, 199), (1, 1), (13, 7), (257, 5)])
def test_tiny_forward_backward_any_duration(size: tuple[int, int]) -> None:
    model = resnet9_audio(width=8, num_classes=4, dropout=0.3)
    assert model.num_features == 64
    out = model(torch.randn(2, 1, *size))  # (B, 1, F, T)
    assert out.shape == (2, 4)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_pre_pool_map_and_head_contract() -> None:
    model = resnet9_audio(width=8).eval()
    x = torch.randn(3, 1, 257, 2 * 99)  # 2 s
    with torch.no_grad():
        feats = model.forward_features(model.check_input(x))
        assert feats.shape == (3, 64, 9, 7)
        torch.testing.assert_close(model(x), feats.mean(dim=(2, 3)))
    model.reset_head(10)
    assert model(x).shape == (3, 10)
    assert resnet9_audio(in_channels=2, width=8)(torch.randn(2, 2, 40, 50)).shape == (2, 64)


def test_wrong_layout_says_what_is_expected() -> None:
    model = resnet9_audio(width=8)
    with pytest.raises(InputShapeError, match=r"\(B, C, F, T\) with C=1"):
        model(torch.randn(2, 257, 99))  # channel axis forgotten
    with pytest.raises(InputShapeError, match=r"\(B, C, F, T\)"):
        model(torch.randn(2, 1, 4, 32, 32))  # a video clip
