"""Where a pretraining run's time goes: the loader alone, the training step alone, both together (issue #14).

    python benchmarks/pipeline.py --recipe stica --preset k400 --device cuda --workers 15 --steps 30 --json stica.json
    python benchmarks/pipeline.py --recipe coclr --tiny              # the wiring on a CPU: tiny backbones, 16 clips

One recipe at one preset, built as the recipe builds it: its settings come from ``recipes/<recipe>.py --preset P
--print-config`` (with any ``--set key=value`` overrides, nested keys included), its dataset, augmentation, method and
optimizer from the package the same way. In one run:

(a) loader: clips/s of the recipe's dataset with its CPU augmentation, in ``--workers`` persistent workers, on at
    least 1,000 samples: ``--data DIR`` (class folders) or synthetic videos at 320x240 (``--unique`` rendered with
    videozoo.data.synthetic, hard-linked up to ``--samples`` files: each file is still opened and decoded);
(b) step: clips/s of the Trainer's own step (forward, backward, optimizer) at the preset's batch size on one fixed
    batch already on the device, with the Trainer's resolved speed settings (``auto``: bf16, channels-last-3d and
    torch.compile on CUDA);
(c) together: the Trainer's data path (persistent workers, pinned memory, side-stream prefetch) feeding that step.

Then which side bounds the run, and the model FLOP utilisation: FLOPs of one step (``FlopCounterMode``, forward and
backward) times steps/s, over the rate of a large matmul in the step's dtype (bf16 on CUDA) measured in the same run.
For CoCLR the loader and (c) are the InfoNCE stage (RGB; a flow store for 1,000 videos takes hours of TV-L1), and
the co-training step is timed alone on the same clips with random flow.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import videozoo  # noqa: E402
from videozoo.training import Trainer  # noqa: E402
from videozoo.training.data import DevicePrefetcher  # noqa: E402

RECIPES = ("coclr", "cacl", "stica")
SIZE = (240, 320)  # (H, W) of the synthetic videos: UCF101's
FRAMES, FPS = 64, 30.0  # 2.1 s: STiCA's 60 frames at 30 fps, CoCLR's 32, CACL's 16 x stride 2
# --tiny: the recipe's smoke preset, smaller still: a wiring check that runs on a CPU in seconds
TINY = ("batch_size=4", "frames=8", "aug.crop_size=32")  # over the smoke preset; queue methods: a 16-key queue
TINY_QUEUE = ("queue_size=16",)
TINY_DATA = {"samples": 16, "unique": 4, "size": (48, 64), "frames": 24}


# -- the recipe's settings ---------------------------------------------------------------------------------------
def recipe_config(recipe: str, preset: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe's resolved config at ``preset`` with ``key=value`` ``overrides``, by its own ``--print-config``."""
    script = ROOT / "recipes" / f"{recipe}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--preset", preset, *overrides, "--print-config"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"cannot read the settings of {script.name}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


# -- data --------------------------------------------------------------------------------------------------------
def synthetic_folder(root: Path, *, samples: int, unique: int, size: tuple[int, int], frames: int) -> Path:
    """Class folders of ``samples`` video files: ``unique`` rendered ones (with audio), hard-linked to fill up."""
    from videozoo.data.synthetic import CLASSES, make_synthetic_dataset

    done = root / f"{samples}.done"
    if done.is_file():
        return root / "videos"
    rendered = make_synthetic_dataset(root / "rendered", videos_per_class=max(1, unique // len(CLASSES)),
                                      frames=frames, size=size, fps=FPS, audio=True, sample_rate=24000)  # fmt: skip
    sources = sorted(rendered.glob("*/*.mp4"))
    for i in range(samples):
        source = sources[i % len(sources)]
        target = root / "videos" / source.parent.name / f"{i:05d}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:  # no hard links here: a copy decodes the same
                target.write_bytes(source.read_bytes())
    done.touch()
    return root / "videos"


def build(recipe: str, c: dict[str, Any], data: Path) -> dict[str, Any]:
    """Dataset, method(s), optimizer and schedule values as ``recipes/<recipe>.py`` builds them for its main stage."""
    from torchvision.transforms import Compose

    from videozoo.data import VideoFolder, VolumeJitter, log_filterbank

    def augmentation(name: str):  # the recipe's nested `aug` config (JSON lists back to tuples), as it builds it
        from videozoo.training.presets import Augment

        return Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in c["aug"].items()}).build(name)

    if recipe == "coclr":  # stage 1, InfoNCE on RGB (the longest stage); CoCLR's own step is timed beside it
        from videozoo.methods import CoCLR, InfoNCE

        aug = augmentation("coclr")
        dataset = VideoFolder(data, num_frames=c["frames"], stride=c["stride"], decode_size=c["decode_size"],
                              num_views=2, transform=aug)  # fmt: skip
        method = InfoNCE(backbone=videozoo.create_model(c["backbone"]), dim=c["dim"], queue_size=c["queue_size"],
                         temperature=c["temperature"])  # fmt: skip
        second = CoCLR(backbone=videozoo.create_model(c["backbone"]), other_head=method.encoder_q.head,
                       other_backbone=videozoo.create_model(c["backbone"]), dim=c["dim"], queue_size=c["queue_size"],
                       temperature=c["temperature"], topk=c["topk"], drop_self_p=c["drop_self_p"])  # fmt: skip
        adam = functools.partial(torch.optim.Adam, lr=c["lr"], weight_decay=c["wd"])
        return {
            "dataset": dataset,
            "method": method,
            "optimizer": adam,
            "values": {"momentum": c["momentum"]},
            "extra": {"coclr": second},
        }
    if recipe == "cacl":  # stage 2, CACL; the frame network untrained (its MoCo stage changes no shapes)
        from videozoo.methods import CACL

        aug = augmentation("cacl")
        dataset = VideoFolder(data, num_frames=c["frames"], stride=c["stride"], num_views=2, views_share_clip=True,
                              transform=aug)  # fmt: skip
        transformer = videozoo.create_model(c["transformer"], frame_model=c["frame_model"] or c["frame_arch"])
        method = CACL(backbone=videozoo.create_model(c["backbone"]), transformer=transformer, dim=c["dim"],
                      queue_size=c["queue_size"], temperature=c["temperature"], num_frames=c["frames"],
                      sdp_weight=c["sdp_weight"], order_mode=c["order_mode"], tf_negatives=c["tf_negatives"],
                      key_order=c["key_order"])  # fmt: skip
        sgd = functools.partial(torch.optim.SGD, lr=c["lr"], momentum=c["sgd_momentum"], weight_decay=c["wd"])
        return {"dataset": dataset, "method": method, "optimizer": sgd, "values": {"momentum": c["momentum"]}}
    from videozoo.methods.stica import GDT, STiCA

    filterbank = functools.partial(log_filterbank, sample_rate=c["audio_rate"], n_bins=c["audio_bins"])
    common = dict(num_frames=c["frames"], stride=c["stride"], fps=c["fps"], decode_size=c["decode_size"],
                  audio_sample_rate=c["audio_rate"],
                  audio_transform=Compose([VolumeJitter(*c["volume_jitter"]), filterbank]))  # fmt: skip
    if c["views"] > 1:
        common.update(num_views=c["views"], views_share_clip=True)
    common["transform"] = augmentation("stica")
    dataset = VideoFolder(data, **common)
    video, audio = videozoo.create_model(c["backbone"]), videozoo.create_model(c["audio_backbone"])
    if c["method"] == "gdt":
        method = GDT(video_backbone=video, audio_backbone=audio, dim=c["dim"], head_dropout=c["head_dropout"],
                     temperature=c["temperature_av"])  # fmt: skip
    else:
        method = STiCA(video_backbone=video, audio_backbone=audio, pooling=c["pooling_depth"], dim=c["dim"],
                       head_dropout=c["head_dropout"], num_large_crops=c["large_crops"],
                       num_small_crops=c["small_crops"], num_large_tcrops=c["large_tcrops"],
                       num_small_tcrops=c["small_tcrops"], temperature_av=c["temperature_av"],
                       temperature_crop=c["temperature_crop"], alpha=c["alpha"])  # fmt: skip
    if c["optimizer"] == "adam":
        optimizer = functools.partial(torch.optim.Adam, lr=c["lr"], weight_decay=c["wd"])
    else:
        optimizer = functools.partial(torch.optim.SGD, lr=c["lr"], momentum=c["momentum"], weight_decay=c["wd"])
    return {"dataset": dataset, "method": method, "optimizer": optimizer, "values": {}}


# -- timing ------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches(trainer: Trainer, loader: Any, sampler: Any) -> Any:
    """The Trainer's feed, epoch after epoch: persistent workers, then (CUDA) the side-stream prefetch."""
    for epoch in itertools.count():
        trainer.epoch = epoch
        sampler.set_epoch(epoch, trainer._epoch_batches())
        yield from DevicePrefetcher(loader, device=trainer.device, channels_last=trainer.channels_last)


def rate(items: Any, fn: Any, *, warmup: int, steps: int, device: torch.device) -> float:
    """Calls per second of ``fn(item)`` over ``steps`` items, after ``warmup`` untimed ones."""
    items = iter(items)
    for _ in range(warmup):
        fn(next(items))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn(next(items))
    sync(device)
    return steps / (time.perf_counter() - start)


def step_fn(trainer: Trainer, model: torch.nn.Module, values: dict[str, float]) -> Any:
    """One training step exactly as Trainer.fit runs it (autocast, scaler, clipping, optimizer)."""

    def step(batch: Any) -> None:
        trainer._train_step(model, batch, values)

    return step


def step_flops(method: torch.nn.Module, batch: Any, values: dict[str, float], amp: str | None) -> int:
    """FLOPs of one forward and backward, counted eagerly (a compiled step runs the same matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(method.parameters()).device
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
                            enabled=amp is not None):  # fmt: skip
            loss = method(batch, **values)["loss"]
        loss.backward()
    method.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, dtype: torch.dtype, *, n: int) -> float:
    """FLOP/s of an n x n matmul in ``dtype``: the reachable peak the utilisation is measured against."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    calls = rate(itertools.repeat(None), lambda _: a @ b, warmup=2, steps=10 if device.type == "cuda" else 3,
                 device=device)  # fmt: skip
    return 2 * n**3 * calls


def first_batch(trainer: Trainer, loader: Any, sampler: Any) -> Any:
    return next(iter(batches(trainer, loader, sampler)))


def with_flow(batch: dict[str, Any]) -> dict[str, Any]:
    """A CoCLR batch from an InfoNCE one: random flow of the clips' shape and a source id per clip."""
    video = batch["video"]
    source = torch.arange(video.shape[0], device=video.device)
    return {**batch, "flow": torch.randn_like(video), "source_id": source}


# -- the run -----------------------------------------------------------------------------------------------------
def measure(trainer: Trainer, parts: dict[str, Any], options: dict[str, Any], out: dict[str, Any], *, warmup: int,
            steps: int, loader_only: bool, save: Any = lambda: None) -> dict[str, Any]:  # fmt: skip
    """(a), (b), (c), the CoCLR step, FLOPs and the matmul rate into ``out``, then the bound and MFU from them.

    ``save()`` is called after each part, so a run stopped by a time limit still leaves what it measured.
    """
    device, batch_size, values = trainer.device, trainer.batch_size, parts["values"]
    with trainer._data() as (sampler, loader):
        # (a) the loader alone: the Trainer's feed, nothing done with the batches
        out["loader_clips_per_s"] = batch_size * rate(batches(trainer, loader, sampler), lambda b: None,
                                                      warmup=warmup, steps=steps, device=device)  # fmt: skip
        fixed = first_batch(trainer, loader, sampler)
        out["clip_shape"] = {k: list(v.shape[1:]) for k, v in fixed.items() if torch.is_tensor(v) and v.ndim > 2}
        save()
        if loader_only:
            return out
        # (b) the step alone, on one batch already on the device
        step = step_fn(trainer, trainer._wrap(), values)
        out["step_clips_per_s"] = batch_size * rate(itertools.repeat(fixed), step, warmup=warmup, steps=steps,
                                                    device=device)  # fmt: skip
        save()
        # (c) both: the Trainer's feed into the Trainer's step
        out["together_clips_per_s"] = batch_size * rate(batches(trainer, loader, sampler), step, warmup=1,
                                                        steps=steps, device=device)  # fmt: skip
        save()
    flops = step_flops(trainer.method, fixed, values, trainer.amp)
    if "coclr" in parts.get("extra", {}):  # CoCLR's co-training step on the same clips, flow random
        second = parts["extra"]["coclr"]
        other = Trainer(method=second, optimizer=parts["optimizer"](second.parameters()), dataset=parts["dataset"],
                        batch_size=batch_size, device=device, progress=False, resume=False, **options)  # fmt: skip
        out["coclr_step_clips_per_s"] = batch_size * rate(itertools.repeat(with_flow(fixed)),
                                                          step_fn(other, other._wrap(), values), warmup=warmup,
                                                          steps=steps, device=device)  # fmt: skip
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(trainer.amp or "", torch.float32)
    peak = matmul_rate(device, dtype, n=8192 if device.type == "cuda" else 512)
    loader_rate, step_rate = out["loader_clips_per_s"], out["step_clips_per_s"]
    out.update({
        "bound": "loader" if loader_rate < step_rate else "step",
        "together_of_bound": out["together_clips_per_s"] / min(loader_rate, step_rate),
        "flops_per_step": flops, "matmul_flops_per_s": peak, "matmul_dtype": str(dtype).removeprefix("torch."),
        "mfu_step": flops * step_rate / batch_size / peak,
        "mfu_together": flops * out["together_clips_per_s"] / batch_size / peak,
    })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", choices=RECIPES, required=True)
    p.add_argument("--preset", default=None, help="the recipe's preset (default: its paper preset; smoke with --tiny)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the preset's)")
    p.add_argument("--steps", type=int, default=None, help="timed batches per measurement (default 20; tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (compilation; default 3; tiny 1)")
    p.add_argument("--data", type=Path, default=None, help="class folders of videos (default: synthetic, 320x240)")
    p.add_argument("--samples", type=int, default=1000, help="synthetic samples (files)")
    p.add_argument("--unique", type=int, default=32, help="synthetic videos rendered; the rest are hard links")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "videozoo_pipeline",
        help="where the synthetic data is written (reused)",
    )
    p.add_argument("--amp", default="auto", help="auto | bf16 | fp16 | none (the Trainer's)")
    p.add_argument("--channels_last", default="auto", help="auto | true | false")
    p.add_argument("--compile", default="auto", help="auto | true | false")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override the recipe's settings")
    p.add_argument("--tiny", action="store_true", help="tiny backbones and data, few steps: a CPU wiring check")
    p.add_argument("--loader-only", action="store_true", help="(a) alone: no step, no compile (worker scaling)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads in the main process")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    preset = args.preset or (
        "smoke" if args.tiny else {"coclr": "ucf101", "cacl": "ucf101", "stica": "k400"}[args.recipe]
    )
    tiny = [*TINY, *(TINY_QUEUE if args.recipe != "stica" else ("fps=none",))] if args.tiny else []  # stica: native
    config = recipe_config(args.recipe, preset, [*tiny, *args.set])
    workers = config["workers"] if args.workers is None else args.workers
    steps = args.steps or (2 if args.tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    data_spec = (
        TINY_DATA if args.tiny else {"samples": args.samples, "unique": args.unique, "size": SIZE, "frames": FRAMES}
    )
    started = time.monotonic()
    if args.data is None:
        tag = f"{data_spec['size'][1]}x{data_spec['size'][0]}_{data_spec['frames']}f_{data_spec['unique']}u"
        data = synthetic_folder(args.cache / tag, **data_spec)
    else:
        data = args.data
    made = time.monotonic() - started

    torch.manual_seed(0)
    parts = build(args.recipe, config, data)
    method, batch_size = parts["method"], int(config["batch_size"])
    options = {k: _flag(v) for k, v in (("amp", args.amp), ("channels_last", args.channels_last),
                                         ("compile", args.compile))}  # fmt: skip
    trainer = Trainer(method=method, optimizer=parts["optimizer"](method.parameters()), dataset=parts["dataset"],
                      batch_size=batch_size, num_workers=workers, device=device, progress=False, resume=False,
                      **options)  # fmt: skip
    trainer._start()  # seeds this process as fit() does
    print(trainer.speed.describe(), flush=True)
    result: dict[str, Any] = {
        "recipe": args.recipe, "preset": preset, "tiny": args.tiny, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__, "cpus": os.cpu_count(), "speed": trainer.speed.as_dict(), "workers": workers,
        "batch_size": batch_size, "steps": steps, "warmup": warmup,
        "data": {"path": str(data), "samples": len(parts["dataset"]), "synthetic": args.data is None,
                 "prepared_s": round(made, 1)},
    }  # fmt: skip

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps({**result, "wall_s": round(time.monotonic() - started, 1)}, indent=2) + "\n"
            )

    measure(trainer, parts, options, result, warmup=warmup, steps=steps, loader_only=args.loader_only, save=save)
    result["wall_s"] = round(time.monotonic() - started, 1)
    save()
    print(report(result), flush=True)
    return result


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _flag(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("auto", "bf16", "fp16"):
        return lowered
    if lowered in ("none", "fp32"):
        return None
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[lowered]


def report(r: dict[str, Any]) -> str:
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["clip_shape"].items())
    lines = [
        f"{r['recipe']} --preset {r['preset']} on {r['device']} ({r['device_name']}), batch {r['batch_size']} "
        f"({shapes}), {r['workers']} workers, {r['data']['samples']} samples",
        f"  (a) loader alone     {r['loader_clips_per_s']:9.1f} clips/s",
    ]
    if "step_clips_per_s" not in r:
        return "\n".join(lines)
    lines += [
        f"  (b) step alone       {r['step_clips_per_s']:9.1f} clips/s",
        f"  (c) together         {r['together_clips_per_s']:9.1f} clips/s "
        f"({100 * r['together_of_bound']:.0f}% of the slower side)",
    ]
    if "coclr_step_clips_per_s" in r:
        lines.append(f"      CoCLR step alone {r['coclr_step_clips_per_s']:9.1f} clips/s")
    lines += [
        f"  bound by the {r['bound']}",
        f"  {r['flops_per_step'] / r['batch_size'] / 1e9:.2f} GFLOP per clip (forward + backward); "
        f"{r['matmul_dtype']} matmul {r['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s; "
        f"MFU {100 * r['mfu_step']:.1f}% (step), {100 * r['mfu_together']:.1f}% (together)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
