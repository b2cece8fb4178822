"""The supervised ceiling of the smoke runs' synthetic data: how far cross-entropy on the labels takes a backbone.

The smoke presets of ``recipes/*.py`` ask a self-supervised method to beat the random initialisation of a tiny
backbone on held-out synthetic clips within a few hundred CPU steps. Whether a backbone can learn the motion classes
at all in such a budget is a question of its own, and the labels answer it: this script trains each backbone with a
linear classifier and cross-entropy (Adam, the same clips, crops and batch as the smoke runs) and prints the
held-out retrieval R@1 of the backbone every ``--every`` steps, with the retrieval protocol of the recipes (the
32 test-group videos query the 96 training videos; CoCLR's protocol: pooled sliding windows, mean-centred cosine).

    python benchmarks/synthetic_supervised.py                                   # tiny R(2+1)D, R3D and VCOP R3D
    python benchmarks/synthetic_supervised.py --models r2plus1d_18_tiny --lr 3e-3 --steps 200
    python benchmarks/synthetic_supervised.py --colour_cast 0 --json out.json   # the data without a colour cast
    python benchmarks/synthetic_supervised.py --object_size 0.14,0.22 --objects 1,2 --channel_gain 0   # earlier data

The data are ``make_synthetic_dataset`` with the smoke presets' settings (8 classes x 16 videos, 4 clips per group,
2 shared scenes, 16 frames at 64², two objects of radius 0.22-0.30, colour cast 0.6, seed 0), written to a
temporary folder unless ``--data`` names one; training clips get the presets' cast augmentation (``--channel_gain``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import videozoo  # noqa: E402
from videozoo.data import UCF101, preset  # noqa: E402
from videozoo.data.synthetic import CLASSES, make_synthetic_dataset  # noqa: E402
from videozoo.data.transforms import KINETICS_MEAN, KINETICS_STD  # noqa: E402
from videozoo.eval.retrieval import evaluate_retrieval, retrieval_sets  # noqa: E402
from videozoo.registry import InputSpec  # noqa: E402


def retrieval_r1(backbone: torch.nn.Module, split: dict) -> float:
    return evaluate_retrieval(backbone, **split, protocol="coclr", ks=(1,), progress=False)["R@1"]  # sets eval mode


def train(name: str, root: Path, split: dict, args: argparse.Namespace) -> dict:
    """R@1 of ``name`` at its random initialisation and every ``args.every`` steps of cross-entropy training."""
    torch.manual_seed(args.seed)
    backbone = videozoo.create_model(name)
    backbone.input_spec = InputSpec(channels="rgb", frames=args.frames, stride=1, fps=None, resize=args.size,
                                    crop_size=args.size, mean=KINETICS_MEAN, std=KINETICS_STD)  # fmt: skip
    classifier = torch.nn.Linear(backbone.num_features, len(CLASSES))
    optimizer = torch.optim.Adam([*backbone.parameters(), *classifier.parameters()], lr=args.lr)
    augment = preset(
        "stica", crop_size=args.size, scale=(0.5, 1.0), flip_p=0.0, blur_p=0.0, channel_gain=args.channel_gain
    )  # the smoke crops
    data = UCF101(root, root, split=1, train=True, num_frames=args.frames, stride=1, fps=None, transform=augment)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    curve, step, started = [{"step": 0, "R@1": retrieval_r1(backbone, split)}], 0, time.monotonic()
    print(f"{name}: step 0 R@1 {curve[0]['R@1']:.3f}", flush=True)
    while step < args.steps:
        for batch in loader:
            backbone.train()
            loss = F.cross_entropy(classifier(backbone(batch["video"])), batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                curve.append({"step": step, "loss": loss.item(), "R@1": retrieval_r1(backbone, split)})
                print(
                    f"{name}: step {step} loss {loss.item():.3f} R@1 {curve[-1]['R@1']:.3f} "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
            if step == args.steps:
                break
    return {"model": name, "curve": curve, "seconds": time.monotonic() - started}


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="r2plus1d_18_tiny,r3d_18_tiny,r3d_tiny")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="training crop and evaluation side")
    parser.add_argument("--colour_cast", type=float, default=0.6, help="the data's per-video colour grade")
    parser.add_argument("--channel_gain", type=float, default=0.6, help="colour-cast augmentation of training clips")
    parser.add_argument("--object_size", type=floats, default=(0.22, 0.30), help="object radius range (fraction)")
    parser.add_argument("--objects", type=ints, default=(2, 2), help="fewest,most objects per scene")
    parser.add_argument("--data", help="an existing synthetic dataset (default: generate one in a temporary folder)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else Path(tmp)
        if not args.data:
            make_synthetic_dataset(root, videos_per_class=16, clips_per_group=4, scenes=2, frames=16, size=(64, 64),
                                   colour_cast=args.colour_cast, object_size=args.object_size, objects=args.objects,
                                   seed=args.seed)  # fmt: skip
        split = retrieval_sets(*(UCF101(root, split=1, train=train) for train in (False, True)))
        runs = [train(name, root, split, args) for name in args.models.split(",")]
    steps = " / ".join(str(point["step"]) for point in runs[0]["curve"])
    print(f"\n| model | R@1 at step {steps} | seconds |\n|---|---|---|")
    for run in runs:
        recalls = " / ".join(f"{point['R@1']:.3f}" for point in run["curve"])
        print(f"| {run['model']} | {recalls} | {run['seconds']:.0f} |")
    if args.json:
        meta = {"torch": torch.__version__, "machine": platform.processor() or platform.machine(), "args": vars(args)}
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
