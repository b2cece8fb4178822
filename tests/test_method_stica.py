"""STiCA and GDT: the losses re-derived from their formulas, two backbone passes for any number of crops, the
GDT baseline, a two-process gloo step equal to the single-process step on the same global batch, and the export.

The methods run on contract backbones without BatchNorm and heads without BatchNorm or dropout, so that every
step is a deterministic function of its batch (batch statistics would differ between one process and two); the
export test uses the registered tiny backbones, because ``save_pretrained`` / ``load`` go through the registry.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import videozoo
from videozoo.backbones.base import VideoBackbone
from videozoo.heads.projection import GDTHead, MLPHead
from videozoo.heads.temporal import TransformerPooling
from videozoo.methods.base import Method
from videozoo.methods.stica import GDT, STiCA, batched_global_nce

try:  # tests/ as a package (pytest rootdir on sys.path) or as a plain directory on sys.path
    from .dist_utils import run_two_process, sgd_steps
except ImportError:
    from dist_utils import run_two_process, sgd_steps

DIM = 8
B_RANK = 4  # rows per rank in the two-process test


class TinyVideoNet(VideoBackbone):
    """conv 3→8 (stride 2) → ReLU → conv 8→12 → ReLU: a (B, 12, T/2, H/2, W/2) map; no BatchNorm."""

    num_features, in_channels, min_input = 12, 3, (1, 1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.conv1 = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(8, 12, 3, padding=1)
        self.calls = 0  # forward_features calls: the backbone passes
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class TinyAudioNet(VideoBackbone):
    """conv 1→6 (stride 2) → ReLU on (B, 1, F, T) spectrograms; pooled 6-d; no BatchNorm."""

    num_features, in_channels, input_layout, min_input = 6, 1, "b c f t", (1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.conv = nn.Conv2d(1, 6, 3, stride=2, padding=1)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def build(*, large: int = 2, small: int = 3, tlarge: int = 2, tsmall: int = 1, seed: int = 0) -> STiCA:
    torch.manual_seed(7)
    return STiCA(
        video_backbone=TinyVideoNet(num_classes=3),
        audio_backbone=TinyAudioNet(),
        pooling=TransformerPooling(dim=12, depth=1, heads=2, ffn_dim=16),
        video_head=MLPHead(in_dim=12, hidden_dim=12, out_dim=DIM),
        audio_head=MLPHead(in_dim=6, hidden_dim=6, out_dim=DIM),
        num_large_crops=large, num_small_crops=small, num_large_tcrops=tlarge, num_small_tcrops=tsmall,
        seed=seed,
    )  # fmt: skip


def make_batch(batch: int, *, seed: int = 0, shared_audio: bool = False) -> dict[str, torch.Tensor]:
    """Two views (B, 2, 3, 8, 14, 14) → maps (B, 12, 4, 7, 7) (STiCA's T=4, 7×7); spectrograms (B, 2, 1, 16, 12)."""
    g = torch.Generator().manual_seed(seed)
    audio = (
        torch.randn(batch, 1, 16, 12, generator=g) if shared_audio else torch.randn(batch, 2, 1, 16, 12, generator=g)
    )
    return {"video": torch.randn(batch, 2, 3, 8, 14, 14, generator=g), "audio": audio}


# -- the formulas, written out ------------------------------------------------------------------------
def nce(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """-1/B Σ_i log exp(q_i·k_i/T) / Σ_j exp(q_i·k_j/T), keys detached (GDT/STiCA's ``gdt_loss``)."""
    sim = query @ key.detach().T / temperature  # (B, B)
    return (sim.logsumexp(dim=1) - sim.diagonal()).mean()


def crop_embedding(method: STiCA, features: torch.Tensor, crop, full_t: int) -> torch.Tensor:
    """One crop through the official ``feat2nce``: slice → AdaptiveAvgPool3d((T, 1, 1)) → transformer → head."""
    t, h, w = crop.slices()
    piece = features[:, :, t, h, w]
    tokens = nn.AdaptiveAvgPool3d((full_t, 1, 1))(piece).flatten(2).transpose(1, 2)  # (B, T, D)
    return method.video_head(method.pooling(tokens))


def reference_loss(method: STiCA, batch: dict[str, torch.Tensor], plans: list[dict]) -> dict[str, torch.Tensor]:
    """STiCA's loss from REFERENCE.md / main_stica.py, crop by crop, term by term."""
    zs, crops = [], []
    for v in range(2):
        features = method.video_backbone.forward_features(batch["video"][:, v])  # (B, D, T, H, W)
        full_t = features.shape[2]
        zs.append(method.video_head(method.pooling(features.mean(dim=(3, 4)).transpose(1, 2))))
        crops.append({kind: [crop_embedding(method, features, c, full_t) for c in boxes]
                      for kind, boxes in plans[v].items()})  # fmt: skip
    audio = batch["audio"]
    a = [method.audio_head(method.audio_backbone(audio[:, v] if audio.ndim == 5 else audio)) for v in range(2)]
    t_av, t_crop = method.temperature_av, method.temperature_crop
    loss_av = sum(0.5 * (nce(zs[v], a[v], t_av) + nce(a[v], zs[v], t_av)) for v in range(2)) / 2
    terms = []
    for large, small in (("large", "small"), ("tlarge", "tsmall")):
        anchors, others = crops[0][large], crops[1]
        for i in range(1, len(anchors)):  # large ↔ large across views, i ≥ 1 (official `if i == 1`)
            b = others[large][i - 1]
            terms.append(0.5 * (nce(anchors[i], b, t_crop) + nce(b, anchors[i], t_crop)))
        for anchor in anchors:  # small (view 2) → large (view 1, detached)
            terms += [nce(s, anchor.detach(), t_crop) for s in others[small]]
    loss_crop = sum(terms) / len(terms)
    return {"loss": 0.5 * loss_crop + 0.5 * loss_av, "loss_av": loss_av, "loss_crop": loss_crop}


# -- losses -------------------------------------------------------------------------------------------
def test_batched_global_nce_equals_the_formula_term_by_term() -> None:
    q = F.normalize(torch.randn(3, 5, 4, dtype=torch.float64), dim=2)
    k = F.normalize(torch.randn(3, 5, 4, dtype=torch.float64), dim=2)
    losses, top1 = batched_global_nce(q, k, temperature=0.5)
    for n in range(3):
        torch.testing.assert_close(losses[n], nce(q[n], k[n], 0.5))
        torch.testing.assert_close(top1[n], ((q[n] @ k[n].T).argmax(dim=1) == torch.arange(5)).double().mean().float())


@pytest.mark.parametrize("shared_audio", [False, True])
def test_stica_loss_and_gradients_equal_the_formulas(shared_audio: bool) -> None:
    method = build()
    batch = make_batch(5, shared_audio=shared_audio)
    plans = [method.crop_plan((4, 7, 7), view=v) for v in range(2)]  # what this step (num_steps=0) will draw
    assert [len(plans[0][k]) for k in ("large", "small", "tlarge", "tsmall")] == [2, 0, 2, 0]  # anchors
    assert [len(plans[1][k]) for k in ("large", "small", "tlarge", "tsmall")] == [1, 3, 1, 1]
    out = method(batch)
    method.zero_grad()
    out["loss"].backward()
    got = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}

    method.zero_grad()
    ref = reference_loss(method, batch, plans)
    ref["loss"].backward()
    for key in ("loss", "loss_av", "loss_crop"):
        torch.testing.assert_close(out["logs"][key], ref[key].detach(), msg=key)
    torch.testing.assert_close(out["loss"], ref["loss"])
    assert got.keys() == {n for n, p in method.named_parameters() if p.grad is not None}
    for name, grad in got.items():  # detached keys: the gradient says which crops learn from which
        torch.testing.assert_close(grad, method.get_parameter(name).grad, msg=name)
    assert int(method.num_steps) == 1


def test_total_is_the_alpha_mix_and_alpha_can_be_scheduled() -> None:
    method = build().eval()  # eval: the same crops for both calls
    batch = make_batch(4)
    logs = method(batch)["logs"]
    torch.testing.assert_close(logs["loss"], 0.5 * logs["loss_crop"] + 0.5 * logs["loss_av"])
    assert {"crop_ll", "crop_sl", "crop_tll", "crop_tsl", "top1_va", "top1_av"} <= set(logs)
    logs = method(batch, alpha=0.2)["logs"]
    torch.testing.assert_close(logs["loss"], 0.8 * logs["loss_crop"] + 0.2 * logs["loss_av"])
    assert all(v.ndim == 0 and not v.requires_grad for v in logs.values())


def test_crop_positions_follow_seed_and_step_and_vary_over_steps() -> None:
    method = build(small=4)
    first = method.crop_plan((4, 7, 7), view=1)
    assert build(small=4).crop_plan((4, 7, 7), view=1) == first  # same seed and step: same boxes on every rank
    assert build(small=4, seed=1).crop_plan((4, 7, 7), view=1) != first
    starts = set()
    for _ in range(20):
        method(make_batch(2))
        plan = method.crop_plan((4, 7, 7), view=0)
        starts |= {c.h[0] for c in plan["large"]} | {c.t[0] for c in plan["tlarge"]}
    assert starts == {0, 1}  # large crops move (the official ones never leave offset 0)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_any_number_of_feature_crops_costs_two_backbone_passes(n: int) -> None:
    method = build(large=2, small=n, tlarge=2, tsmall=n)
    backbone = method.video_backbone
    pooled = []
    backbone.register_forward_hook(lambda *args: pooled.append(1))  # forward(): the pooled path, not used
    out = method(make_batch(3))
    out["loss"].backward()
    assert backbone.calls == 2 and not pooled  # one pass per view, however many crops
    assert (out["logs"]["crop_sl"].numel(), out["logs"]["crop_tsl"].numel()) == (1, 1)


# -- GDT ----------------------------------------------------------------------------------------------
def test_gdt_is_stica_without_crops_and_pooling() -> None:
    torch.manual_seed(3)
    method = GDT(video_backbone=TinyVideoNet(), audio_backbone=TinyAudioNet(),
                 video_head=MLPHead(in_dim=12, hidden_dim=12, out_dim=DIM),
                 audio_head=MLPHead(in_dim=6, hidden_dim=6, out_dim=DIM), temperature=0.07)  # fmt: skip
    assert isinstance(method, STiCA) and isinstance(method, Method)
    assert method.pooling is None and not any(method.counts.values())
    batch = make_batch(4)
    single = {"video": batch["video"][:, 0], "audio": batch["audio"][:, 0]}  # GDT's own recipe: one view
    out = method(single)
    z = method.video_head(method.video_backbone(single["video"]))  # the backbone's own (average) pooling
    a = method.audio_head(method.audio_backbone(single["audio"]))
    torch.testing.assert_close(out["loss"], 0.5 * (nce(z, a, 0.07) + nce(a, z, 0.07)))
    assert "loss_crop" not in out["logs"] and method.video_backbone.calls == 2
    two_views = method(batch)["loss"]  # two views: L_av averaged over them
    assert torch.isfinite(two_views)
    with pytest.raises(ValueError, match="pooling"):
        STiCA(video_backbone=TinyVideoNet(), audio_backbone=TinyAudioNet(), pooling=None)


def test_stica_defaults_are_the_papers_modules() -> None:
    method = STiCA(video_backbone=videozoo.create_model("r2plus1d_18_tiny", num_classes=5),
                   audio_backbone=videozoo.create_model("resnet9_audio_tiny"))  # fmt: skip
    assert isinstance(method.video_head, GDTHead) and isinstance(method.audio_head, GDTHead)
    assert method.pooling.depth == 2 and method.backbone.num_classes == 0
    assert method.pooling.transformer[0].ffn.lin1.out_features == 4 * 64  # the FFN scales with the width...
    full = STiCA(
        video_backbone=videozoo.create_model("r2plus1d_18"), audio_backbone=videozoo.create_model("resnet9_audio")
    )
    assert [layer.ffn.lin1.out_features for layer in full.pooling.transformer] == [2048, 2048]  # ...512 → 2048 (paper)
    assert (method.temperature_av, method.temperature_crop, method.alpha) == (0.1, 0.5, 0.5)
    with pytest.raises(ValueError, match="two views"):
        method({"video": torch.randn(2, 3, 8, 32, 32), "audio": torch.randn(2, 1, 16, 12)})


# -- export -------------------------------------------------------------------------------------------
def test_export_backbone_round_trips_through_save_pretrained(tmp_path) -> None:
    method = STiCA(video_backbone=videozoo.create_model("r2plus1d_18_tiny"),
                   audio_backbone=videozoo.create_model("resnet9_audio_tiny"), num_small_crops=1)  # fmt: skip
    batch = {"video": torch.randn(2, 2, 3, 8, 32, 32), "audio": torch.randn(2, 2, 1, 32, 24)}
    method(batch)["loss"].backward()
    exported = method.export_backbone()
    assert exported is not method.backbone and not exported.training and exported.num_classes == 0
    for (name, a), (_, b) in zip(exported.state_dict().items(), method.backbone.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 8, 32, 32)
    videozoo.save_pretrained(exported, tmp_path / "export", card={"recipe_command": "pytest"})
    torch.testing.assert_close(videozoo.load(str(tmp_path / "export"))(x), exported(x))
    audio = method.export_audio_backbone()
    assert audio is not method.audio_backbone and audio(torch.randn(2, 1, 32, 24)).shape == (2, audio.num_features)


# -- two processes ------------------------------------------------------------------------------------
def global_batches() -> list[dict]:
    return [make_batch(2 * B_RANK, seed=10 + s, shared_audio=s == 1) for s in range(2)]


def run_steps(state: dict, batches: list[dict], rows: slice) -> dict:
    """Two training steps (SGD between them) on ``rows`` of each global batch; DDP-style gradient averaging."""
    method = build()
    method.load_state_dict(state)
    return sgd_steps(method, batches, rows)


def two_process_steps(rank: int, world_size: int, state: dict, batches: list[dict]) -> dict:
    return run_steps(state, batches, slice(rank * B_RANK, (rank + 1) * B_RANK))


def test_two_process_step_equals_single_process_step() -> None:
    state, batches = build().state_dict(), global_batches()
    ranks = run_two_process(two_process_steps, state, batches)
    single = run_steps(state, batches, slice(None))
    for r in ranks:
        for step in range(2):
            torch.testing.assert_close(r[f"loss{step}"], single[f"loss{step}"], msg=f"loss of step {step}")
            assert r[f"grads{step}"].keys() == single[f"grads{step}"].keys()
            for name, grad in single[f"grads{step}"].items():
                torch.testing.assert_close(r[f"grads{step}"][name], grad, msg=f"{name} at step {step}")
        for name, value in single["state"].items():  # weights after two steps, the step counter
            torch.testing.assert_close(r["state"][name], value, msg=name)
