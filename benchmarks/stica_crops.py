"""STiCA's efficiency claim: N feature crops against the same N crops taken in input space.

Patrick, Asano et al. Space-Time Crop & Attend (ICCV 2021): cropping the pre-pool feature map instead of the
input means two backbone passes (one per view) serve any number of crops. Both variants below train the same
loss (videozoo.methods.STiCA: audio-visual NCE + crop NCE, transformer pooling, GDT heads) on the same boxes:

* ``feature``: ``STiCA(num_large_crops=1, num_small_crops=N)``: view 1's map gives one large crop (6/7 of each
  side), view 2's map N small crops (4/7);
* ``input``: the same boxes cut from the *input* clips (96² and 64² of 112²), each run through the backbone
  (2 + 1 + N passes), then the same pooling, heads and losses.

A step is forward + backward in train mode; both variants of each N are timed in turn, in a random order every
round after a warm-up call each, so a busy machine slows both alike; ms = median over rounds. ``passes`` counts
``forward_features`` calls per step. GPU runs also report the peak memory of a step.

    python benchmarks/stica_crops.py [--model r2plus1d_18] [--batch 8] [--frames 30] [--size 112]
                                     [--crops 1,2,4,8] [--rounds 5] [--device cuda] [--amp bf16] [--json out.json]
    python benchmarks/stica_crops.py --model r2plus1d_18_tiny --batch 4 --rounds 3    # a CPU-sized run
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import videozoo  # noqa: E402
from videozoo.methods.base import split_views  # noqa: E402
from videozoo.methods.feature_crop import crop_length, sample_crops  # noqa: E402
from videozoo.methods.stica import STiCA, batched_global_nce  # noqa: E402


def build(args: argparse.Namespace, n: int) -> STiCA:
    torch.manual_seed(0)
    video, audio = videozoo.create_model(args.model), videozoo.create_model(args.audio)
    method = STiCA(video_backbone=video, audio_backbone=audio, num_large_crops=1, num_small_crops=n,
                   num_large_tcrops=0, num_small_tcrops=0)  # fmt: skip
    calls = {"n": 0}
    forward_features = video.forward_features

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return forward_features(x)

    video.forward_features = counted  # instance attribute: counts the backbone passes of a step
    method.calls = calls
    return method.to(args.device).train()


def feature_loss(method: STiCA, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """STiCA as it trains: two backbone passes, the crops cut from the feature maps."""
    return method(batch)["loss"]


def input_space_loss(method: STiCA, batch: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """The same loss with the crops cut from the input clips: one backbone pass per crop."""
    views = split_views(batch["video"])  # 2 × (B, C, T, H, W)
    z, crops = [], []
    for v, x in enumerate(views):
        z.append(method.embed_map(method.video_backbone.forward_features(x)))
        size, num = ("large", 1) if v == 0 else ("small", n)  # view 1: the anchor; view 2: N small crops
        boxes = sample_crops(tuple(x.shape[2:]), num=num, fraction=method.fractions[size][0], temporal=False)
        emb = [method.embed_map(method.video_backbone.forward_features(x[(..., *box.slices())])) for box in boxes]
        crops.append({size: torch.stack(emb).float()})  # (num, B, dim)
    a = method._audio(batch["audio"], 2)
    z = torch.stack(z).float()
    loss_va, _ = batched_global_nce(z, a, temperature=method.temperature_av)
    loss_av_, _ = batched_global_nce(a, z, temperature=method.temperature_av)
    loss_av = 0.5 * (loss_va + loss_av_).mean()
    loss_crop = torch.cat(list(method.crop_terms(crops).values())).mean()
    return 0.5 * loss_crop + 0.5 * loss_av


def timed_step(method: STiCA, loss_fn, args: argparse.Namespace) -> tuple[float, int, float | None]:
    """One forward + backward: (seconds, backbone passes, peak MiB on a GPU or None)."""
    cuda = args.device.startswith("cuda")
    method.zero_grad(set_to_none=True)
    method.calls["n"] = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=args.amp == "bf16"):
        loss = loss_fn()
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, method.calls["n"], torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="r2plus1d_18")
    p.add_argument("--audio", default="resnet9_audio")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--crops", default="1,2,4,8")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", choices=["bf16"], default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.randn(args.batch, 2, 3, args.frames, args.size, args.size, generator=g),
             "audio": torch.randn(args.batch, 2, 1, 257, 99, generator=g)}  # fmt: skip
    batch = {k: v.to(args.device) for k, v in batch.items()}

    rows = []
    for n in [int(c) for c in args.crops.split(",")]:
        method = build(args, n)
        steps = {"feature": partial(feature_loss, method, batch), "input": partial(input_space_loss, method, batch, n)}
        times: dict[str, list[float]] = {k: [] for k in steps}
        passes, memory = {}, {}
        for kind in steps:  # warm-up; the passes and the peak memory of a step
            _, passes[kind], memory[kind] = timed_step(method, steps[kind], args)
        for _ in range(args.rounds):
            for kind in np.random.permutation(list(steps)):
                times[kind].append(timed_step(method, steps[kind], args)[0])
        ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
        row = {"crops": n, "feature_ms": ms["feature"], "input_ms": ms["input"], "ratio": ms["input"] / ms["feature"],
               "feature_passes": passes["feature"], "input_passes": passes["input"],
               "small_crop": f"{crop_length(args.size, 4 / 7)}² px input / feature map side x 4/7"}  # fmt: skip
        if cuda:
            row.update(feature_mib=memory["feature"], input_mib=memory["input"])
        rows.append(row)
        print(
            f"N={n:2d}  feature {ms['feature']:8.1f} ms ({passes['feature']} passes)   input {ms['input']:8.1f} ms "
            f"({passes['input']} passes)   input/feature {row['ratio']:.2f}x",
            flush=True,
        )

    if args.json:
        info = {"device": args.device, "torch": torch.__version__, "host": platform.node(), "args": vars(args)}
        if cuda:
            info["gpu"] = torch.cuda.get_device_name()
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
