"""STiCA pretraining (and its GDT audio-visual baseline) on video with audio (docs/methods/stica.md).

Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
Representation Learning. ICCV 2021. GDT: Patrick, Asano et al. On Compositions of Transformations in Contrastive
Self-Supervised Learning. ICCV 2021.

    python recipes/stica.py --preset smoke                        # CPU, a few minutes, synthetic clips, no download
    python recipes/stica.py --preset k400 --data kinetics400/train --annotations kinetics400_train.csv
    torchrun --nproc_per_node=8 recipes/stica.py --preset k400 --data ... --amp bf16   # SyncBN, global negatives
    python recipes/stica.py --preset gdt_k400 --data ...          # the GDT baseline: no crops, no pooling
    python recipes/stica.py --help                                # every key, its default, the presets

Stages, top to bottom: 1 config → 2 data (two augmentations of one clip and the log-filterbank of its audio) →
3 model (video + audio backbone, STiCA or GDT) → 4 training (SGD, warm-up then constant; Adam in the smoke run;
checkpoints into ``<run_dir>/checkpoints``: the same command after a kill resumes exactly) → 5 retrieval R@1 of the
pretrained video backbone against its random initialisation (``--evaluate``) → 6 export of both backbones with
``videozoo.save_pretrained`` and a model card, and ``<run_dir>/results.json``.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from torchvision.transforms import Compose

import videozoo
from videozoo.data import UCF101, Kinetics400, VolumeJitter, log_filterbank
from videozoo.data import preset as augmentation
from videozoo.data.synthetic import make_synthetic_dataset
from videozoo.data.transforms import KINETICS_MEAN, KINETICS_STD
from videozoo.distributed import convert_sync_batchnorm, init_from_env, is_main_process
from videozoo.eval.retrieval import evaluate_retrieval, retrieval_sets
from videozoo.methods.stica import GDT, STiCA
from videozoo.registry import InputSpec
from videozoo.training import Trainer, parse_config, summary_line


# ==================================================================================================
# 1. config: defaults = the paper's K400 setting; presets; any key overridable from the command line
# ==================================================================================================
@dataclass
class Config:
    method: Literal["stica", "gdt"] = "stica"  # gdt: no feature crops, the backbone's own average pooling
    data: str = "data/kinetics400/train"  # video root
    annotations: str | None = None  # K400 CSV (label,youtube_id,time_start,time_end,split); default beside --data
    synthetic: bool = False  # write a synthetic motion dataset with motion-following audio into run_dir
    synthetic_videos_per_class: int = 12
    synthetic_frames: int = 32
    synthetic_size: int = 64  # rendered frame side, pixels
    synthetic_clips_per_group: int = 2  # clips per source video; group 1 of each class is held out
    synthetic_scenes: int | None = 2  # scenes shared by every class (None: one per group and class; see synthetic.py)
    synthetic_colour_cast: float = 0.0  # per-video colour grade: each channel x exp(U(-c, c)) (see synthetic.py)
    synthetic_object_size: tuple[float, float] = (0.14, 0.22)  # object radius range, fraction of the side
    synthetic_objects: tuple[int, int] = (1, 2)  # fewest and most moving objects per scene
    backbone: str = "r2plus1d_18"  # any registered video backbone with a (B, D, T, H, W) pre-pool map
    audio_backbone: str = "resnet9_audio"
    frames: int = 60  # clip length: 2 s at 30 fps (T=8 in the pre-pool map)
    fps: float | None = 30.0  # resample clips to this rate (None: native frames, every `stride`)
    stride: int = 1
    decode_size: int | None = 160  # short side while decoding (the official max jitter scale)
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.14, 1.0)  # random resized crop area ("stica" preset)
    flip_p: float = 0.5  # horizontal flip ("stica" preset); 0 where direction is the label (synthetic motion)
    blur_p: float = 0.5  # Gaussian blur ("stica" preset)
    channel_gain: float = 0.0  # colour-cast augmentation: each channel x exp(U(-g, g)) per clip (0: off)
    views: int = 2  # augmentations of one clip (GDT's own recipe: 1)
    audio_rate: int = 24000  # mono, resampled
    audio_bins: int = 257  # log filterbank bins: 1 x 257 x 99 per second
    volume_jitter: tuple[float, float] = (0.9, 1.1)
    pooling_depth: int = 2  # transformer pooling layers (0: average pooling)
    large_crops: int = 2  # spatial feature crops per view pair (official example: 2 large, 4 small)
    small_crops: int = 4
    large_tcrops: int = 2  # temporal feature crops (official example: 2 large, 1 small)
    small_tcrops: int = 1
    temperature_av: float = 0.1
    temperature_crop: float = 0.5
    alpha: float = 0.5  # weight of the audio-visual loss; the crop loss gets 1 - alpha
    dim: int = 256
    head_dropout: float = 0.3  # in both GDT heads
    batch_size: int = 8  # per process; official: 8 per GPU on 64 GPUs (512)
    epochs: int = 151
    optimizer: Literal["sgd", "adam"] = "sgd"  # the paper's SGD; the smoke run's few CPU steps go further with Adam
    lr: float = 0.64  # SGD, for the global batch of 512: scale linearly with yours
    warmup_epochs: float = 10  # linear warm-up from warmup_lr, then constant
    warmup_lr: float = 0.01
    momentum: float = 0.9  # SGD
    wd: float = 1e-5
    sync_bn: bool = True  # SyncBatchNorm under torchrun (GPUs)
    amp: Literal["auto", "bf16", "fp16"] | None = "auto"  # autocast; auto: bf16 on CUDA, float32 on the CPU
    channels_last: bool | Literal["auto"] = "auto"  # channels-last-3d; auto: on CUDA only
    compile: bool | Literal["auto"] = "auto"  # torch.compile the method; auto: on CUDA (methods tested compiled)
    workers: int = 10  # DataLoader workers per process
    threads: int | None = None  # torch CPU threads (None: torch's default)
    max_steps: int | None = None  # stop early (debugging)
    ckpt_every_minutes: float = 30.0
    log_every: int = 50
    progress: bool = True
    evaluate: bool = False  # retrieval R@1 (test split queries train split), pretrained vs random init
    eval_data: str | None = None  # UCF101 root (ucfTrainTestlist/ inside or beside it) for --evaluate
    seed: int = 0
    run_dir: str = "runs/stica_k400"


PRESETS = {
    "k400": dict(method="stica", frames=60, fps=30.0, batch_size=8, epochs=151, lr=0.64, warmup_epochs=10,
                 run_dir="runs/stica_k400"),
    "gdt_k400": dict(method="gdt", frames=30, fps=30.0, views=1, pooling_depth=0, large_crops=0, small_crops=0,
                     large_tcrops=0, small_tcrops=0, temperature_av=0.07, batch_size=8, epochs=201, lr=0.64,
                     warmup_epochs=10, run_dir="runs/gdt_k400"),
    # smoke (docs/benchmarks.md): r3d_18_tiny, because the tiny R(2+1)D learns the motion too slowly for a CPU budget
    # (benchmarks/synthetic_supervised.py); Adam, as CoCLR's smoke run; alpha 0.8: with 0.5 the crop loss's instance
    # discrimination outpaces the slower audio-visual loss within 360 steps (above random init at 1 of 3 seeds, not 3)
    "smoke": dict(synthetic=True, backbone="r3d_18_tiny", audio_backbone="resnet9_audio_tiny",
                  synthetic_videos_per_class=16, synthetic_clips_per_group=4, synthetic_frames=16, synthetic_size=64,
                  synthetic_colour_cast=0.6, synthetic_object_size=(0.22, 0.30), synthetic_objects=(2, 2),
                  channel_gain=0.6, alpha=0.8, frames=8, fps=None,
                  decode_size=None, crop_size=32, crop_scale=(0.5, 1.0), flip_p=0.0, blur_p=0.0, head_dropout=0.0,
                  batch_size=16, epochs=60, optimizer="adam", lr=1e-3, warmup_epochs=0, workers=2,
                  threads=1, ckpt_every_minutes=1.0, log_every=5, evaluate=True, run_dir="runs/stica_smoke"),
}  # fmt: skip


def main() -> None:
    config, run_info = parse_config(Config(), PRESETS)
    env = init_from_env()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir, started = Path(config.run_dir), time.monotonic()
    torch.manual_seed(config.seed)

    # ==============================================================================================
    # 2. data: two augmentations of one clip ("stica" preset) and the log filterbank of the clip's audio
    # ==============================================================================================
    data_root, annotations = Path(config.data), config.annotations
    if config.synthetic:  # the smoke run: motion-only classes, a tone whose pitch follows the motion
        data_root = run_dir / "data"
        if is_main_process() and not (data_root / "testlist01.txt").is_file():
            make_synthetic_dataset(data_root, videos_per_class=config.synthetic_videos_per_class, audio=True,
                                   frames=config.synthetic_frames, size=(config.synthetic_size,) * 2, seed=config.seed,
                                   clips_per_group=config.synthetic_clips_per_group,
                                   scenes=config.synthetic_scenes, colour_cast=config.synthetic_colour_cast,
                                   object_size=config.synthetic_object_size, objects=config.synthetic_objects)
        if dist.is_initialized():
            dist.barrier()

    filterbank = functools.partial(log_filterbank, sample_rate=config.audio_rate, n_bins=config.audio_bins)
    audio_features = Compose([VolumeJitter(*config.volume_jitter), filterbank])  # wave -> (1, bins, 100 s - 1)
    common = dict(num_frames=config.frames, stride=config.stride, fps=config.fps, decode_size=config.decode_size,
                  audio_sample_rate=config.audio_rate, audio_transform=audio_features)
    if config.views > 1:  # the official loader: one clip, augmented `views` times, with its audio under each
        common.update(num_views=config.views, views_share_clip=True)
    common["transform"] = augmentation("stica", crop_size=config.crop_size, scale=config.crop_scale,
                                     flip_p=config.flip_p, blur_p=config.blur_p, channel_gain=config.channel_gain)
    if config.synthetic:
        train_set = UCF101(data_root, data_root, split=1, train=True, **common)
    else:
        csv = annotations or data_root.parent / "kinetics400_train.csv"
        train_set = Kinetics400(data_root, csv, **common)  # videos without audio are skipped and counted

    # ==============================================================================================
    # 3. model: any registered video and audio backbone; STiCA (crops + transformer pooling) or GDT
    # ==============================================================================================
    video_backbone = videozoo.create_model(config.backbone)
    # what the exported weights expect (save_pretrained writes it into config.json and the card)
    video_backbone.input_spec = InputSpec(channels="rgb", frames=config.frames, stride=config.stride, fps=config.fps,
                                          resize=config.crop_size, crop_size=config.crop_size, mean=KINETICS_MEAN,
                                          std=KINETICS_STD)  # fmt: skip
    audio_backbone = videozoo.create_model(config.audio_backbone)
    audio_backbone.input_spec = InputSpec(channels="audio", sample_rate=config.audio_rate, freq_bins=config.audio_bins,
                                          seconds=config.frames / config.fps if config.fps else None)  # fmt: skip
    random_init = copy.deepcopy(video_backbone)  # seeded above: a resumed run rebuilds the same initialisation
    if config.method == "gdt":
        method = GDT(video_backbone=video_backbone, audio_backbone=audio_backbone, dim=config.dim,
                     head_dropout=config.head_dropout, temperature=config.temperature_av)  # fmt: skip
    else:
        method = STiCA(video_backbone=video_backbone, audio_backbone=audio_backbone, pooling=config.pooling_depth,
                       dim=config.dim, head_dropout=config.head_dropout, num_large_crops=config.large_crops,
                       num_small_crops=config.small_crops,
                       num_large_tcrops=config.large_tcrops, num_small_tcrops=config.small_tcrops,
                       temperature_av=config.temperature_av, temperature_crop=config.temperature_crop,
                       alpha=config.alpha, seed=config.seed)  # fmt: skip
    if config.sync_bn:
        method = convert_sync_batchnorm(method)  # no-op in one process (and on CPU)

    # ==============================================================================================
    # 4. training: SGD (or Adam), linear warm-up from warmup_lr to lr, then constant (official main_stica.py)
    # ==============================================================================================
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(method.parameters(), lr=config.lr, weight_decay=config.wd)
    else:
        optimizer = torch.optim.SGD(method.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.wd)
    warmup, start = config.warmup_epochs / config.epochs, config.warmup_lr / config.lr

    def lr_schedule(progress: float) -> float:  # multiplier of lr at this fraction of training
        return start + (1 - start) * progress / warmup if progress < warmup else 1.0

    trainer = Trainer(
        method=method, optimizer=optimizer, dataset=train_set, batch_size=config.batch_size, epochs=config.epochs,
        num_workers=config.workers, lr_schedule=lr_schedule, amp=config.amp, channels_last=config.channels_last,
        compile=config.compile, log_dir=run_dir / "tensorboard", log_every=config.log_every, progress=config.progress,
        ckpt_dir=run_dir / "checkpoints", ckpt_every_minutes=config.ckpt_every_minutes, seed=config.seed,
        max_steps=config.max_steps, config=config, run_info=run_info,
    )  # fmt: skip
    summary = trainer.fit()
    if is_main_process():
        print(summary_line(config.method, summary))

    # ==============================================================================================
    # 5. evaluation: nearest-neighbour retrieval, held-out (test split) videos query the training videos
    # ==============================================================================================
    results: dict = {"command": run_info["command"], "overrides": run_info.get("overrides"), "train": summary}
    eval_root = data_root if config.synthetic else (Path(config.eval_data) if config.eval_data else None)
    if config.evaluate and eval_root is not None and is_main_process():
        split = retrieval_sets(*(UCF101(eval_root, split=1, train=train) for train in (False, True)))
        for which, backbone in (("pretrained", method.export_backbone()), ("random_init", random_init)):
            r = evaluate_retrieval(backbone, **split, protocol="coclr", ks=(1, 5), device=env.device, progress=False)
            results.setdefault("retrieval", {})[which] = {k: r[k] for k in ("R@1", "R@5", "num_queries", "num_gallery")}
        r = results["retrieval"]
        print(f"retrieval R@1: pretrained {r['pretrained']['R@1']:.3f} vs random init {r['random_init']['R@1']:.3f} "
              f"({r['pretrained']['num_queries']} held-out queries, {r['pretrained']['num_gallery']} gallery videos)")

    # ==============================================================================================
    # 6. export: both backbones with save_pretrained + a model card; the results as JSON
    # ==============================================================================================
    data_name = "synthetic" if config.synthetic else "k400"
    name = f"{config.method}_{config.backbone}_{data_name}"
    paper = "Patrick, Asano et al. " + (
        "Space-Time Crop & Attend: Improving Cross-modal Video Representation Learning. ICCV 2021"
        if config.method == "stica"
        else "On Compositions of Transformations in Contrastive Self-Supervised Learning. ICCV 2021"
    )
    recalls = results.get("retrieval", {}).get("pretrained", {})
    metrics = [dict(task=f"{data_name} split-1 retrieval (test queries train)", metric=metric, value=100 * value,
                    protocol="coclr: pooled, sliding windows, clip-normalised, averaged, mean-centred, cosine",
                    source=f"this run: {run_info['command']}")
               for metric, value in recalls.items() if metric.startswith("R@")]
    card = {"description": f"{config.method.upper()} {config.backbone} video encoder, pretrained on {data_name}",
            "paper": paper, "data": data_name if config.synthetic else str(data_root),
            "method": "STiCA (audio-visual NCE + feature-crop NCE, transformer pooling)" if config.method == "stica"
            else "GDT audio-visual NCE"}  # fmt: skip
    exported = trainer.export(run_dir / "export" / name, metrics=metrics, card=card)
    if is_main_process():
        audio_dir = run_dir / "export" / f"{name}_audio"
        videozoo.save_pretrained(method.export_audio_backbone(), audio_dir,
                                 card={**card, "description": f"the audio network trained with {name}",
                                       "recipe_command": run_info["command"]})  # fmt: skip
        results["exported"] = {"video": str(exported), "audio": str(audio_dir)}
        results["wall_time_s"] = time.monotonic() - started
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results: {run_dir / 'results.json'}; weights: {run_dir / 'export'} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
