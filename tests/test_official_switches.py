"""The switches that make a ``_released`` preset reproduce the official code (issue 15, rows 1-10), each against a
hand-computed expectation. Defaults keep the earlier behaviour; the other test files check that."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnF
from einops import rearrange

from videozoo.data.transforms import (
    BatchedVideoAugment,
    CoCLRViews,
    MapSamples,
    MultiView,
    PairedTransform,
    VideoTrain,
    preset,
)
from videozoo.data.transforms import functional as VF
from videozoo.data.transforms.train import sample_box
from videozoo.methods.feature_crop import sample_offsets
from videozoo.training import schedules

# -- row 1: CoCLR's view regimes ---------------------------------------------------------------------------------


def _marked_sample(flow: bool = False) -> dict:
    """Two clips of constant grey levels 40 and 200 (uint8 (2, C, T, H, W)), their frame indices 0..3 and 10..13."""
    video = torch.stack([torch.full((3, 4, 16, 16), 40), torch.full((3, 4, 16, 16), 200)]).to(torch.uint8)
    sample = {"video": video, "frame_indices": torch.tensor([[0, 1, 2, 3], [10, 11, 12, 13]]), "label": 3}
    if flow:
        sample["flow"] = video.clone()
    return sample


# strong = crop + flip + brightness x 0.5 always; weak = crop + flip: a view's level tells clip and strength apart
STRONG = VideoTrain(crop_size=8, scale=(0.5, 1.0), jitter=((0.5, 0.5), 0, 0, 0), jitter_p=1.0, grey_p=0.0, blur_p=0.0,
                    mean=0.0, std=1.0)  # fmt: skip
LEVELS = {(0, True): 20 / 255, (0, False): 40 / 255, (1, True): 100 / 255, (1, False): 200 / 255}


def _decode(view: torch.Tensor) -> tuple[int, bool]:
    level = float(view.mean())
    return min(LEVELS, key=lambda k: abs(LEVELS[k] - level))


def test_two_clips_regime_augments_each_clip_strongly() -> None:
    views = CoCLRViews(STRONG, regime="two_clips")
    for seed in range(20):
        torch.manual_seed(seed)
        out = views(_marked_sample())
        assert [_decode(v) for v in out["video"]] == [(0, True), (1, True)]


def test_official_regime_rates_match_the_transform_controller() -> None:
    """TransformController([TwoClipTransform(p=0.3), OneClipTransform], [0.5, 0.5]): P(one clip) = 1/2, a view strong
    with 1/2 * 1/2 + 1/2 * 0.3 = 0.4, both strong 1/2 * 0.09 = 0.045, neither 1/2 * 0.49 = 0.245."""
    views, n = CoCLRViews(STRONG, regime="official"), 4000
    one_clip = strong = both = neither = 0
    torch.manual_seed(0)
    for _ in range(n):
        clips, is_strong = views.plan()
        one_clip += clips[0] == clips[1]
        if clips[0] == clips[1]:
            assert is_strong[0] != is_strong[1]  # one view strong, the other crop + flip
        strong += sum(is_strong)
        both += all(is_strong)
        neither += not any(is_strong)

    def close(count: int, p: float, total: int = n) -> bool:
        return abs(count / total - p) < 4 * math.sqrt(p * (1 - p) / total)

    assert close(one_clip, 0.5) and close(strong, 0.4, 2 * n) and close(both, 0.045) and close(neither, 0.245)


def test_official_one_clip_case_uses_one_clip_for_both_views() -> None:
    views = CoCLRViews(STRONG, regime="official")
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        out = MapSamples([_marked_sample()], views)[0]
        decoded = [_decode(v) for v in out["video"]]
        seen.add(tuple(decoded))
        if decoded[0][0] == decoded[1][0]:  # one clip: exactly one strong view, frame indices of that clip twice
            assert decoded[0][1] != decoded[1][1]
            assert torch.equal(out["frame_indices"][0], out["frame_indices"][1])
        else:
            assert decoded[0][0] == 0 and decoded[1][0] == 1
    assert {((0, True), (0, False)), ((1, False), (1, True)), ((0, False), (1, False))} <= seen


def test_map_samples_forwards_dataset_attributes() -> None:
    class Data(list):
        num_failures = 7

    wrapped = MapSamples(Data([1, 2]), lambda x: 10 * x)
    assert wrapped[1] == 20 and len(wrapped) == 2 and wrapped.num_failures == 7


# -- row 2: colour on flow (the official augments RGB and flow as one sequence) ----------------------------------


@pytest.mark.parametrize("colour_on_flow", [False, True])
def test_colour_reaches_flow_only_when_asked(colour_on_flow: bool) -> None:
    views = CoCLRViews(PairedTransform(STRONG, colour_on_flow=colour_on_flow), regime="two_clips")
    torch.manual_seed(0)
    out = views(_marked_sample(flow=True))
    assert [_decode(v) for v in out["video"]] == [(0, True), (1, True)]
    assert [_decode(v) for v in out["flow"]] == [(0, colour_on_flow), (1, colour_on_flow)]


# -- row 3: CoCLR's RandomSizedCrop: one try, then the whole frame -------------------------------------------------


def test_resize_full_takes_the_whole_frame_when_the_box_does_not_fit() -> None:
    """10 x 100 frame, area >= 90 %: every box is ~30 x 30 and cannot fit, so CoCLR stretches the whole frame;
    torchvision's rule gives the largest centred box of aspect 4/3 (13 x 10) instead."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        assert sample_box(10, 100, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), fallback="resize_full", generator=g) == (
            0, 0, 10, 100)  # fmt: skip
        assert sample_box(10, 100, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), generator=g) == (0, 43, 10, 13)


def test_resize_full_fit_rate_matches_the_official_rule() -> None:
    """P(box fits) on 128 x 171 frames, area U(0.2, 1), aspect U(3/4, 4/3), transposed with p 1/2, rounded as
    utils/augmentation.py:106-107: integrated on a grid, against the sampler's whole-frame rate."""
    h, w, n = 128, 171, 6000
    grid, fits = 400, 0
    for i in range(grid):
        area = h * w * (0.2 + 0.8 * (i + 0.5) / grid)
        for j in range(grid):
            aspect = 3 / 4 + (4 / 3 - 3 / 4) * (j + 0.5) / grid
            bw, bh = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            fits += (bw <= w and bh <= h) + (bh <= w and bw <= h)
    expected = fits / (2 * grid * grid)
    g = torch.Generator().manual_seed(0)
    boxes = [sample_box(h, w, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), fallback="resize_full", generator=g)
             for _ in range(n)]  # fmt: skip
    rate = sum(b != (0, 0, h, w) for b in boxes) / n
    assert 0.7 < expected < 0.95 and abs(rate - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    assert all(min(t, l_) >= 0 and t + bh <= h and l_ + bw <= w for t, l_, bh, bw in boxes)


# -- row 6: STiCA's augmentation (GDT datasets/video_transforms.py) -----------------------------------------------


def test_bgr_grey_weights() -> None:
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    assert torch.allclose(VF.grey(red, weights="bgr"), torch.full_like(red, 0.114))  # 0.299 goes to channel 2
    assert torch.allclose(VF.grey(red, weights="luma"), torch.full_like(red, 0.2989), atol=1e-4)


def _colour_only(**kw) -> VideoTrain:
    return VideoTrain(crop_size=4, scale=(1.0, 1.0), ratio=(1.0, 1.0), grey_p=0.0, blur_p=0.0, flip_p=0.0,
                      mean=0.45, std=0.225, **kw)  # fmt: skip


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_normalise_first_jitters_normalised_values_unclamped(factor: float) -> None:
    """Brightness f: GDT scales the normalised value, f·(x − 0.45)/0.225; torchvision scales the pixel and clamps,
    (min(f·x, 1) − 0.45)/0.225."""
    clip = torch.full((2, 3, 4, 4), 230, dtype=torch.uint8)  # x = 230/255
    x = 230 / 255
    kw = dict(jitter=((factor, factor), 0, 0, 0), jitter_p=1.0)
    gdt, ours = _colour_only(normalise_first=True, **kw)(clip), _colour_only(**kw)(clip)
    assert torch.allclose(gdt, torch.full_like(gdt, factor * (x - 0.45) / 0.225), atol=1e-5)
    assert torch.allclose(ours, torch.full_like(ours, (min(factor * x, 1.0) - 0.45) / 0.225), atol=1e-5)


def test_normalise_first_contrast_and_saturation_blend_towards_bgr_grey() -> None:
    torch.manual_seed(0)
    clip = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    x = (clip.float() / 255 - 0.45) / 0.225
    g = (0.114 * x[:, 0] + 0.587 * x[:, 1] + 0.299 * x[:, 2]).unsqueeze(1)
    for op, target in (("contrast", g.mean(dim=(1, 2, 3), keepdim=True)), ("saturation", g)):
        jitter = [0, 0, 0, 0]
        jitter[("brightness", "contrast", "saturation").index(op)] = (1.5, 1.5)
        t = _colour_only(normalise_first=True, grey_weights="bgr", jitter=tuple(jitter), jitter_p=1.0)
        expected = 1.5 * x + (1 - 1.5) * target  # GDT's blend(images, grey, alpha), no clamp
        torch.testing.assert_close(t(clip), rearrange(expected, "t c h w -> c t h w"), atol=1e-5, rtol=0)


def test_fixed_blur_is_kornias_layout() -> None:
    """kornia <= 0.5 GaussianBlur2d((11, 11), (0.1, 2.0)): kernel[i, j] = g_0.1[i] * g_2[j], i down the rows: a
    point spreads along its row with sigma 2 (11 taps) and not down its column."""
    image = torch.zeros(1, 3, 21, 21)
    image[..., 10, 10] = 1.0
    t = preset("stica_released", crop_size=21, scale=(1.0, 1.0), ratio=(1.0, 1.0), blur_p=1.0, jitter_p=0.0,
               grey_p=0.0, flip_p=0.0)  # fmt: skip
    out = VF.blur(image, t.params(21, 21).blur_sigma, kernel_size=11)
    taps = torch.exp(-0.5 * (torch.arange(-5, 6, dtype=torch.float64) / 2.0) ** 2)
    torch.testing.assert_close(out[0, 0, 10, 5:16].double(), taps / taps.sum(), atol=1e-6, rtol=0)
    assert out[0, 0, 9, 10] < 1e-6 and out[0, 0, 11, 10] < 1e-6  # sigma 0.1 down the column


def test_no_antialias_is_plain_bilinear_interpolation() -> None:
    torch.manual_seed(0)
    clip = torch.rand(2, 3, 40, 40)
    t = VideoTrain(crop_size=10, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grey_p=0.0,
                   blur_p=0.0, mean=0.0, std=1.0, antialias=False)  # fmt: skip
    expected = nnF.interpolate(clip, size=(10, 10), mode="bilinear", align_corners=False)  # video_transforms.py:114
    torch.testing.assert_close(t(clip), rearrange(expected, "t c h w -> c t h w"), atol=1e-6, rtol=0)
    smooth = VideoTrain(crop_size=10, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grey_p=0.0,
                        blur_p=0.0, mean=0.0, std=1.0)(clip)  # fmt: skip
    assert not torch.allclose(smooth, t(clip), atol=1e-3)  # antialiased: another filter


def test_batched_path_bgr_grey_and_unsupported_switches() -> None:
    x = torch.rand(2, 3, 2, 4, 4)
    t = VideoTrain(crop_size=4, grey_weights="bgr")
    grey = BatchedVideoAugment(t)._grey_op(x, {"grey": torch.tensor([True, False]), "grey_channel": torch.zeros(2)})
    expected = VF.grey(rearrange(x[0], "c t h w -> t c h w"), weights="bgr")
    torch.testing.assert_close(grey[0], rearrange(expected, "t c h w -> c t h w"))
    assert torch.equal(grey[1], x[1])
    with pytest.raises(ValueError, match="normalise_first, blur_fixed_xy"):
        BatchedVideoAugment(preset("stica_released"))


def test_released_stica_preset_and_multiview() -> None:
    t = preset("stica_released")
    assert (t.normalise_first, t.grey_weights, t.blur_fixed_xy, t.antialias) == (True, "bgr", True, False)
    clip = torch.randint(0, 256, (4, 3, 64, 80), dtype=torch.uint8)
    views = MultiView(t, views=2)(clip)
    assert views.shape == (2, 3, 4, 112, 112) and not torch.equal(views[0], views[1])
    with pytest.raises(ValueError, match="hue"):
        VideoTrain(normalise_first=True, jitter=(0.4, 0.4, 0.4, 0.1))


# -- row 7: STiCA's crop placement (main_stica.py get_fm_crop: np.random.randint(0, 7 - window)) ------------------


@pytest.mark.parametrize(("size", "window", "official", "uniform"), [
    (7, 6, {0}, {0, 1}),  # large spatial: always at 0 officially
    (7, 4, {0, 1, 2}, {0, 1, 2, 3}),  # small spatial: never the last row/column
    (4, 3, {0}, {0, 1}),  # large temporal, T=4
    (4, 2, {0, 1}, {0, 1, 2}),  # small temporal, T=4
    (8, 6, {0, 1}, {0, 1, 2}),  # large temporal, T=8
    (2, 2, {0}, {0}),  # a window filling the axis (the official randint(0, 0) would fail)
])  # fmt: skip
def test_crop_offsets_official_and_uniform(size: int, window: int, official: set, uniform: set) -> None:
    g = torch.Generator().manual_seed(0)
    assert set(sample_offsets(size, window, 400, placement="official", generator=g)) == official
    assert set(sample_offsets(size, window, 400, generator=g)) == uniform


# -- row 8: STiCA's audio network once per view -------------------------------------------------------------------


@pytest.mark.parametrize("per_view", [False, True])
def test_audio_per_view_runs_the_network_once_per_view(per_view: bool) -> None:
    import videozoo
    from videozoo.methods import STiCA

    torch.manual_seed(0)
    method = STiCA(video_backbone=videozoo.create_model("r3d_18_tiny"),
                   audio_backbone=videozoo.create_model("resnet9_audio_tiny"), pooling=1, head_dropout=0.5,
                   audio_per_view=per_view)  # fmt: skip
    calls = []
    method.audio_backbone.register_forward_hook(lambda *_: calls.append(1))
    audio = torch.randn(4, 1, 40, 99)  # (B, 1, F, T'): one spectrogram for both views
    embeddings = method._audio(audio, 2)
    assert len(calls) == (2 if per_view else 1)
    assert torch.equal(embeddings[0], embeddings[1]) is not per_view  # two dropout masks, or one embedding


# -- row 10: GDT's warm-up, once per epoch ------------------------------------------------------------------------


def test_gdt_warmup_is_a_staircase_of_epochs() -> None:
    """GradualWarmupScheduler(multiplier=64, total_epoch=10) over base lr 0.01 (main_gdt.py:164-168), stepped per
    epoch: epoch e < 10 runs at 0.01 * (63 e / 10 + 1); then 0.64, x0.1 at each milestone."""
    epochs, steps = 200, 50
    schedule = schedules.warmup_multistep(warmup=10 / epochs, start=0.01 / 0.64, milestones=(150 / epochs,),
                                          epochs=epochs)  # fmt: skip
    for epoch in (0, 1, 5, 9, 10, 149, 150, 199):
        for step in (0, steps - 1):
            lr = 0.64 * schedule((epoch * steps + step) / (epochs * steps))
            expected = 0.01 * (63 * epoch / 10 + 1) if epoch < 10 else 0.64 * (0.1 if epoch >= 150 else 1)
            assert lr == pytest.approx(expected, rel=1e-9), (epoch, step)
    per_step = schedules.warmup_multistep(warmup=10 / 151, start=0.01 / 0.64)  # STiCA: np.linspace per iteration
    assert 0.64 * per_step(5 / 151) == pytest.approx(0.01 + 0.63 * 0.5)
