"""Training-step throughput of every pretraining method, on tiny or full-size backbones.

    python benchmarks/methods.py                      # tiny backbones, CPU
    python benchmarks/methods.py --full --device cuda --batch 8 --amp bf16

One step = forward, backward and an optimizer step on a random batch in the method's own format (two
views per clip, flow for CoCLR, spectrograms for STiCA/GDT). Clips/s counts source clips per second.
The cost of STiCA's feature crops against input-space crops is `benchmarks/stica_crops.py`, and
`permutation_with_distance` against rejection sampling is `benchmarks/cacl_permutation.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import videozoo
from videozoo.methods import CACL, GDT, CoCLR, InfoNCE, STiCA


def backbones(full: bool) -> dict[str, str]:
    suffix = "" if full else "_tiny"
    return {k: v + suffix for k, v in {
        "s3d": "s3d", "r21d": "r2plus1d_18", "c3d": "c3d", "audio": "resnet9_audio", "tf": "frame_transformer",
    }.items()}  # fmt: skip


def build(name: str, full: bool, b: int, frames: int, size: int) -> tuple[torch.nn.Module, dict, dict]:
    """The method, one batch of ``b`` clips, and the keyword schedule its forward takes."""
    net = backbones(full)
    video2 = torch.randn(b, 2, 3, frames, size, size)  # (B, V, C, T, H, W)
    spec = torch.randn(b, 2, 1, 257, 99 * max(1, frames // 30))  # (B, V, 1, F, T')
    if name == "infonce":
        return InfoNCE(backbone=videozoo.create_model(net["s3d"]), queue_size=256), {"video": video2}, {}
    if name == "coclr":
        method = CoCLR(backbone=videozoo.create_model(net["s3d"]), other_backbone=videozoo.create_model(net["s3d"]),
                       other_head=None, queue_size=256)  # fmt: skip
        batch = {"video": video2, "flow": torch.randn_like(video2), "source_id": torch.arange(b)}
        return method, batch, {}
    if name == "cacl":
        method = CACL(backbone=videozoo.create_model(net["c3d"]), transformer=videozoo.create_model(net["tf"]),
                      queue_size=256, num_frames=frames)  # fmt: skip
        return method, {"video": video2}, {}
    audio = videozoo.create_model(net["audio"])
    if name == "stica":
        return STiCA(video_backbone=videozoo.create_model(net["r21d"]), audio_backbone=audio), {
            "video": video2, "audio": spec}, {}  # fmt: skip
    if name == "gdt":
        return GDT(video_backbone=videozoo.create_model(net["r21d"]), audio_backbone=audio), {
            "video": video2[:, 0], "audio": spec[:, 0]}, {}  # fmt: skip
    raise ValueError(name)


def step_time(method: torch.nn.Module, batch: dict, kwargs: dict, *, device: str, amp: str | None,
              rounds: int) -> float:  # fmt: skip
    method.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    device_type = device.split(":")[0]
    autocast: Callable = (lambda: torch.autocast(device_type, dtype=dtype)) if dtype else contextlib.nullcontext
    times = []
    for i in range(rounds + 1):  # the first round warms up (allocator, cudnn autotune)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast():
            loss = method(batch, **kwargs)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="infonce,coclr,cacl,stica,gdt")
    parser.add_argument("--full", action="store_true", help="full-size backbones instead of the tiny variants")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = "full" if args.full else "tiny"
    print(f"training step, batch {args.batch} x 2 views x {args.frames}x{args.size}², {size} backbones, "
          f"{args.device}, amp={args.amp}, {torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print(f"{'method':<8} {'backbones':<44} {'s/step':>8} {'clips/s':>8}")
    results = []
    for name in args.methods.split(","):
        method, batch, kwargs = build(name, args.full, args.batch, args.frames, args.size)
        seconds = step_time(method, batch, kwargs, device=args.device, amp=args.amp, rounds=args.rounds)
        used = ", ".join(sorted({getattr(m, "zoo_name", "") for m in method.modules()} - {""}))
        print(f"{name:<8} {used:<44} {seconds:8.3f} {args.batch / seconds:8.1f}")
        results.append({"method": name, "backbones": used, "seconds_per_step": seconds,
                        "clips_per_s": args.batch / seconds})  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2))


if __name__ == "__main__":
    main()
