"""STiCA (Space-Time Crop & Attend) and the GDT audio-visual baseline it builds on.

Papers:
    Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
    Representation Learning (STiCA). ICCV 2021.
    Patrick, Asano, Kuznetsova, Fong, Henriques, Zweig, Vedaldi. On Compositions of Transformations in Contrastive
    Self-Supervised Learning (GDT). ICCV 2021.

One step, for two views x¹, x² of a clip (the same frames, augmented twice) and its audio s:

1. the video backbone runs **once per view**: Fᵛ = f(xᵛ), the pre-pool map (B, D, T, H, W);
2. zᵛ = g(pool(Fᵛ)) and aᵛ = h(f_a(sᵛ)), with g, h the :class:`~videozoo.heads.GDTHead` projections (L2-normalised)
   and pool the :class:`~videozoo.heads.TransformerPooling`;
3. feature crops of F¹ and F² (:mod:`~videozoo.methods.feature_crop`) go through the same pool and g: any number of
   crops costs no further backbone pass;
4. L_av = mean over views of ½ [NCE(zᵛ → a) + NCE(a → zᵛ)] at T = 0.1, the negatives being every other sample of
   the *global* batch (all ranks), the keys detached (official ``gdt_loss``);
5. L_crop = mean of the crop terms below, each an NCE at T = 0.5 against global-batch keys;
6. loss = (1 − α) L_crop + α L_av with α = 0.5; without crop terms (GDT) the loss is L_av.

Crop terms, as the official ``nce_crop_losses_dual`` (``main_stica.py``) pairs them, with L large and S small spatial
crops (and TL, TS temporal ones, paired the same way):

* view 1 holds the *anchors*, large crops A₀ … A_{L−1}; view 2 holds large crops B₁ … B_{L−1} and small crops
  s₀ … s_{S−1};
* large ↔ large across views: ½ [NCE(Aᵢ → Bᵢ) + NCE(Bᵢ → Aᵢ)] for i ≥ 1 (the official ``if i == 1``; it asserts
  L ≤ 2, so this is one pair for L = 2 and none for L = 1);
* small → large: NCE(sⱼ → Aᵢ) with Aᵢ detached, for every i and j (the small crops of view 2 learn to match the
  large ones of view 1, which receive no gradient through this term);
* L_crop is the mean over all these terms (the official ``sum(crop_losses) / sum(counters)``).

The official code also embeds crops that no term uses (view 1's small crops, view 2's large crop 0, and each small
crop once per large crop); they change nothing but the cost and are not computed here. Crop positions are drawn
uniformly over every valid offset (the official ones are not: see :mod:`~videozoo.methods.feature_crop`), from a
generator seeded by ``(seed, step, view)``: every rank draws the same boxes, and a resumed run the same sequence.
Crops of one kind go through pooling and head together (N·B rows), so the head's BatchNorm normalises over them
jointly where the official code calls it once per crop.

Transformer pooling of crops: the official pooling resamples time to a fixed number of steps before attending
(``AdaptiveAvgPool3d((4, 1, 1))`` for 1 s clips); ``resample_crops=True`` does the same, resampling each crop's
tokens to the full map's T. For crops that halve T this is an exact repetition, which attention without positional
embedding ignores; for 3 of 4 steps it interpolates.

Parameter names against the official ``Stica_TransformerFMCrop`` (``model.py``), for converters:

    official                              videozoo
    video_network.base.*  (fc dropped)    video_backbone.*
    audio_network.base.*  (fc dropped)    audio_backbone.*
    video_pooling.2.*                     pooling.*
    mlp_v.block_forward.{2,4,8}.*         video_head.{fc1,bn,fc2}.*   (GDTHead.official_keys)
    mlp_a.block_forward.{2,4,8}.*         audio_head.{fc1,bn,fc2}.*
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from videozoo.distributed import concat_all_gather, get_rank
from videozoo.heads.projection import GDTHead
from videozoo.heads.temporal import TransformerPooling
from videozoo.methods.base import Method, advance_steps, split_views, track_host_steps
from videozoo.methods.feature_crop import (
    PLACEMENTS,
    SPATIAL_FRACTIONS,
    TEMPORAL_FRACTIONS,
    Crop,
    crop_size,
    crop_starts,
    gather_crops,
    sample_crops,
)

__all__ = ["GDT", "STiCA", "batched_global_nce"]

# crop kind -> (size, temporal): "large"/"small" spatial crops, "tlarge"/"tsmall" temporal ones
CROP_KINDS = {
    "large": ("large", False),
    "small": ("small", False),
    "tlarge": ("large", True),
    "tsmall": ("small", True),
}


def batched_global_nce(queries: torch.Tensor, keys: torch.Tensor, *, temperature: float) -> tuple[torch.Tensor, ...]:
    """N independent InfoNCE terms against global-batch keys, with one all-gather for all of them.

    ``queries``, ``keys``: (N, B, d) L2-normalised; term n scores query row b of pair n against the keys of pair n
    on every rank, its own key (this rank's row b) being the positive. The keys are detached (GDT/STiCA's
    ``gdt_loss``). Returns ``(losses (N,), top1 (N,))``, each term the mean over the local rows: with DDP's gradient
    averaging this equals the single-process loss on the global batch (as :func:`~videozoo.losses.global_nce`).
    """
    gathered = concat_all_gather(rearrange(keys, "n b d -> b n d"))  # (W·B, N, d), rank-major rows
    logits = torch.einsum("nbd,knd->nbk", queries, gathered) / temperature  # (N, B, W·B)
    targets = torch.arange(queries.shape[1], device=queries.device) + get_rank() * queries.shape[1]
    losses = F.cross_entropy(
        rearrange(logits, "n b k -> b k n"), targets[:, None].expand(-1, queries.shape[0]), reduction="none"
    ).mean(dim=0)  # (N,)
    top1 = (logits.argmax(dim=2) == targets).float().mean(dim=1)  # (N,)
    return losses, top1


class STiCA(Method):
    """STiCA: audio-visual NCE plus feature-crop NCE, with transformer temporal pooling (module docstring).

    Batch (the collated output of ``VideoDataset(num_views=2, views_share_clip=True, audio_sample_rate=24000,
    audio_transform=<log filterbank>)``):

    * ``video`` (B, 2, C, T, H, W): two augmentations of one clip (GDT also takes one view, (B, C, T, H, W));
    * ``audio`` (B, 2, 1, F, T') — the spectrogram under each view — or (B, 1, F, T'), one for both views.

    Args:
        video_backbone: any backbone whose ``forward_features`` is a (B, D, T, H, W) map (GDT: any backbone).
        audio_backbone: any backbone taking the spectrograms (:func:`~videozoo.backbones.resnet9_audio`).
        pooling: a :class:`~videozoo.heads.TransformerPooling`, or its depth (2: STiCA; 0: average pooling), which
            builds one of the backbone's width with an FFN 4x as wide (512 → 2048 for R(2+1)D-18, as the paper);
            ``None`` uses the backbone's own pooled embedding (GDT; no crops then).
        video_head, audio_head: projections; default ``GDTHead(num_features → num_features → dim)``.
        dim: embedding width (256).
        head_dropout: dropout of the default heads (GDT/STiCA: 0.3; a tiny backbone's 64-d features learn
            far slower under it, so the smoke preset turns it off).
        num_large_crops, num_small_crops: spatial feature crops L and S (official example: 2 and 4).
        num_large_tcrops, num_small_tcrops: temporal feature crops TL and TS (official example: 2 and 1).
        spatial_fractions, temporal_fractions: crop sizes as fractions of the map (large, small).
        temperature_av, temperature_crop: NCE temperatures (0.1, 0.5).
        alpha: weight of L_av; the crop loss gets 1 − alpha (0.5).
        resample_crops: resample crop tokens to the full map's T before attention (official); see module docstring.
        crop_placement: ``"uniform"`` over every valid offset, or ``"official"`` (``get_fm_crop``'s exclusive
            bound: large spatial crops at (0, 0); see :mod:`~videozoo.methods.feature_crop`).
        audio_per_view: with one spectrogram for all views, (B, 1, F, T'), run the audio network and head once
            per view (main_stica.py: two dropout masks, two BatchNorm passes) instead of once for all.
        seed: seeds the crop positions together with the step count.
    """

    compile_verified = True  # tests/test_compile.py

    def __init__(
        self,
        *,
        video_backbone: nn.Module,
        audio_backbone: nn.Module,
        pooling: TransformerPooling | int | None = 2,
        video_head: nn.Module | None = None,
        audio_head: nn.Module | None = None,
        dim: int = 256,
        head_dropout: float = 0.3,
        num_large_crops: int = 2,
        num_small_crops: int = 4,
        num_large_tcrops: int = 2,
        num_small_tcrops: int = 1,
        spatial_fractions: tuple[float, float] = (SPATIAL_FRACTIONS["large"], SPATIAL_FRACTIONS["small"]),
        temporal_fractions: tuple[float, float] = (TEMPORAL_FRACTIONS["large"], TEMPORAL_FRACTIONS["small"]),
        temperature_av: float = 0.1,
        temperature_crop: float = 0.5,
        alpha: float = 0.5,
        resample_crops: bool = True,
        crop_placement: str = "uniform",
        audio_per_view: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if crop_placement not in PLACEMENTS:
            raise ValueError(f"crop_placement must be one of {', '.join(PLACEMENTS)}, got {crop_placement!r}")
        counts = {
            "large": num_large_crops,
            "small": num_small_crops,
            "tlarge": num_large_tcrops,
            "tsmall": num_small_tcrops,
        }
        if min(counts.values()) < 0:
            raise ValueError(f"crop counts must be >= 0, got {counts}")
        if pooling is None and any(counts.values()):
            raise ValueError("feature crops need a pooling (TransformerPooling or its depth); pooling=None is GDT")
        for backbone in (video_backbone, audio_backbone):
            backbone.reset_head(0, dropout=0.0)  # the pooled embedding; methods never touch the classifier
        width, audio_width = video_backbone.num_features, audio_backbone.num_features
        self.video_backbone, self.audio_backbone = video_backbone, audio_backbone
        if isinstance(pooling, int):
            # the FFN scales with the width (the paper's 2048 at 512); a fixed 2048 would be 32x a tiny backbone's 64
            pooling = TransformerPooling(dim=width, depth=pooling, ffn_dim=4 * width)
        if pooling is not None and pooling.dim != width:
            raise ValueError(f"pooling.dim={pooling.dim} differs from the backbone's num_features={width}")
        self.pooling = pooling
        self.video_head = video_head or GDTHead(in_dim=width, hidden_dim=width, out_dim=dim, dropout=head_dropout)
        self.audio_head = audio_head or GDTHead(
            in_dim=audio_width, hidden_dim=audio_width, out_dim=dim, dropout=head_dropout
        )
        self.counts = counts
        self.fractions = {
            "large": (spatial_fractions[0], temporal_fractions[0]),
            "small": (spatial_fractions[1], temporal_fractions[1]),
        }
        self.temperature_av, self.temperature_crop, self.alpha = temperature_av, temperature_crop, alpha
        self.resample_crops, self.seed = resample_crops, seed
        self.crop_placement, self.audio_per_view = crop_placement, audio_per_view
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))
        track_host_steps(self)

    @property
    def backbone(self) -> nn.Module:
        return self.video_backbone

    def export_audio_backbone(self) -> nn.Module:
        """A copy of the trained audio network, as :meth:`export_backbone` gives the video one."""
        backbone = copy.deepcopy(self.audio_backbone)
        backbone.reset_head(0)
        return backbone.requires_grad_(True).eval()

    # -- feature crops --------------------------------------------------------------------------------
    def crops_per_view(self, view: int) -> dict[str, int]:
        """How many crops of each kind view ``view`` (0 or 1) holds: anchors in view 0, the rest in view 1."""
        c = self.counts
        if view == 0:
            return {"large": c["large"], "small": 0, "tlarge": c["tlarge"], "tsmall": 0}
        large = c["large"] - 1 if c["large"] > 1 else 0  # B₁ … B_{L−1}
        tlarge = c["tlarge"] - 1 if c["tlarge"] > 1 else 0
        return {"large": large, "small": c["small"], "tlarge": tlarge, "tsmall": c["tsmall"]}

    def crop_plan(self, shape: tuple[int, int, int], *, view: int) -> dict[str, list[Crop]]:
        """This step's crops of view ``view`` on a map of (T, H, W) ``shape``: the same on every rank."""
        # torch's CPU generator keeps only 32 bits of a seed: mix the three numbers into 32 bits first
        mixed = np.random.SeedSequence([self.seed, self._host_steps, view]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(mixed))
        plan = {}
        for kind, num in self.crops_per_view(view).items():
            size, temporal = CROP_KINDS[kind]
            fraction = self.fractions[size][int(temporal)]
            plan[kind] = sample_crops(
                shape, num=num, fraction=fraction, temporal=temporal, placement=self.crop_placement, generator=generator
            )
        return plan

    @torch.compiler.disable
    def _draw_crops(self, shape: tuple[int, int, int], device: torch.device) -> list[dict[str, torch.Tensor]]:
        """This step's boxes of both views as ``{kind: starts (n, 3)}`` on ``device``; the step count moves on.

        Drawn on the host outside any compiled graph (:meth:`crop_plan`), the starts copied without waiting.
        """
        plans = [{kind: crop_starts(boxes, device=device) for kind, boxes in self.crop_plan(shape, view=v).items()
                  if boxes} for v in range(2)]  # fmt: skip
        if self.training:
            advance_steps(self)
        return plans

    def crop_size(self, shape: tuple[int, int, int], kind: str) -> tuple[int, int, int]:
        """The (t, h, w) of every crop of ``kind`` on a map of (T, H, W) ``shape`` (as :meth:`crop_plan` cuts them)."""
        size, temporal = CROP_KINDS[kind]
        return crop_size(shape, fraction=self.fractions[size][int(temporal)], temporal=temporal)

    def embed_map(self, features: torch.Tensor, *, time_steps: int | None = None) -> torch.Tensor:
        """(N, D, t, h, w) map or crops → pooling → head → (N, dim); ``time_steps``: resample tokens first."""
        tokens = reduce(features, "n d t h w -> n t d", "mean")  # space pooled to 1×1, time kept
        if time_steps is not None and self.resample_crops and self.pooling.depth > 0 and tokens.shape[1] != time_steps:
            tokens = rearrange(F.adaptive_avg_pool1d(rearrange(tokens, "n t d -> n d t"), time_steps), "n d t -> n t d")
        return self.video_head(self.pooling(tokens))

    # -- the method -----------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], *, alpha: float | None = None) -> dict[str, Any]:
        alpha = self.alpha if alpha is None else alpha
        video = batch["video"]
        views = split_views(video, num_views=video.shape[1]) if video.ndim == 6 else (video,)
        if any(self.counts.values()) and len(views) != 2:
            raise ValueError(
                f"STiCA's crop losses pair two views: expected video (B, 2, C, T, H, W), got {tuple(video.shape)}"
            )
        z, crops = [], []  # per view: (B, dim) and {kind: (n, B, dim)}
        if self.pooling is None:  # GDT: the backbone's own pooling
            z = [self.video_head(self.video_backbone(x)) for x in views]
        else:
            maps = [self.video_backbone.forward_features(x) for x in views]  # (B, D, T, H, W): one pass per view
            if maps[0].ndim != 5:
                raise ValueError(
                    f"STiCA needs a (B, D, T, H, W) pre-pool map, got {tuple(maps[0].shape)} from "
                    f"{type(self.video_backbone).__name__}.forward_features"
                )
            shape = tuple(maps[0].shape[2:])
            # the boxes as data, drawn once for both views: the compiled step is two graphs, before and after
            plans = self._draw_crops(shape, maps[0].device) if any(self.counts.values()) else [{}, {}]
            for features, plan in zip(maps, plans):
                z.append(self.embed_map(features))
                kinds = {}
                for kind, starts in plan.items():
                    cut = gather_crops(features, starts, self.crop_size(shape, kind))  # (n·B, D, t, h, w)
                    emb = self.embed_map(cut, time_steps=shape[0])  # (n·B, dim)
                    kinds[kind] = rearrange(emb.float(), "(n b) d -> n b d", n=starts.shape[0])
                crops.append(kinds)
        a = self._audio(batch["audio"], len(views))  # (V, B, dim)

        # losses in float32: under bf16 autocast, logits / 0.1 would lose the digits that tell keys apart
        z = torch.stack(z).float()  # (V, B, dim)
        loss_va, top1_va = batched_global_nce(z, a, temperature=self.temperature_av)  # (V,)
        loss_av_, top1_av = batched_global_nce(a, z, temperature=self.temperature_av)
        loss_av = 0.5 * (loss_va + loss_av_).mean()
        logs = {"loss_av": loss_av.detach(), "top1_va": top1_va.mean(), "top1_av": top1_av.mean()}

        terms = self.crop_terms(crops) if any(self.counts.values()) else {}
        if terms:
            loss_crop = torch.cat(list(terms.values())).mean()  # mean over every term, as the official counters
            loss = (1 - alpha) * loss_crop + alpha * loss_av
            logs["loss_crop"] = loss_crop.detach()
            logs.update({f"crop_{name}": t.detach().mean() for name, t in terms.items()})
        else:
            loss = loss_av
        logs["loss"] = loss.detach()
        if self.training and not any(self.counts.values()):  # with crops, _draw_crops counted the step
            self.num_steps += 1
        return {"loss": loss, "logs": logs}

    def _audio(self, audio: torch.Tensor, num_views: int) -> torch.Tensor:
        """(V, B, dim) audio embeddings: one pass per view's spectrogram, or for one spectrogram of all views one
        pass shared by them (or, ``audio_per_view``, one pass per view as main_stica.py)."""
        if audio.ndim == 5:  # (B, V, 1, F, T'): the audio under each view
            out = [self.audio_head(self.audio_backbone(s)) for s in split_views(audio, num_views=num_views)]
        elif self.audio_per_view:  # (B, 1, F, T') through the network once per view: own dropout masks
            out = [self.audio_head(self.audio_backbone(audio)) for _ in range(num_views)]
        else:  # (B, 1, F, T'): one clip's audio, one embedding for every view
            out = [self.audio_head(self.audio_backbone(audio))] * num_views
        return torch.stack(out).float()

    def crop_terms(self, crops: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The crop NCE terms (module docstring), by name: ``ll``/``sl`` spatial, ``tll``/``tsl`` temporal."""
        anchors, others = crops
        terms = {}
        for large, small, name in (("large", "small", ""), ("tlarge", "tsmall", "t")):
            if large not in anchors:
                continue
            a = anchors[large]  # (L, B, d) view 1: A₀ … A_{L−1}
            if large in others:  # Aᵢ ↔ Bᵢ for i ≥ 1, symmetric, keys detached
                b = others[large]  # (L−1, B, d)
                forward, _ = batched_global_nce(a[1:], b, temperature=self.temperature_crop)
                backward, _ = batched_global_nce(b, a[1:], temperature=self.temperature_crop)
                terms[f"{name}ll"] = 0.5 * (forward + backward)
            if small in others:  # sⱼ → Aᵢ for every (i, j); Aᵢ is detached (keys always are)
                s = others[small]  # (S, B, d)
                n_large, n_small = a.shape[0], s.shape[0]
                queries = s.unsqueeze(0).expand(n_large, -1, -1, -1).flatten(0, 1)  # (L·S, B, d)
                keys = a.unsqueeze(1).expand(-1, n_small, -1, -1).flatten(0, 1)  # (L·S, B, d)
                terms[f"{name}sl"], _ = batched_global_nce(queries, keys, temperature=self.temperature_crop)
        return terms


class GDT(STiCA):
    """GDT's audio-visual baseline: the STiCA module without feature crops and without transformer pooling.

    The video embedding is the backbone's own pooled output (global average for R(2+1)D-18), so any backbone works;
    the loss is L_av alone, averaged over however many views the batch holds (one in GDT's own recipe: ``video``
    (B, C, T, H, W), ``audio`` (B, 1, F, T')). GDT's published K400 run used T = 0.07 (``main_gdt.py``
    ``--nce_t``); ``recipes/stica.py --preset gdt_k400`` sets it.
    """

    compile_verified = True  # tests/test_compile.py

    def __init__(
        self,
        *,
        video_backbone: nn.Module,
        audio_backbone: nn.Module,
        video_head: nn.Module | None = None,
        audio_head: nn.Module | None = None,
        dim: int = 256,
        head_dropout: float = 0.3,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(
            video_backbone=video_backbone,
            audio_backbone=audio_backbone,
            pooling=None,
            video_head=video_head,
            audio_head=audio_head,
            dim=dim,
            head_dropout=head_dropout,
            num_large_crops=0,
            num_small_crops=0,
            num_large_tcrops=0,
            num_small_tcrops=0,
            temperature_av=temperature,
        )
