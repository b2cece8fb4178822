"""Backbone throughput: each videozoo backbone against its torchvision twin, then the rest of the zoo.

Twins (same architecture, random weights, classifier removed on both sides so both return the pooled features):

* ``r2plus1d_18``, ``r3d_18``, ``mc3_18``  vs ``torchvision.models.video.<same name>``
* ``s3d`` (CoCLR layout)                  vs ``torchvision.models.video.s3d`` (its fixed 2x7x7 average pool, made
  for 224², is replaced by the global mean that its forward takes anyway)

Every model sees the same input in the same process. Forward = eval mode under ``torch.inference_mode``;
forward+backward = train mode, ``out.square().mean().backward()``. The two implementations of a pair are timed in
turn, in a random order every round after one warm-up call each, so that a busy machine slows both alike;
clips/s = batch / median time of one call. ratio = torchvision's time / ours in the same round, its median and
interquartile range over the rounds. The target is ratio >= 1.0.
Backbones without a twin (``c3d``, ``r3d``, ``r21d``, ``resnet9_audio``, ``frame_transformer``) are timed alone,
built from the registry; the audio network gets a 1 s log-filterbank of its registered input spec.

    python benchmarks/backbones.py [--batch 2] [--frames 16] [--size 112] [--rounds 5] [--threads N]
                                   [--device cpu] [--models r3d_18,s3d] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videozoo import registry  # noqa: E402

TWINS = ["r2plus1d_18", "r3d_18", "mc3_18", "s3d"]
SOLO = ["c3d", "r3d", "r21d", "resnet9_audio", "frame_transformer"]


def torchvision_twin(name: str) -> nn.Module:
    model = getattr(torchvision.models.video, name)()
    if name == "s3d":  # forward: features -> avgpool -> classifier -> mean over (t, h, w)
        model.avgpool, model.classifier = nn.Identity(), nn.Identity()
    else:
        model.fc = nn.Identity()
    return model


def make_input(name: str, model: nn.Module, args: argparse.Namespace) -> torch.Tensor:
    spec = registry.get(name).input_spec
    if spec.channels == "audio":  # (B, 1, F, T) log-filterbank
        return torch.randn(args.batch, model.in_channels, spec.freq_bins, spec.crop_size, device=args.device)
    return torch.randn(args.batch, model.in_channels, args.frames, args.size, args.size, device=args.device)


def step(model: nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    """One forward (eval, no autograd) or one forward+backward (train) of ``model`` on ``x``."""

    def run() -> None:
        if train:
            model.train()
            model.zero_grad(set_to_none=True)
            model(x).float().square().mean().backward()
        else:
            model.eval()
            with torch.inference_mode():
                model(x)
        if x.is_cuda:
            torch.cuda.synchronize()

    return run


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seconds per call of each ``fn`` in every round, timed in turn in a random order after one warm-up each."""
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for k in rng.permutation(list(fns)):
            start = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - start)
    return {k: np.asarray(v) for k, v in times.items()}


def paired_ratio(ours: np.ndarray, twin: np.ndarray) -> tuple[float, float, float]:
    """Median and interquartile range of the per-round ratios twin time / ours time.

    Pairing by round cancels what a busy machine does to both calls of a round; the spread says how far a
    single figure can be trusted (identical op sequences give a median near 1.0 with an IQR across it).
    """
    ratios = twin / ours
    low, mid, high = np.percentile(ratios, [25, 50, 75])
    return float(mid), float(low), float(high)


def millions(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def bench(name: str, args: argparse.Namespace) -> dict:
    row: dict = {"name": name, "twin": f"torchvision.models.video.{name}" if name in TWINS else None}
    try:
        models = {"ours": registry.get(name).build().to(args.device)}
    except (ImportError, AttributeError, ValueError) as err:  # a backbone file not written yet
        return {**row, "error": f"{type(err).__name__}: {err}"}
    if name in TWINS:
        models["torchvision"] = torchvision_twin(name).to(args.device)
    x = make_input(name, models["ours"], args)
    row["input"] = list(x.shape)
    row["params_m"] = {k: round(millions(m), 2) for k, m in models.items()}
    for mode, train in (("forward", False), ("forward_backward", True)):
        seconds = interleaved({k: step(m, x, train) for k, m in models.items()}, args.rounds)
        row[mode] = {k: args.batch / float(np.median(s)) for k, s in seconds.items()}
        if "torchvision" in seconds:
            mid, low, high = paired_ratio(seconds["ours"], seconds["torchvision"])
            row[mode].update(ratio=mid, ratio_iqr=[low, high])
    return row


def table(rows: list[dict]) -> str:
    def cell(row: dict, mode: str) -> str:
        r = row[mode]
        if "ratio" not in r:
            return f"{r['ours']:.2f} | – | –"
        low, high = r["ratio_iqr"]
        return f"{r['ours']:.2f} | {r['torchvision']:.2f} | **{r['ratio']:.2f}** ({low:.2f}–{high:.2f})"

    lines = [
        "| backbone | params (M) ours / tv | fwd ours | fwd tv | ratio (IQR) | fwd+bwd ours | fwd+bwd tv "
        "| ratio (IQR) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | unavailable: {row['error']} | | | | | | |")
            continue
        params = " / ".join(f"{v:.1f}" for v in row["params_m"].values())
        lines.append(f"| {row['name']} | {params} | {cell(row, 'forward')} | {cell(row, 'forward_backward')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(TWINS + SOLO), help="comma-separated registry names")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(TWINS + SOLO))
    if unknown:
        parser.error(f"unknown backbone(s) {unknown}; choose from {TWINS + SOLO}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = {
        "batch": args.batch,
        "frames": args.frames,
        "size": args.size,
        "rounds": args.rounds,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
    }
    print(
        f"clips/s, input {args.batch}x3x{args.frames}x{args.size}², {args.rounds} rounds, {args.device}, "
        f"{config['threads']} threads, torch {torch.__version__}; ratio = torchvision time / ours, median (IQR) "
        "over rounds (target >= 1.0)"
    )
    rows = []
    for name in names:
        rows.append(bench(name, args))
        print(f"  {name} done", file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"config": config, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
