"""Augmentations: one set of parameters per clip, preset numbers, eval crops, paired RGB/flow, batched path."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from einops import rearrange

from videozoo.data.transforms import (
    EVAL_PRESETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRAIN_PRESETS,
    BatchedVideoAugment,
    PairedTransform,
    VideoEval,
    VideoTrain,
    eval_preset,
    preset,
)
from videozoo.data.transforms import functional as VF
from videozoo.data.transforms.presets import plain


def _still_clip(t: int = 4, c: int = 3, h: int = 60, w: int = 80) -> torch.Tensor:
    """A clip whose frames are all the same random image."""
    return torch.randint(0, 256, (1, c, h, w), dtype=torch.uint8).expand(t, -1, -1, -1).contiguous()


@pytest.mark.parametrize("name", ["coclr", "cacl", "stica"])
def test_identical_frames_stay_identical(name: str) -> None:
    """Same random parameters for every frame: a still clip stays still whatever the augmentation draws."""
    transform = preset(name, crop_size=32, jitter_p=1.0, grey_p=0.5, blur_p=0.5 if name != "cacl" else 0.0)
    clip = _still_clip(t=3, h=40, w=48)
    for seed in range(5):
        torch.manual_seed(seed)
        out = transform(clip)  # (C, T, H, W)
        assert out.shape == (3, 3, 32, 32)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, out[:, :1].expand_as(out), rtol=0, atol=1e-6)


def test_parameter_ranges_and_rates() -> None:
    t = preset("coclr")
    n, h, w = 1500, 240, 320
    params = [t.params(h, w) for _ in range(n)]
    for p in params:
        top, left, bh, bw = p.box
        assert top >= 0 and left >= 0 and top + bh <= 1 + 1e-9 and left + bw <= 1 + 1e-9
        area = bh * bw
        aspect = (bw * w) / (bh * h)
        assert 0.2 - 0.01 <= area <= 1.0 or (bh, bw) == (1.0, 1.0)
        assert 3 / 4 - 0.02 <= aspect <= 4 / 3 + 0.02
        if p.jitter:
            assert 0.6 <= p.jitter["brightness"] <= 1.4 and 0.6 <= p.jitter["contrast"] <= 1.4
            assert 0.6 <= p.jitter["saturation"] <= 1.4 and -0.1 <= p.jitter["hue"] <= 0.1
            assert sorted(p.jitter_order) == sorted(p.jitter)
        if p.blur_sigma is not None:
            assert 0.1 <= p.blur_sigma[0] == p.blur_sigma[1] <= 2.0
        assert p.grey_channel in (0, 1, 2)

    def rate(flag) -> float:
        return sum(map(flag, params)) / n

    assert rate(lambda p: p.jitter is not None) == pytest.approx(0.8, abs=0.05)
    assert rate(lambda p: p.grey) == pytest.approx(0.2, abs=0.05)
    assert rate(lambda p: p.blur_sigma is not None) == pytest.approx(0.5, abs=0.05)
    assert rate(lambda p: p.flip) == pytest.approx(0.5, abs=0.05)
    areas = torch.tensor([p.box[2] * p.box[3] for p in params])
    image = torch.empty(h, w)
    reference = [math.prod(T.RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3])[2:]) for _ in range(n)]
    reference = torch.tensor(reference) / (h * w)
    assert areas.mean() == pytest.approx(float(reference.mean()), abs=0.03)  # torchvision's rule, same distribution


def test_presets_carry_reference_numbers() -> None:
    coclr, cacl, stica = (plain(TRAIN_PRESETS[name]) for name in ("coclr", "cacl", "stica"))
    assert coclr["crop_size"] == 128 and coclr["scale"] == (0.2, 1.0) and coclr["ratio"] == (3 / 4, 4 / 3)
    assert coclr["jitter"] == (0.4, 0.4, 0.4, 0.1) and coclr["jitter_p"] == 0.8
    assert coclr["grey_p"] == 0.2 and coclr["grey_mode"] == "channel_copy"
    assert coclr["blur_p"] == 0.5 and coclr["blur_sigma"] == (0.1, 2.0) and coclr["flip_p"] == 0.5
    assert coclr["mean"] == IMAGENET_MEAN and coclr["std"] == IMAGENET_STD
    assert cacl["resize"] == (128, 171) and cacl["crop_size"] == 112 and cacl["scale"] is None
    assert cacl["jitter"] == (0.4, 0.4, 0.4, 0.1) and cacl["jitter_p"] == 0.8 and cacl["grey_p"] == 0.2
    assert cacl["blur_p"] == 0.0 and cacl["mean"] == 0.0 and cacl["std"] == 1.0
    assert stica["crop_size"] == 112 and stica["scale"] == (0.14, 1.0)
    assert stica["jitter"][:3] == (0.4, 0.4, 0.4) and stica["jitter_p"] == 0.8
    assert stica["grey_p"] == 0.2 and stica["blur_p"] == 0.5 and stica["flip_p"] == 0.5
    assert stica["mean"] == (0.45,) * 3 and stica["std"] == (0.225,) * 3
    assert EVAL_PRESETS["stica"]["num_crops"] == 3 and EVAL_PRESETS["stica"]["crop_size"] == 128
    assert preset("coclr", crop_size=64).crop_size == (64, 64)
    with pytest.raises(KeyError):
        preset("simclr")


def test_cacl_is_resize_then_plain_crop() -> None:
    """scale=None: the box is exactly crop_size on the (128, 171) frame, so no zoom beyond the resize."""
    t = preset("cacl")
    for _ in range(50):
        _, _, h, w = t.params(240, 320).box
        assert h * 128 == pytest.approx(112) and w * 171 == pytest.approx(112)
    assert t(_still_clip(h=240, w=320)).shape == (3, 4, 112, 112)


def test_eval_values_match_direct_computation() -> None:
    clip = torch.randint(0, 256, (5, 3, 48, 64), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = VideoEval(resize=48, crop_size=32, mean=mean, std=std)(clip)  # no resampling: short side already 48
    top, left = 8, 16
    expected = (clip[:, :, top : top + 32, left : left + 32].float() / 255 - torch.tensor(mean)[:, None, None]) / (
        torch.tensor(std)[:, None, None]
    )
    torch.testing.assert_close(out, expected.permute(1, 0, 2, 3))

    resized = VideoEval(resize=24, crop_size=(24, 32), mean=0.0, std=1.0)(clip)  # short side 48 -> 24
    direct = torch.nn.functional.interpolate(clip.float(), size=(24, 32), mode="bilinear", antialias=True)
    direct = direct.round().clamp(0, 255) / 255
    assert resized.shape == (3, 5, 24, 32)
    assert (resized - direct.permute(1, 0, 2, 3)).abs().max() <= 1.5 / 255


def test_eval_shapes_channels_and_tuple_resize() -> None:
    clip = torch.randint(0, 256, (4, 3, 240, 320), dtype=torch.uint8)
    assert VideoEval(resize=128, crop_size=112, mean=IMAGENET_MEAN, std=IMAGENET_STD)(clip).shape == (3, 4, 112, 112)
    assert eval_preset("cacl")(clip).shape == (3, 4, 112, 112)
    grey = VideoEval(resize=64, crop_size=64, mean=0.5, std=0.5)(clip[:, :1])
    assert grey.shape == (1, 4, 64, 64)
    with pytest.raises(ValueError, match="3 values but the clip has 1"):
        VideoEval(resize=64, crop_size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD)(clip[:, :1])
    assert VideoEval(resize=64, crop_size=56, mean=0, std=1, num_crops=10)(clip).shape == (10, 3, 4, 56, 56)


def test_three_crops_along_the_long_side() -> None:
    landscape = torch.randint(0, 256, (2, 3, 32, 80), dtype=torch.uint8)
    three = VideoEval(resize=32, crop_size=32, mean=0.0, std=1.0, num_crops=3)
    one = VideoEval(resize=32, crop_size=32, mean=0.0, std=1.0)
    out = three(landscape)
    assert out.shape == (3, 3, 2, 32, 32)
    as_float = landscape.float().permute(1, 0, 2, 3) / 255
    torch.testing.assert_close(out[0], as_float[..., :32])  # left edge
    torch.testing.assert_close(out[1], one(landscape))  # centre == the single crop
    torch.testing.assert_close(out[2], as_float[..., -32:])  # right edge
    portrait = landscape.transpose(-1, -2).contiguous()  # 80 x 32: top / middle / bottom
    out = three(portrait)
    as_float = portrait.float().permute(1, 0, 2, 3) / 255
    torch.testing.assert_close(out[0], as_float[..., :32, :])
    torch.testing.assert_close(out[2], as_float[..., -32:, :])


def test_paired_rgb_flow_share_crop_and_flip() -> None:
    geometric = VideoTrain(crop_size=24, scale=(0.2, 1.0), jitter_p=0, grey_p=0, blur_p=0, flip_p=0.5, mean=0, std=1)
    paired = PairedTransform(geometric)
    rgb = torch.randint(0, 256, (3, 3, 40, 56), dtype=torch.uint8)
    flips = 0
    for seed in range(8):
        torch.manual_seed(seed)
        rgb_out, flow_out = paired(rgb, rgb.clone())  # same content in both: same crop/flip -> same output
        torch.testing.assert_close(rgb_out, flow_out)
        torch.manual_seed(seed)
        flips += geometric.params(40, 56).flip
    assert 0 < flips < 8  # both branches were exercised


def test_paired_colour_only_on_rgb() -> None:
    t = VideoTrain(crop_size=24, jitter_p=1.0, grey_p=1.0, blur_p=1.0, mean=0.5, std=0.5)
    rgb = torch.randint(0, 256, (3, 3, 40, 56), dtype=torch.uint8)
    flow = torch.randint(0, 256, (3, 3, 20, 28), dtype=torch.uint8)  # stored at half resolution
    torch.manual_seed(3)
    rgb_out, flow_out = PairedTransform(t, flow_mean=0.0, flow_std=1.0)(rgb, flow)
    torch.manual_seed(3)
    params = t.params(40, 56)
    torch.testing.assert_close(rgb_out, t.apply(rgb, params))
    torch.testing.assert_close(flow_out, t.apply(flow, params, colour=False, mean=0.0, std=1.0))
    assert flow_out.shape == rgb_out.shape == (3, 3, 24, 24)


def test_paired_negate_flow_x_on_flip() -> None:
    t = VideoTrain(
        crop_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0, grey_p=0, blur_p=0, flip_p=1.0, mean=0, std=1
    )
    flow = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    plain = PairedTransform(t)(flow, flow)[1]
    negated = PairedTransform(t, negate_flow_x=True)(flow, flow)[1]
    torch.testing.assert_close(plain, flow.flip(-1).float().permute(1, 0, 2, 3) / 255)  # CoCLR: mirror only
    torch.testing.assert_close(negated[0], 1 - plain[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(negated[1:], plain[1:])


def test_grey_modes() -> None:
    clip = torch.rand(2, 3, 8, 8)
    copied = VF.grey(clip, mode="channel_copy", channel=1)
    assert torch.equal(copied, clip[:, [1, 1, 1]])
    luma = VF.grey(clip, mode="luma")
    torch.testing.assert_close(
        luma[:, 0], 0.2989 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2], atol=1e-4, rtol=0
    )


# -- batched -------------------------------------------------------------------------------------------------
def test_batched_shapes_and_frame_consistency() -> None:
    aug = BatchedVideoAugment(preset("coclr", crop_size=32, jitter_p=1.0, grey_p=0.5))
    still = torch.randint(0, 256, (4, 3, 1, 40, 56), dtype=torch.uint8).expand(-1, -1, 5, -1, -1)
    out = aug(still)
    assert out.shape == (4, 3, 5, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out), rtol=0, atol=1e-5)
    same = still[:1].expand(4, -1, -1, -1, -1)
    out = aug(same)
    assert not torch.allclose(out[0], out[1])  # per-sample parameters


def test_batched_geometry_matches_per_clip_path() -> None:
    kwargs = dict(crop_size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0, grey_p=0, blur_p=0, mean=0.5, std=0.5)
    clip = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    for flip_p in (0.0, 1.0):
        per_clip = VideoTrain(flip_p=flip_p, **kwargs)(clip)
        batched = BatchedVideoAugment(VideoTrain(flip_p=flip_p, **kwargs))(clip.permute(1, 0, 2, 3)[None])
        torch.testing.assert_close(batched[0], per_clip, atol=1e-5, rtol=0)
    crop = VideoTrain(**{**kwargs, "crop_size": 16})
    rgb = torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8)
    x, flow = BatchedVideoAugment(crop)(rgb, flow=rgb.clone())
    torch.testing.assert_close(x, flow)  # flow shares each sample's box and flip


@pytest.mark.parametrize("op", ["brightness", "contrast", "saturation", "hue"])
def test_batched_colour_ops_match_torchvision(op: str) -> None:
    aug = BatchedVideoAugment(preset("coclr"))
    x = torch.rand(2, 3, 2, 12, 12)
    factor = {"hue": torch.tensor([0.08, -0.05])}.get(op, torch.tensor([0.7, 1.3]))
    p = {name: None for name in ("brightness", "contrast", "saturation", "hue")}
    p[op], p["order"] = factor, torch.tensor([0, 1, 2, 3])
    out = aug._jitter(x, p)
    for b in range(2):
        frames = x[b].permute(1, 0, 2, 3)  # (T, C, H, W) for torchvision
        expected = getattr(F, f"adjust_{op}")(frames, float(factor[b])).permute(1, 0, 2, 3)
        torch.testing.assert_close(out[b], expected, atol=2e-3 if op == "hue" else 1e-5, rtol=0)


def test_batched_blur_and_grey_match_per_clip_ops() -> None:
    aug = BatchedVideoAugment(preset("coclr"))
    x = torch.rand(2, 3, 2, 20, 20)
    p = {
        "blur_sigma": torch.tensor([0.7, 1.6]),
        "blur_on": torch.tensor([True, False]),
        "grey": torch.tensor([True, False]),
        "grey_channel": torch.tensor([2, 0]),
    }
    blurred = aug._blur(x, p)
    k = 2 * math.ceil(3 * 2.0) + 1  # kernel of the largest sigma, as the batched path uses
    expected = F.gaussian_blur(x[0].permute(1, 0, 2, 3), [k, k], [0.7, 0.7]).permute(1, 0, 2, 3)
    torch.testing.assert_close(blurred[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(blurred[1], x[1])
    greyed = aug._grey_op(x, p)
    assert torch.equal(greyed[0], x[0, [2, 2, 2]]) and torch.equal(greyed[1], x[1])


def test_batched_parameter_rates() -> None:
    aug = BatchedVideoAugment(preset("stica"))
    p = aug.sample_params(2000, 128, 171)
    assert p["flip"].float().mean() == pytest.approx(0.5, abs=0.05)
    assert p["jitter_on"].float().mean() == pytest.approx(0.8, abs=0.05)
    assert p["grey"].float().mean() == pytest.approx(0.2, abs=0.05)
    on = p["jitter_on"]
    assert p["brightness"][on].min() >= 0.6 and p["brightness"][on].max() <= 1.4
    assert (p["brightness"][~on] == 1).all() and p["hue"] is None  # STiCA jitters no hue
    area = p["box"][:, 2] * p["box"][:, 3]
    assert area.min() >= 0.14 - 0.01 and area.max() <= 1.0


# -- colour cast ---------------------------------------------------------------------------------------------
def test_channel_gain_scales_each_channel_and_is_drawn_last() -> None:
    """A per-clip cast: out = clamp(clip x gain_c); the gains' logs ~ U(-g, g); the other draws unchanged."""
    kwargs = dict(
        crop_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0, grey_p=0, blur_p=0, flip_p=0, mean=0.0, std=1.0
    )
    cast = VideoTrain(channel_gain=0.5, **kwargs)
    clip = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    params = cast.params(16, 16, generator=torch.Generator().manual_seed(0))
    expected = (clip.float() / 255 * torch.tensor(params.gains).view(1, 3, 1, 1)).clamp(0, 1).permute(1, 0, 2, 3)
    torch.testing.assert_close(cast.apply(clip, params), expected, atol=1e-6, rtol=0)
    logs = torch.tensor([cast.params(16, 16).gains for _ in range(2000)]).log()
    assert logs.abs().max() <= 0.5 and logs.min() < -0.45 and logs.max() > 0.45
    assert logs.mean().abs() < 0.03 and abs(float(torch.corrcoef(logs.T)[0, 1])) < 0.1  # channels independent
    for name in ("coclr", "stica"):  # drawn last: the presets' draws (and figures) stay as they were without it
        plain = preset(name).params(240, 320, generator=torch.Generator().manual_seed(3))
        with_cast = preset(name, channel_gain=0.3).params(240, 320, generator=torch.Generator().manual_seed(3))
        assert plain.gains is None and dataclasses.replace(with_cast, gains=None) == plain
    assert cast.without_colour().params(16, 16).gains is None
    with pytest.raises(ValueError, match="channel_gain must be >= 0"):
        VideoTrain(channel_gain=-0.1)


def test_channel_gain_reaches_rgb_only_and_batched_path_matches() -> None:
    train = VideoTrain(
        channel_gain=0.6,
        crop_size=16,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        jitter_p=0,
        grey_p=0,
        blur_p=0,
        flip_p=0,
        mean=0.0,
        std=1.0,
    )
    rgb = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    rgb_out, flow_out = PairedTransform(train)(rgb, rgb.clone())
    torch.testing.assert_close(flow_out, rgb.float().div(255).permute(1, 0, 2, 3))  # flow: no cast
    assert not torch.allclose(rgb_out, flow_out)
    aug = BatchedVideoAugment(train, generator=torch.Generator().manual_seed(0))
    p = aug.sample_params(500, 16, 16)
    assert p["gains"].shape == (500, 3) and p["gains"].log().abs().max() <= 0.6
    assert "gains" not in BatchedVideoAugment(preset("coclr")).sample_params(4, 16, 16)
    batch = rearrange(rgb, "t c h w -> 1 c t h w").expand(3, -1, -1, -1, -1)
    aug = BatchedVideoAugment(train, generator=torch.Generator().manual_seed(1))
    gains = BatchedVideoAugment(train, generator=torch.Generator().manual_seed(1)).sample_params(3, 16, 16)["gains"]
    out = aug(batch)
    for b in range(3):
        per_clip = train.apply(rgb, dataclasses.replace(train.params(16, 16), gains=tuple(gains[b].tolist())))
        torch.testing.assert_close(out[b], per_clip, atol=1e-5, rtol=0)
