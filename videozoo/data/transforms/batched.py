"""The training augmentation run on a whole batch at once, on any device (GPU: frees the loader's CPUs).

Same parameters and order as :class:`VideoTrain` (crop, flip, cast, jitter, grey, blur, normalise), drawn per
sample and shared by the frames of a sample. Differences, for speed: crop+resize is one ``grid_sample`` (bilinear, no
antialiasing), and the order of the four jitter ops is drawn once per batch rather than per clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnF
from einops import rearrange, repeat

from videozoo.data.transforms.functional import GREY_WEIGHTS, blur_kernel_size, per_channel
from videozoo.data.transforms.train import VideoTrain


def _grey(x: torch.Tensor, weights: str = "luma") -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 1, T, H, W), ITU-R 601 luma as torchvision (``weights="bgr"``: GDT's reversed)."""
    wr, wg, wb = GREY_WEIGHTS[weights]
    r, g, b = x.unbind(1)
    return (wr * r + wg * g + wb * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = rearrange(ratio, "b -> b 1 1 1 1")
    return (ratio * a + (1 - ratio) * b).clamp(0, 1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn) per sample: RGB -> HSV -> RGB, vectorised."""
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + rearrange(shift, "b -> b 1 1 1")) % 1.0
    k = (rearrange(torch.tensor([5.0, 3.0, 1.0], device=x.device), "c -> 1 c 1 1 1") + 6 * h.unsqueeze(1)) % 6
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)  # the standard closed-form HSV -> RGB
    return maxc.unsqueeze(1) * (1 - s.unsqueeze(1) * weight)


class BatchedVideoAugment:
    """(B, C, T, H, W) uint8 or float [0, 1] -> normalised float (B, C, T, crop_h, crop_w), per-sample parameters.

    Build it from a preset with ``BatchedVideoAugment(preset("coclr"))``. ``__call__(x, flow=...)`` also crops and
    flips a flow batch with each sample's RGB box (colour ops on RGB only), returning ``(x, flow)``.
    """

    def __init__(self, train: VideoTrain, *, generator: torch.Generator | None = None) -> None:
        unsupported = [k for k in ("normalise_first", "blur_fixed_xy") if getattr(train, k)]
        if unsupported:
            raise ValueError(f"BatchedVideoAugment does not implement {', '.join(unsupported)}; use VideoTrain")
        self.t, self.generator = train, generator

    def __repr__(self) -> str:
        return f"BatchedVideoAugment({self.t!r})"

    def sample_params(self, batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
        """Per-sample parameters (CPU tensors): box (B, 4) fractions, flip, jitter factors, grey, blur sigma."""
        boxes = torch.tensor([self.t.params(height, width, generator=self.generator).box for _ in range(batch)])
        g, t = self.generator, self.t

        def bern(p: float) -> torch.Tensor:
            return torch.rand(batch, generator=g) < p

        def unif(low: float, high: float) -> torch.Tensor:
            return torch.empty(batch).uniform_(low, high, generator=g)

        out = {
            "box": boxes,
            "flip": bern(t.flip_p),
            "jitter_on": bern(t.jitter_p),
            "grey": bern(t.grey_p),
            "grey_channel": torch.randint(0, 3, (batch,), generator=g),
            "blur_on": bern(t.blur_p),
            "blur_sigma": unif(*t.blur_sigma),
            "order": torch.randperm(4, generator=g),
        }
        for name, rng in t._ranges.items():
            neutral = 0.0 if name == "hue" else 1.0
            out[name] = torch.where(out["jitter_on"], unif(*rng), torch.full((batch,), neutral)) if rng else None
        if t.channel_gain:  # (B, 3); drawn last and only when on, as in VideoTrain.params
            out["gains"] = torch.empty(batch, 3).uniform_(-t.channel_gain, t.channel_gain, generator=g).exp()
        return out

    def _geometry(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        b, c, t = x.shape[:3]
        top, left, bh, bw = (p["box"].to(x.device, torch.float32)).unbind(1)
        sign = 1 - 2 * p["flip"].to(x.device, torch.float32)
        theta = torch.zeros(b, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = bw * sign, 2 * left + bw - 1  # output x in [-1, 1] -> box x, mirrored
        theta[:, 1, 1], theta[:, 1, 2] = bh, 2 * top + bh - 1
        ch, cw = self.t.crop_size
        grid = nnF.affine_grid(theta, [b, c * t, ch, cw], align_corners=False)
        flat = rearrange(x, "b c t h w -> b (c t) h w")
        out = nnF.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return rearrange(out, "b (c t) h w -> b c t h w", c=c)

    def _jitter(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        names = ("brightness", "contrast", "saturation", "hue")
        for i in p["order"].tolist():
            factor = p[names[i]]
            if factor is None or (names[i] in ("saturation", "hue") and x.shape[1] == 1):
                continue
            factor = factor.to(x.device)
            if names[i] == "brightness":
                x = (x * rearrange(factor, "b -> b 1 1 1 1")).clamp(0, 1)
            elif names[i] == "contrast":  # towards each frame's mean grey, as torchvision's adjust_contrast
                grey = _grey(x, self.t.grey_weights) if x.shape[1] == 3 else x
                x = _blend(x, grey.mean(dim=(1, 3, 4), keepdim=True), factor)
            elif names[i] == "saturation":
                x = _blend(x, _grey(x, self.t.grey_weights), factor)
            else:
                x = _shift_hue(x, factor)
        return x

    def _grey_op(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        if self.t.grey_mode == "luma":
            grey = _grey(x, self.t.grey_weights).expand_as(x)
        else:  # CoCLR's channel copy: one random channel per sample into all three
            index = repeat(p["grey_channel"].to(x.device), "b -> b 1 t h w", t=x.shape[2], h=x.shape[3], w=x.shape[4])
            grey = torch.gather(x, 1, index).expand_as(x)
        mask = rearrange(p["grey"].to(x.device), "b -> b 1 1 1 1")
        return torch.where(mask, grey, x)

    def _blur(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        b, c, t, h, w = x.shape
        k = min(blur_kernel_size(max(self.t.blur_sigma)), 2 * ((min(h, w) - 1) // 2) + 1)
        offsets = torch.arange(k, device=x.device, dtype=torch.float32) - k // 2
        sigma = p["blur_sigma"].to(x.device).clamp_min(1e-3)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
        kernel = kernel / kernel.sum(1, keepdim=True)
        identity = (offsets == 0).float().expand(b, k)
        kernel = torch.where(p["blur_on"].to(x.device)[:, None], kernel, identity)  # (B, K): delta = no blur
        weight = repeat(kernel, "b k -> (b n) 1 1 k", n=c * t)  # one separable kernel per (sample, channel, frame)
        flat = rearrange(x, "b c t h w -> 1 (b c t) h w")
        pad = k // 2
        flat = nnF.conv2d(nnF.pad(flat, (pad, pad, 0, 0), mode="reflect"), weight, groups=flat.shape[1])
        flat = nnF.conv2d(
            nnF.pad(flat, (0, 0, pad, pad), mode="reflect"),
            rearrange(weight, "n 1 1 k -> n 1 k 1"),
            groups=flat.shape[1],
        )
        return rearrange(flat, "1 (b c t) h w -> b c t h w", b=b, c=c)

    def __call__(self, x: torch.Tensor, *, flow: torch.Tensor | None = None):
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        p = self.sample_params(x.shape[0], *x.shape[-2:])
        x = self._geometry(x, p)
        if "gains" in p and x.shape[1] == 3:
            x = (x * rearrange(p["gains"].to(x), "b c -> b c 1 1 1")).clamp(0, 1)
        if self.t.jitter_p > 0:
            x = self._jitter(x, p)
        if self.t.grey_p > 0:
            x = self._grey_op(x, p)
        if self.t.blur_p > 0 and p["blur_on"].any():
            x = self._blur(x, p)
        x = _normalise(x, self.t.mean, self.t.std)
        if flow is None:
            return x
        flow = flow.float().div(255) if flow.dtype == torch.uint8 else flow.float()
        return x, _normalise(self._geometry(flow, p), self.t.mean, self.t.std)


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, C, T, H, W) normalised over C; scalars apply to every channel."""
    c = x.shape[1]
    mean_t = rearrange(per_channel(mean, c, "mean").to(x), "c 1 1 -> c 1 1 1")
    std_t = rearrange(per_channel(std, c, "std").to(x), "c 1 1 -> c 1 1 1")
    return (x - mean_t) / std_t
