"""InfoNCE (MoCo on video, CoCLR stage 1) and UberNCE (label positives): a step re-derived by hand.

The methods run on :class:`TinyVideoNet`, a two-conv backbone that honours the contract (and has no BatchNorm,
so shuffle-BN changes nothing and every step is reproducible by hand); the export test uses a registered tiny
backbone, because ``save_pretrained`` / ``load`` go through the registry.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import videozoo
from videozoo.backbones.base import VideoBackbone
from videozoo.methods import InfoNCE, Method, UberNCE, mean_positive_nce, split_views

T = 0.1
DIM = 8


class TinyVideoNet(VideoBackbone):
    """conv 3→8 (stride 2) → ReLU → conv 8→12 → ReLU; pooled 12-d. A contract backbone with no BatchNorm."""

    num_features, in_channels, min_input = 12, 3, (1, 1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0, norm: bool = False) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.conv1 = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm3d(8) if norm else nn.Identity()
        self.conv2 = nn.Conv3d(8, 12, 3, padding=1)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.bn(self.conv1(x)))))  # (B, 12, T/2, H/2, W/2)


def clips(batch: int, views: int = 2, *, seed: int = 0) -> torch.Tensor:
    """(B, V, 3, 4, 8, 8) random clips."""
    return torch.randn(batch, views, 3, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def embed(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x).float()


# -- InfoNCE ----------------------------------------------------------------------------------------
def test_infonce_forward_backward_and_contract() -> None:
    method = InfoNCE(backbone=TinyVideoNet(num_classes=5), dim=DIM, queue_size=16, temperature=T)
    assert isinstance(method, Method) and method.backbone.num_classes == 0  # head removed through reset_head
    out = method({"video": clips(4)}, momentum=0.99)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert {"loss", "top1", "queue_fill"} <= set(out["logs"])
    assert all(not v.requires_grad for v in out["logs"].values())
    out["loss"].backward()
    assert all(p.grad is not None for p in method.encoder_q.parameters())
    assert all(p.grad is None and not p.requires_grad for p in method.encoder_k.parameters())


def test_infonce_loss_equals_direct_computation() -> None:
    method = InfoNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=6, temperature=T)
    x = clips(3)
    queue = method.queue.features.clone()
    out = method({"video": x}, momentum=1.0)  # m = 1: the key encoder stays the initial copy
    q = F.normalize(embed(method.encoder_q, x[:, 0]), dim=1)
    k = embed(method.encoder_k, x[:, 1])
    rows = []
    for i in range(3):
        pos = float(q[i] @ k[i]) / T
        negs = [float(q[i] @ n) / T for n in queue]
        rows.append(-pos + math.log(math.exp(pos) + sum(math.exp(n) for n in negs)))
    assert out["loss"].item() == pytest.approx(sum(rows) / 3, rel=1e-5)


def test_infonce_momentum_update_happens_before_the_keys() -> None:
    method = InfoNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=8, temperature=T)
    with torch.no_grad():  # make the online network differ from its momentum copy, as after a step
        for p in method.encoder_q.parameters():
            p.add_(0.1 * torch.randn_like(p))
    old_k = {n: p.clone() for n, p in method.encoder_k.encoder.named_parameters()}
    online = dict(method.encoder_q.named_parameters())
    x = clips(4)
    method({"video": x}, momentum=0.75)
    for name, p in method.encoder_k.encoder.named_parameters():
        torch.testing.assert_close(p, 0.75 * old_k[name] + 0.25 * online[name].detach())
    # the enqueued keys come from the updated key encoder
    torch.testing.assert_close(method.queue.features[:4], embed(method.encoder_k, x[:, 1]))


def test_infonce_queue_fills_and_wraps() -> None:
    method = InfoNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=10, temperature=T)
    keys = []
    for step in range(3):  # 3 x 4 entries into 10 slots: the third batch wraps around
        x = clips(4, seed=step)
        out = method({"video": x}, momentum=1.0)
        keys.append(embed(method.encoder_k, x[:, 1]))
        # the fill of the queue this step's loss saw: before its own keys went in
        assert out["logs"]["queue_fill"].item() == pytest.approx(min(1.0, 4 * step / 10))
    keys = torch.cat(keys)  # (12, DIM)
    assert method.queue.full and int(method.queue.ptr) == 2
    torch.testing.assert_close(method.queue.features[2:10], keys[2:10])
    torch.testing.assert_close(method.queue.features[:2], keys[10:12])


def test_infonce_eval_mode_changes_nothing() -> None:
    method = InfoNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=8, temperature=T).eval()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    with torch.no_grad():
        method({"video": clips(4)}, momentum=0.5)
    for key, value in method.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_infonce_trains_the_flow_entry_and_any_registered_backbone() -> None:
    backbone = videozoo.create_model("r3d_tiny")
    method = InfoNCE(backbone=backbone, dim=DIM, queue_size=8, input_key="flow")
    out = method({"flow": torch.randn(2, 2, 3, 2, 32, 32), "video": None}, momentum=0.99)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


def test_split_views_checks_the_view_axis() -> None:
    a, b = split_views(clips(3))
    assert a.shape == b.shape == (3, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="num_views=2"):
        split_views(torch.randn(3, 3, 4, 8, 8))


def test_export_backbone_honours_the_contract_and_round_trips(tmp_path) -> None:
    method = InfoNCE(backbone=videozoo.create_model("r3d_tiny", num_classes=3), dim=DIM, queue_size=8)
    method({"video": torch.randn(2, 2, 3, 2, 32, 32)}, momentum=0.9)["loss"].backward()
    exported = method.export_backbone()
    assert exported is not method.backbone and not exported.training and exported.num_classes == 0
    assert all(p.requires_grad for p in exported.parameters())
    for (name, a), (_, b) in zip(exported.state_dict().items(), method.backbone.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 2, 32, 32)
    feats = exported(x)
    assert feats.shape == (2, exported.num_features)
    assert exported.forward_features(exported.check_input(x)).shape[:2] == (2, exported.num_features)
    videozoo.save_pretrained(exported, tmp_path / "export", card={"recipe_command": "pytest"})
    loaded = videozoo.load(str(tmp_path / "export"))
    torch.testing.assert_close(loaded(x), feats)
    exported.reset_head(4)  # the copy is independent of the method
    assert exported(x).shape == (2, 4) and method.backbone.num_classes == 0


# -- UberNCE ------------------------------------------------------------------------------------------
def test_mean_positive_nce_equals_direct_computation() -> None:
    logits = torch.randn(3, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    rows = []
    for i in range(3):
        log_z = math.log(sum(math.exp(v) for v in logits[i].tolist()))
        picked = [logits[i, j].item() - log_z for j in range(5) if mask[i, j]]
        rows.append(-sum(picked) / len(picked))
    assert mean_positive_nce(logits, mask).item() == pytest.approx(sum(rows) / 3, rel=1e-9)
    with pytest.raises(ValueError):
        mean_positive_nce(logits, torch.zeros(3, 5, dtype=torch.bool))


def test_ubernce_positives_are_the_same_label_and_the_loss_is_official() -> None:
    method = UberNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=6, temperature=T)
    method.queue.label.copy_(torch.tensor([0, 1, 2, 0, 1, -1]))  # -1: an empty slot
    label = torch.tensor([0, 1, 3])
    mask = method.positive_mask(label)
    expected = torch.tensor([[1, 1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(mask, expected)

    x = clips(3)
    queue = method.queue.features.clone()
    out = method({"video": x, "label": label}, momentum=1.0)
    q, k = embed(method.encoder_q, x[:, 0]), embed(method.encoder_k, x[:, 1])
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / T
    torch.testing.assert_close(out["loss"].detach(), mean_positive_nce(logits, expected))
    assert torch.equal(method.queue.label[:3], label)  # labels travel with the keys


def test_ubernce_needs_labels() -> None:
    method = UberNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=6)
    with pytest.raises(ValueError, match="label"):
        method({"video": clips(2), "label": torch.tensor([0, -1])})
