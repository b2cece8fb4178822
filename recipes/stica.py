"""STiCA pretraining (and its GDT audio-visual baseline) on video with audio (docs/methods/stica.md).

Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal Video
Representation Learning. ICCV 2021. GDT: Patrick, Asano et al. On Compositions of Transformations in Contrastive
Self-Supervised Learning. ICCV 2021.

    python recipes/stica.py --preset smoke                        # CPU, a few minutes, synthetic clips, no download
    python recipes/stica.py --preset k400 --data kinetics400/train --annotations kinetics400_train.csv
    torchrun --nproc_per_node=8 recipes/stica.py --preset k400 --data ... --amp bf16   # SyncBN, global negatives
    python recipes/stica.py --preset gdt_k400 --data ...          # the GDT baseline: no crops, no pooling
    python recipes/stica.py --preset k400_released --data ...     # main_stica.py's pipeline and forward pass
    python recipes/stica.py --help                                # every key, its default, the presets
    python recipes/stica.py --preset k400 --print-config          # the resolved configuration, as JSON

Presets: ``k400`` and ``gdt_k400`` follow the papers, ``*_released`` the official code (facebookresearch/GDT);
every value and its source: docs/methods/presets.md.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from torchvision.transforms import Compose

import videozoo
from videozoo.data import UCF101, Kinetics400, VolumeJitter, log_filterbank
from videozoo.data.transforms import KINETICS_MEAN, KINETICS_STD, MultiView
from videozoo.distributed import convert_sync_batchnorm, init_from_env, is_main_process
from videozoo.eval.retrieval import evaluate_retrieval, retrieval_sets
from videozoo.methods.stica import GDT, STiCA
from videozoo.registry import InputSpec
from videozoo.training import Trainer, parse_config, schedules, summary_line
from videozoo.training.config import config_to_dict
from videozoo.training.presets import Augment, Synthetic, augment, released_aug, sourced, src

# ==================================================================================================
# 1. config: defaults = the paper's K400 setting; presets; any key overridable from the command line
# ==================================================================================================
E_G = "in no official file as a default: "  # values the README only gives as an example, or derived


@dataclass
class Config:
    method: Literal["stica", "gdt"] = sourced("stica", "paper: STiCA")  # gdt: no feature crops, the backbone's pooling
    data: str = "data/kinetics400/train"  # video root
    annotations: str | None = None  # K400 CSV (label,youtube_id,time_start,time_end,split); default beside --data
    synthetic: Synthetic = field(default_factory=Synthetic)  # the smoke run's data, with motion-following audio
    backbone: str = "r2plus1d_18"  # any registered video backbone with a (B, D, T, H, W) pre-pool map
    audio_backbone: str = "resnet9_audio"
    frames: int = sourced(
        60,
        E_G + "paper: 2 s clips; GDT README.md:48 STiCA K400, 60 frames (scripts/pretrain_stica.sh:42 defaults to 30)",
    )  # clip length: 2 s at 30 fps (T=8)
    fps: float | None = sourced(30.0, "GDT scripts/pretrain_stica.sh:104 TARGET_FPS=30")  # None: native frames
    stride: int = sourced(1, "GDT scripts/pretrain_stica.sh:105 SAMPLE_RATE=1")
    decode_size: int | None = 160  # short side while decoding (the official max jitter scale)
    aug: Augment = field(**augment("stica"))  # the clip augmentation (videozoo.data.preset("stica"))
    views: int = sourced(
        2, "paper: two augmentations of one clip; GDT datasets/AVideoDataset.py:411-412 multi_crop_clips = 2"
    )  # augmentations of one clip (GDT's own recipe: 1)
    audio_views: Literal["own", "shared"] = sourced(
        "own",
        "our choice: each view with its own spectrogram (own volume jitter); the official runs the audio "
        "network once per view on one spectrogram (audio_views='shared')",
    )  # own: a spectrogram per view; shared: one per clip, the audio network run once per view
    audio_rate: int = sourced(24000, "paper; GDT scripts/pretrain_stica.sh:108 AUD_SAMPLE_RATE=24000")  # mono
    audio_bins: int = sourced(257, "paper: 257 log filterbank bins (scripts/pretrain_stica.sh:109 AUD_SPEC_TYPE=2)")
    volume_jitter: tuple[float, float] = sourced((0.9, 1.1), "paper; GDT datasets/audio_utils.py:45-47")
    pooling_depth: int = sourced(2, "paper; GDT scripts/pretrain_stica.sh:81 NUM_LAYER=2 (README.md:177 passes 0)")
    large_crops: int = sourced(2, E_G + "GDT README.md:172 'e.g. 2' (scripts/pretrain_stica.sh:55 defaults to 1)")
    small_crops: int = sourced(4, E_G + "GDT README.md:173 'e.g. 4' (scripts/pretrain_stica.sh:61 defaults to 0)")
    large_tcrops: int = sourced(2, E_G + "GDT README.md:175 'e.g. 2' (scripts/pretrain_stica.sh:74 defaults to 0)")
    small_tcrops: int = sourced(1, E_G + "GDT README.md:174 'e.g. 1' (scripts/pretrain_stica.sh:68 defaults to 0)")
    crop_placement: Literal["uniform", "official"] = sourced(
        "uniform", "paper: random feature crops; the official never moves a large crop (crop_placement='official')"
    )  # offsets uniform over every valid position, or main_stica.py's get_fm_crop
    temperature_av: float = sourced(0.1, "paper; GDT main_stica.py:395 temp=0.1")
    temperature_crop: float = sourced(0.5, "paper; GDT scripts/pretrain_stica.sh:95 TEMP=0.5")
    alpha: float = sourced(0.5, "paper; GDT scripts/pretrain_stica.sh:91 CROSS_MODAL_ALPHA=0.5")  # audio-visual weight
    dim: int = sourced(256, "GDT scripts/pretrain_stica.sh:130 MLP_DIM=256")
    head_dropout: float = sourced(0.3, "GDT model.py:75 MLP(p=0.3)")  # in both GDT heads
    batch_size: int = sourced(8, "paper: 64 GPUs x 8; GDT scripts/pretrain_stica.sh:86 BATCH_SIZE=8")  # per process
    epochs: int = sourced(151, "GDT scripts/pretrain_stica.sh:116 EPOCHS=151")
    optimizer: Literal["sgd", "adam"] = sourced("sgd", "paper; GDT main_stica.py:108-113 SGD")  # smoke: Adam
    lr: float = sourced(0.64, "GDT scripts/pretrain_stica.sh:117 BASE_LR=64e-2, for 64 GPUs x 8 (README.md:186)")
    warmup_epochs: float = sourced(10, "GDT scripts/pretrain_stica.sh:119 LR_WARM_EPOCHS=10")  # linear from warmup_lr
    warmup_lr: float = sourced(0.01, "GDT scripts/pretrain_stica.sh:120 START_WARMUP_LR=1e-2")
    warmup_per: Literal["step", "epoch"] = sourced(
        "step", "GDT main_stica.py:114-116: the warm-up lr set every iteration"
    )  # the warm-up lr changes every step, or once per epoch (GDT's GradualWarmupScheduler)
    milestones: tuple[int, ...] = sourced(
        (), "GDT scripts/pretrain_stica.sh:123 USE_LR_SCHEDULER='False': constant after the warm-up"
    )  # lr x0.1 at these epochs (after the warm-up)
    momentum: float = sourced(0.9, "GDT main_stica.py:111 momentum=0.9")  # SGD
    wd: float = sourced(1e-5, "paper; GDT scripts/pretrain_stica.sh:118 WEIGHT_DECAY=1e-5")
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


GDT_SCRIPT = "GDT scripts/pretrain_gdt_k400.sh"
GDT_K400 = {  # GDT's audio-visual baseline on K400 (scripts/pretrain_gdt_k400.sh, main_gdt.py)
    "method": src("gdt", "GDT main_gdt.py, scripts/pretrain_gdt_k400.sh:56 MODEL='av_gdt'"),
    "frames": src(30, f"{GDT_SCRIPT}:69 CLIP_LEN=30"),
    "fps": src(30.0, f"{GDT_SCRIPT}:68 TARGET_FPS=30"),
    "stride": src(1, f"{GDT_SCRIPT}:71 SAMPLE_RATE=1"),
    "audio_rate": src(24000, f"{GDT_SCRIPT}:82 AUD_SAMPLE_RATE=24000"),
    "audio_bins": src(257, "our choice: STiCA's log filterbank (the script's AUD_SPEC_TYPE=1, :83, is not reproduced)"),
    "dim": src(256, "GDT main_gdt.py:97 num_classes=256"),
    "views": src(
        1,
        "our choice: one view, the audio-visual loss alone (the script's time-reversed second view, "
        "DUALDATA at :67, is not reproduced)",
    ),
    "pooling_depth": src(0, "GDT model.py (GDT): the backbone's average pooling"),
    **{k: src(0, "GDT: no feature crops") for k in ("large_crops", "small_crops", "large_tcrops", "small_tcrops")},
    "temperature_av": src(0.07, f"{GDT_SCRIPT}:64 NCE_T=0.07"),
    "batch_size": src(8, f"{GDT_SCRIPT}:72 BATCH_SIZE=8"),
    "epochs": src(201, f"{GDT_SCRIPT}:48 MUM_EPOCHS=201"),
    "lr": src(
        0.64,
        E_G + f"0.01 ({GDT_SCRIPT}:73 LR=1e-2) x the world size 64 (main_gdt.py:164-168 "
        "GradualWarmupScheduler(multiplier=args.world_size); README.md:153 64 GPUs)",
    ),
    "warmup_epochs": src(10, f"{GDT_SCRIPT}:54 LR_WARM_EPOCHS=10"),
    "warmup_per": src(
        "step", "our choice: the warm-up set every step, as STiCA's; GDT's steps once per epoch (gdt_k400_released)"
    ),
    "momentum": src(0.9, f"{GDT_SCRIPT}:49 MOMENTUM=0.9"),
    "warmup_lr": src(0.01, f"{GDT_SCRIPT}:73 LR=1e-2, where the warm-up starts"),
    "milestones": src((), f"{GDT_SCRIPT}:55 LR_MIL='251', after the last of 201 epochs: constant"),
    "wd": src(1e-5, f"{GDT_SCRIPT}:50 WEIGHT_DECAY=1e-5"),
    "run_dir": "runs/gdt_k400",
}
STICA_RELEASED = {  # main_stica.py's data pipeline and forward pass
    **released_aug("stica"),
    "audio_views": src(
        "shared",
        "GDT main_stica.py:230-245: model(video[i], audio) per view: one spectrogram, "
        "the audio network and its head (dropout) run once per view",
    ),
    "crop_placement": src(
        "official", "GDT main_stica.py:537-547 get_fm_crop: np.random.randint(0, 7 - window), an exclusive bound"
    ),
}
PRESETS = {
    "k400": dict(run_dir="runs/stica_k400"),  # the paper (the defaults)
    "k400_released": {**STICA_RELEASED, "run_dir": "runs/stica_k400_released"},
    "gdt_k400": GDT_K400,
    "gdt_k400_released": {
        **GDT_K400,
        "warmup_per": src("epoch", "GDT main_gdt.py:248-249: GradualWarmupScheduler stepped once per epoch"),
        "run_dir": "runs/gdt_k400_released",
    },
    "gdt_k400_released_defaults": {  # main_gdt.py run without the script's arguments (its argparse defaults)
        **GDT_K400,
        "epochs": src(200, "GDT main_gdt.py:625 --epochs 200 (default; the K400 script passes 201)"),
        "milestones": src((151, 176), "GDT main_gdt.py:638 --lr_milestones 150,175 (default): main_gdt.py:150 "
                          "subtracts the 10 warm-up epochs and the MultiStepLR starts after the warm-up ends (src/"
                          "scheduler.py:32, last_epoch > total_epoch), so the lr drops from epoch 151 and 176 on"),
        "warmup_per": src("epoch", "GDT main_gdt.py:248-249: GradualWarmupScheduler stepped once per epoch"),
        "run_dir": "runs/gdt_k400_released_defaults",
    },
    # smoke (docs/benchmarks.md): r3d_18_tiny, because the tiny R(2+1)D learns the motion too slowly for a CPU budget
    # (benchmarks/synthetic_supervised.py); Adam, as CoCLR's smoke run; alpha 0.8: with 0.5 the crop loss's instance
    # discrimination outpaces the slower audio-visual loss within 360 steps (above random init at 1 of 3 seeds, not 3)
    "smoke": {"synthetic.enabled": True, "backbone": "r3d_18_tiny", "audio_backbone": "resnet9_audio_tiny",
              "synthetic.videos_per_class": 16, "synthetic.clips_per_group": 4, "synthetic.frames": 16,
              "synthetic.size": 64, "synthetic.colour_cast": 0.6, "synthetic.object_size": (0.22, 0.30),
              "synthetic.objects": (2, 2), "aug.channel_gain": 0.6, "alpha": 0.8, "frames": 8, "fps": None,
              "decode_size": None, "aug.crop_size": 32, "aug.scale": (0.5, 1.0), "aug.flip_p": 0.0, "aug.blur_p": 0.0,
              "head_dropout": 0.0, "batch_size": 16, "epochs": 60, "optimizer": "adam", "lr": 1e-3,
              "warmup_epochs": 0, "workers": 2, "threads": 1, "ckpt_every_minutes": 1.0, "log_every": 5,
              "evaluate": True, "run_dir": "runs/stica_smoke"},
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
    if config.synthetic.enabled:  # the smoke run: motion-only classes, a tone whose pitch follows the motion
        data_root = run_dir / "data"
        if is_main_process():
            config.synthetic.make(data_root, seed=config.seed, audio=True)
        if dist.is_initialized():
            dist.barrier()

    filterbank = functools.partial(log_filterbank, sample_rate=config.audio_rate, n_bins=config.audio_bins)
    audio_features = Compose([VolumeJitter(*config.volume_jitter), filterbank])  # wave -> (1, bins, 100 s - 1)
    common = dict(
        num_frames=config.frames,
        stride=config.stride,
        fps=config.fps,
        decode_size=config.decode_size,
        audio_sample_rate=config.audio_rate,
        audio_transform=audio_features,
    )
    augment_clip = config.aug.build("stica")
    if config.views > 1 and config.audio_views == "shared":  # main_stica.py: one clip, one spectrogram, V views
        common["transform"] = MultiView(augment_clip, views=config.views)  # video (V, C, T, H, W), audio (1, F, T')
    elif config.views > 1:  # one clip augmented `views` times, each view with its own spectrogram
        common.update(num_views=config.views, views_share_clip=True, transform=augment_clip)
    else:
        common["transform"] = augment_clip
    if config.synthetic.enabled:
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
                                          resize=config.aug.crop_size, crop_size=config.aug.crop_size,
                                          mean=KINETICS_MEAN, std=KINETICS_STD)  # fmt: skip
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
                       alpha=config.alpha, crop_placement=config.crop_placement,
                       audio_per_view=config.audio_views == "shared", seed=config.seed)  # fmt: skip
    if config.sync_bn:
        method = convert_sync_batchnorm(method)  # no-op in one process (and on CPU)

    # ==============================================================================================
    # 4. training: SGD (or Adam), linear warm-up from warmup_lr to lr, then constant (official main_stica.py) or
    #    x0.1 at each of `milestones` (main_gdt.py's defaults)
    # ==============================================================================================
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(method.parameters(), lr=config.lr, weight_decay=config.wd)
    else:
        optimizer = torch.optim.SGD(method.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.wd)
    lr_schedule = schedules.warmup_multistep(
        warmup=config.warmup_epochs / config.epochs, start=config.warmup_lr / config.lr,
        milestones=[m / config.epochs for m in config.milestones],
        epochs=config.epochs if config.warmup_per == "epoch" else None,  # GDT: the warm-up lr changes per epoch
    )  # fmt: skip

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
    results: dict = {
        "command": run_info["command"],
        "config": config_to_dict(config),
        "overrides": run_info.get("overrides"),
        "train": summary,
    }
    eval_root = data_root if config.synthetic.enabled else (Path(config.eval_data) if config.eval_data else None)
    if config.evaluate and eval_root is not None and is_main_process():
        split = retrieval_sets(*(UCF101(eval_root, split=1, train=train) for train in (False, True)))
        for which, backbone in (("pretrained", method.export_backbone()), ("random_init", random_init)):
            r = evaluate_retrieval(backbone, **split, protocol="coclr", ks=(1, 5), device=env.device, progress=False)
            results.setdefault("retrieval", {})[which] = {k: r[k] for k in ("R@1", "R@5", "num_queries", "num_gallery")}
        r = results["retrieval"]
        print(
            f"retrieval R@1: pretrained {r['pretrained']['R@1']:.3f} vs random init {r['random_init']['R@1']:.3f} "
            f"({r['pretrained']['num_queries']} held-out queries, {r['pretrained']['num_gallery']} gallery videos)"
        )

    # ==============================================================================================
    # 6. export: both backbones with save_pretrained + a model card; the results as JSON
    # ==============================================================================================
    data_name = "synthetic" if config.synthetic.enabled else "k400"
    name = f"{config.method}_{config.backbone}_{data_name}"
    paper = "Patrick, Asano et al. " + (
        "Space-Time Crop & Attend: Improving Cross-modal Video Representation Learning. ICCV 2021"
        if config.method == "stica"
        else "On Compositions of Transformations in Contrastive Self-Supervised Learning. ICCV 2021"
    )
    recalls = results.get("retrieval", {}).get("pretrained", {})
    metrics = [
        dict(
            task=f"{data_name} split-1 retrieval (test queries train)",
            metric=metric,
            value=100 * value,
            protocol="coclr: pooled, sliding windows, clip-normalised, averaged, mean-centred, cosine",
            source=f"this run: {run_info['command']}",
        )
        for metric, value in recalls.items()
        if metric.startswith("R@")
    ]
    card = {"description": f"{config.method.upper()} {config.backbone} video encoder, pretrained on {data_name}",
            "paper": paper, "data": data_name if config.synthetic.enabled else str(data_root),
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
