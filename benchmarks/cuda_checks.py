"""Correctness checks that need a GPU (issue #14), one JSON record each: run by benchmarks/gpu_check.sh.

    python benchmarks/cuda_checks.py --json checks.json            # on a CUDA device
    python benchmarks/cuda_checks.py --device cpu --quick          # the plumbing on a CPU (no compile check)

* ``auto``: ``resolve_speed`` on this device picks bf16, channels-last-3d and torch.compile for verified methods;
* ``compile``: every ``compile_verified`` method (the tiny builders of tests/test_compile.py) trains three steps
  through the Trainer compiled and eager, float32 with TF32 off and channels-last on, to the same parameters;
* ``bf16``: each method's loss on one batch under bf16 autocast is within 5 % (+ 0.01) of its float32 loss (tiny
  registry backbones, eager);
* ``augment``: ``BatchedVideoAugment`` on the device equals the same augmentation run on the CPU (same drawn
  parameters), and its views/s on the device against the per-clip ``VideoTrain`` on one CPU thread;
* ``prefetch``: the Trainer's ``DevicePrefetcher`` hands out every batch equal to a plain copy, on the device,
  clips channels-last.

Exit status 1 if any check fails; each record says what was compared and by how much.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import videozoo  # noqa: E402


def check_auto(device: torch.device) -> dict[str, Any]:
    from test_compile import METHODS, build

    from videozoo.training.speed import resolve_speed

    picked = {name: resolve_speed(device=device, method=build(name)[0]).as_dict() for name in METHODS}
    want_compile = device.type == "cuda"
    ok = all((s["amp"] == "bf16") == want_compile and s["channels_last"] == want_compile
             and s["compile"] == want_compile for s in picked.values())  # fmt: skip
    return {"ok": ok, "resolved": picked}


def check_compile(device: torch.device) -> dict[str, Any]:
    from test_compile import METHODS, build

    from videozoo.training import Trainer

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 means float32 here
    rows = {}
    for name in METHODS:
        states, losses, seconds = [], [], []
        for compile in (False, True):
            torch.manual_seed(0)
            method, data = build(name)
            trainer = Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=data,
                              batch_size=4, max_steps=3, device=device, amp=None, channels_last=True,
                              compile=compile, progress=False, seed=1)  # fmt: skip
            start = time.perf_counter()
            losses.append(trainer.fit()["final_loss"])
            seconds.append(time.perf_counter() - start)
            states.append({k: v.float().cpu() for k, v in method.state_dict().items()})
        worst = max(((a - b).abs().max() / (a.abs().max() + 1e-3)).item() for a, b in
                    zip(states[0].values(), states[1].values()))  # fmt: skip
        rows[name] = {
            "loss_eager": losses[0],
            "loss_compiled": losses[1],
            "max_relative_difference": worst,
            "ok": worst < 1e-3,
            "seconds_eager": seconds[0],
            "seconds_compiled": seconds[1],
        }
    return {"ok": all(r["ok"] for r in rows.values()), "methods": rows}


def check_bf16(device: torch.device) -> dict[str, Any]:
    from videozoo.heads.projection import CoCLRHead
    from videozoo.methods import CACL, GDT, CoCLR, InfoNCE, STiCA

    def m(name: str) -> torch.nn.Module:
        return videozoo.create_model(name)

    b, t, s = 8, 8, 64
    g = torch.Generator().manual_seed(0)
    video = torch.randn(b, 2, 3, t, s, s, generator=g)
    spec = torch.randn(b, 2, 1, 257, 30, generator=g)
    cases = {
        "InfoNCE": (lambda: InfoNCE(backbone=m("r2plus1d_18_tiny"), queue_size=64), {"video": video}),
        "CoCLR": (lambda: CoCLR(backbone=m("s3d_tiny"), other_backbone=m("s3d_tiny"), queue_size=b, topk=2,
                                other_head=CoCLRHead(in_dim=128, hidden_dim=128, out_dim=128)),
                  {"video": video, "flow": video.flip(0), "source_id": torch.arange(b)}),
        "CACL": (lambda: CACL(backbone=m("c3d_tiny"), transformer=m("frame_transformer_tiny"), queue_size=64,
                              num_frames=t, sdp_dropout=0.0), {"video": video}),
        "STiCA": (lambda: STiCA(video_backbone=m("r2plus1d_18_tiny"), audio_backbone=m("resnet9_audio_tiny"),
                                head_dropout=0.0), {"video": video, "audio": spec}),
        "GDT": (lambda: GDT(video_backbone=m("r2plus1d_18_tiny"), audio_backbone=m("resnet9_audio_tiny"),
                            head_dropout=0.0), {"video": video[:, 0], "audio": spec[:, 0]}),
    }  # fmt: skip
    rows = {}
    for name, (make, batch) in cases.items():
        torch.manual_seed(0)
        method = make().to(device).eval()  # eval: no momentum update or enqueue between the two forwards
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            fp32 = method(batch)["loss"].item()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                bf16 = method(batch)["loss"].item()
        rows[name] = {
            "fp32": fp32,
            "bf16": bf16,
            "difference": abs(bf16 - fp32),
            "ok": abs(bf16 - fp32) <= 0.05 * abs(fp32) + 0.01,
        }
    return {"ok": all(r["ok"] for r in rows.values()), "methods": rows}


def check_augment(device: torch.device, *, quick: bool) -> dict[str, Any]:
    from videozoo.data import BatchedVideoAugment, preset

    train = preset("stica", crop_size=112)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (8 if quick else 64, 3, 16, 128, 171), dtype=torch.uint8, generator=g)
    on_cpu = BatchedVideoAugment(train, generator=torch.Generator().manual_seed(1))(clips)
    on_device = BatchedVideoAugment(train, generator=torch.Generator().manual_seed(1))(clips.to(device))
    difference = (on_device.cpu() - on_cpu).abs().max().item()
    augment = BatchedVideoAugment(train)
    views_per_s = _rate(lambda: augment(clips.to(device, non_blocking=True)), device) * clips.shape[0]
    one = clips[0].permute(1, 0, 2, 3)  # (T, C, H, W): VideoTrain's input
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker's share
    try:
        cpu_views_per_s = _rate(lambda: train(one), torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return {
        "ok": difference < 1e-3,
        "max_abs_difference": difference,
        "shape": list(on_device.shape),
        "batched_views_per_s": views_per_s,
        "per_clip_cpu_views_per_s_one_thread": cpu_views_per_s,
    }


def check_prefetch(device: torch.device) -> dict[str, Any]:
    from videozoo.training.data import DevicePrefetcher

    batches = [{"video": torch.randn(2, 2, 3, 4, 8, 8), "label": torch.arange(2) + i} for i in range(5)]
    if device.type == "cuda":
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    got = list(DevicePrefetcher(batches, device=device, channels_last=True))
    equal = len(got) == len(batches) and all(
        torch.equal(g["video"].cpu(), b["video"]) and torch.equal(g["label"].cpu(), b["label"])
        for g, b in zip(got, batches))  # fmt: skip
    placed = all(g["video"].device.type == device.type for g in got)
    layout = all(g["video"].movedim(-4, -1).is_contiguous() for g in got)
    return {"ok": equal and placed and layout, "equal": equal, "on_device": placed, "channels_last": layout}


def _rate(fn: Callable[[], Any], device: torch.device, rounds: int = 5) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return rounds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="skip the compile check, smaller batches (CPU dry runs)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("cuda_checks: no CUDA device here (use --device cpu --quick for a dry run)", file=sys.stderr)
        return 2
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        "auto": lambda: check_auto(device), "bf16": lambda: check_bf16(device),
        "augment": lambda: check_augment(device, quick=args.quick), "prefetch": lambda: check_prefetch(device),
    }  # fmt: skip
    if not args.quick:
        checks["compile"] = lambda: check_compile(device)
    results = {}
    for name, run in checks.items():
        start = time.perf_counter()
        try:
            results[name] = run()
        except Exception as error:  # one broken check must not hide the others
            results[name] = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-2000:],
            }
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(
            f"{name:<9} {'ok' if results[name]['ok'] else 'FAILED'} ({results[name]['seconds']} s)"
            + (f": {results[name]['error']}" if "error" in results[name] else ""),
            flush=True,
        )
    payload = {"device": str(device), "torch": torch.__version__,
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "checks": results}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
