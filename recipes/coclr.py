"""CoCLR pretraining: InfoNCE per modality, then co-training cycles RGB<-flow, flow<-RGB (docs/methods/coclr.md).

Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning. NeurIPS 2020.

    python recipes/coclr.py --preset smoke                       # CPU, a few minutes, synthetic clips, no download
    python recipes/coclr.py --preset ucf101 --data UCF101/ --annotations ucfTrainTestlist/ --flow UCF101_flow/
    torchrun --nproc_per_node=2 recipes/coclr.py --preset ucf101 --data ... --amp bf16   # the official 2 x 32 clips
    python recipes/coclr.py --preset ucf101_released ...          # the official code's data pipeline
    python recipes/coclr.py --help                               # every key, its default, the presets
    python recipes/coclr.py --preset ucf101_released --print-config   # the resolved configuration, as JSON

Presets: ``ucf101`` and ``k400`` follow the paper, ``*_released`` the official code (TengdaHan/CoCLR); every value
and its source: docs/methods/presets.md.

Stages, top to bottom: 1 config → 2 data → 3 model → 4 InfoNCE on RGB and on flow → 5 CoCLR cycles (RGB mining
from flow, then flow mining from RGB) → 6 retrieval R@1 against the random initialisation (``--evaluate``) →
7 export of both backbones with ``videozoo.save_pretrained`` and a model card. Every stage checkpoints into
``<run_dir>/checkpoints/<stage>/last.pt``; running the same command again after a kill resumes exactly where it
stopped (finished stages load their last checkpoint and return at once).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange

import videozoo
from videozoo.data import UCF101, Kinetics400, PairedTransform, UniformClipSampler, VideoEval, extract_flow_folder
from videozoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, CoCLRViews, MapSamples
from videozoo.distributed import init_from_env, is_main_process
from videozoo.eval.retrieval import recall_at_k
from videozoo.methods import CoCLR, InfoNCE
from videozoo.registry import InputSpec
from videozoo.training import Trainer, parse_config, schedules, summary_line
from videozoo.training.config import config_to_dict
from videozoo.training.presets import Augment, Synthetic, augment, released_aug, sourced, src

MODALITIES = {"video": "rgb", "flow": "flow"}  # batch key -> name


# ==================================================================================================
# 1. config: defaults = the paper's UCF101 setting; presets; any key overridable from the command line
# ==================================================================================================
@dataclass
class Config:
    dataset: Literal["ucf101", "k400"] = "ucf101"  # annotation format of --data
    data: str = "data/UCF101"  # video root
    annotations: str | None = None  # ucfTrainTestlist folder (UCF101) or the CSV (K400); default beside --data
    flow: str = "data/UCF101_flow"  # TV-L1 flow store (videozoo.data.extract_flow_folder)
    split: int = 1  # UCF101 split
    synthetic: Synthetic = field(default_factory=Synthetic)  # the smoke run's data, its flow extracted by TV-L1
    flow_size: int | None = None  # short side at which synthetic flow is extracted (None: stored resolution)
    backbone: str = "s3d"  # any registered backbone (videozoo.list_models(tiny=None))
    frames: int = sourced(32, "paper: 32 frames; CoCLR README.md:30 --seq_len 32")  # clip length
    stride: int = sourced(1, "paper: consecutive frames; CoCLR README.md:30 --ds 1")
    decode_size: int | None = None  # resize while decoding (short side)
    aug: Augment = field(**augment("coclr"))  # the training augmentation (videozoo.data.preset("coclr"))
    views: Literal["two_clips", "official"] = sourced(
        "two_clips", "paper: two clips of a video, each augmented; the official mixes regimes (views='official')"
    )  # two_clips: each clip strongly augmented; official: half one clip, colour on part of the views
    colour_on_flow: bool = sourced(
        False, "our choice: colour ops are meaningless on flow; the official augments flow like RGB (True)"
    )  # jitter, grey and blur reach the flow frames (flow InfoNCE and co-training)
    batch_size: int = sourced(32, "CoCLR README.md:29-30 --nproc_per_node=2 --batch_size 32")  # per process
    lr: float = sourced(1e-3, "paper: Adam, lr 1e-3; CoCLR main_nce.py:47")  # Adam
    wd: float = sourced(1e-5, "CoCLR main_nce.py:49 --wd 1e-5")
    infonce_epochs: int = sourced(300, "paper; CoCLR README.md:31 --epochs 300")
    infonce_milestones: tuple[int, ...] = sourced((250, 280), "CoCLR README.md:31 --schedule 250 280")  # lr x0.1
    coclr_epochs: int = sourced(100, "paper: 100 epochs per half-cycle; CoCLR README.md:47 --epochs 100")
    coclr_milestones: tuple[int, ...] = sourced((80,), "CoCLR README.md:47 --schedule 80")
    cycles: int = sourced(2, "paper: two cycles on UCF101 (README.md:42 shows one)")
    queue_size: int = sourced(2048, "paper; CoCLR README.md:29 --moco-k 2048")
    dim: int = sourced(128, "paper; CoCLR main_nce.py:84 --moco-dim 128")
    temperature: float = sourced(0.07, "paper; CoCLR main_nce.py:90 --moco-t 0.07")
    momentum: float = sourced(0.999, "paper; CoCLR main_nce.py:88 --moco-m 0.999")  # key encoder EMA
    topk: int = sourced(5, "paper: top-5 mined positives; CoCLR README.md:45 --topk 5")  # positives mined per query
    drop_self_p: float = sourced(0.9, "CoCLR main_coclr.py:382 random() < 0.9 (issue 43)")  # drop the self-positive
    amp: Literal["auto", "bf16", "fp16"] | None = "auto"  # autocast; auto: bf16 on CUDA, float32 on the CPU
    channels_last: bool | Literal["auto"] = "auto"  # channels-last-3d; auto: on CUDA only
    compile: bool | Literal["auto"] = "auto"  # torch.compile the method; auto: on CUDA (methods tested compiled)
    workers: int = 8  # DataLoader workers per process
    threads: int | None = None  # torch CPU threads (None: torch's default)
    max_steps: int | None = None  # per stage, for debugging
    ckpt_every_minutes: float = 30.0
    log_every: int = 10
    progress: bool = True
    evaluate: bool = False  # retrieval R@1 (test split queries the train split), pretrained vs random init
    eval_clips: int = 4  # clips per video, features averaged
    seed: int = 0
    run_dir: str = "runs/coclr"


K400 = {  # Kinetics-400 (README.md:58-87): InfoNCE on 4 GPUs x 32, CoCLR on 2 x 32, one cycle of 50 + 50
    "dataset": "k400",
    "data": "data/kinetics400",
    "flow": "data/kinetics400_flow",
    "decode_size": 256,
    "queue_size": src(16384, "paper; CoCLR README.md:61 --moco-k 16384"),
    "coclr_epochs": src(50, "paper; CoCLR README.md:79 --epochs 50"),
    "coclr_milestones": src((40,), "CoCLR README.md:79 --schedule 40"),
    "cycles": src(1, "paper: one cycle on K400; CoCLR README.md:74-87"),
    "run_dir": "runs/coclr_k400",
}
RELEASED = {  # the official data pipeline (main_nce.py, main_coclr.py, utils/augmentation.py)
    "views": src(
        "official",
        "CoCLR main_nce.py:386-390, main_coclr.py:470-473: TransformController("
        "[TwoClipTransform(p=0.3), OneClipTransform], weights=[0.5, 0.5]); utils/augmentation.py:380-432",
    ),
    "colour_on_flow": src(
        True,
        "CoCLR main_nce.py:373-381 (flow InfoNCE: the same transform on flow frames), "
        "main_coclr.py:447-465 (RGB and flow one sequence, seq_len = 2 x 32)",
    ),
    **released_aug("coclr"),
}
PRESETS = {
    "ucf101": dict(dataset="ucf101", run_dir="runs/coclr_ucf101"),  # the paper (the defaults)
    "ucf101_released": dict(dataset="ucf101", **RELEASED, run_dir="runs/coclr_ucf101_released"),
    "k400": K400,
    "k400_released": {**K400, **RELEASED, "run_dir": "runs/coclr_k400_released"},
    # smoke (docs/benchmarks.md): the cast augmentation (aug.channel_gain) does the colour invariance, and lighter
    # jitter and no grey let the tiny RGB network learn the motion within 300 co-training steps at every seed
    "smoke": {"synthetic.enabled": True, "backbone": "r3d_tiny", "synthetic.videos_per_class": 16,
              "synthetic.clips_per_group": 4, "synthetic.frames": 10, "synthetic.size": 64, "flow_size": 32,
              "decode_size": 32, "frames": 8, "aug.crop_size": 32, "synthetic.colour_cast": 0.6,
              "synthetic.object_size": (0.22, 0.30), "synthetic.objects": (2, 2), "aug.channel_gain": 0.6,
              "aug.jitter_p": 0.4, "aug.grey_p": 0.0, "aug.scale": (0.5, 1.0), "aug.blur_sigma": (0.1, 0.5),
              "aug.flip_p": 0.0, "batch_size": 16, "lr": 1e-3, "infonce_epochs": 6, "infonce_milestones": (),
              "coclr_epochs": 50, "coclr_milestones": (), "cycles": 1, "queue_size": 96, "momentum": 0.95, "topk": 5,
              "workers": 2, "ckpt_every_minutes": 1.0, "log_every": 3, "evaluate": True,
              "run_dir": "runs/coclr_smoke"},
}  # fmt: skip


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def main() -> None:
    config, run_info = parse_config(Config(), PRESETS)
    env = init_from_env()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir, started = Path(config.run_dir), time.monotonic()
    torch.manual_seed(config.seed)

    # ==============================================================================================
    # 2. data: two clips per video, RGB and its aligned flow, one crop and flip for both (PairedTransform)
    # ==============================================================================================
    data_root, annotations, flow_root = Path(config.data), config.annotations, Path(config.flow)
    if config.synthetic.enabled:  # the smoke run: motion-only classes, flow extracted with TV-L1 like the real data
        data_root, annotations, flow_root = run_dir / "data", run_dir / "data", run_dir / "flow"
        if is_main_process():
            config.synthetic.make(data_root, seed=config.seed)
            print(
                "flow:",
                extract_flow_folder(
                    data_root, flow_root, size=config.flow_size, workers=config.workers, progress=config.progress
                ),
            )
        barrier()

    def dataset(*, train: bool, flow: bool = True, **kwargs):
        common = dict(
            num_frames=config.frames,
            stride=config.stride,
            decode_size=config.decode_size,
            flow_root=flow_root if flow else None,
            **kwargs,
        )
        if config.dataset == "k400":
            return Kinetics400(data_root, annotations or data_root.parent / "kinetics400_train.csv", **common)
        return UCF101(data_root, annotations, split=config.split, train=train, **common)

    def two_views(transform, *, flow: bool = True):
        """Two clips per video, decoded by the dataset, augmented by CoCLRViews as ``config.views`` says."""
        return MapSamples(dataset(train=True, flow=flow, num_views=2), CoCLRViews(transform, regime=config.views))

    train_aug = config.aug.build("coclr")
    flow_aug = train_aug if config.colour_on_flow else train_aug.without_colour()
    train_sets = {  # what each stage reads: InfoNCE needs one modality, CoCLR both
        "video": two_views(train_aug, flow=False),
        "flow": two_views(PairedTransform(flow_aug, colour_on_flow=config.colour_on_flow)),
        "both": two_views(PairedTransform(train_aug, colour_on_flow=config.colour_on_flow)),
    }  # (the flow stage's RGB views are unused)

    # ==============================================================================================
    # 3. model: one backbone per modality (flow is a 3-channel image: x, y, 128), any registered architecture
    # ==============================================================================================
    def new_backbone(modality: str) -> torch.nn.Module:
        backbone = videozoo.create_model(config.backbone)
        # what the exported weights expect (save_pretrained writes it into config.json and the card)
        backbone.input_spec = InputSpec(
            channels=MODALITIES[modality],
            frames=config.frames,
            stride=config.stride,
            resize=config.aug.crop_size,
            crop_size=config.aug.crop_size,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
        return backbone

    backbones = {m: new_backbone(m) for m in MODALITIES}  # seeded above: a resumed run rebuilds the same init
    random_init = {m: copy.deepcopy(b) for m, b in backbones.items()}

    def train(method: torch.nn.Module, stage: str, data: str, epochs: int, milestones: tuple[int, ...]) -> Trainer:
        optimizer = torch.optim.Adam(
            [p for p in method.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.wd
        )
        trainer = Trainer(
            method=method, optimizer=optimizer, dataset=train_sets[data], batch_size=config.batch_size, epochs=epochs,
            num_workers=config.workers, lr_schedule=schedules.multistep(milestones=[m / epochs for m in milestones]),
            schedules={"momentum": schedules.constant(config.momentum)}, amp=config.amp,
            channels_last=config.channels_last, compile=config.compile, log_dir=run_dir / "tensorboard" / stage,
            log_every=config.log_every, progress=config.progress, ckpt_dir=run_dir / "checkpoints" / stage,
            ckpt_every_minutes=config.ckpt_every_minutes, seed=config.seed, max_steps=config.max_steps,
            config=config, run_info=run_info,
        )  # fmt: skip
        summary = trainer.fit()
        if is_main_process():
            print(summary_line(stage, summary))
        return trainer

    # ==============================================================================================
    # 4. stage 1: InfoNCE (MoCo on video) for each modality on its own
    # ==============================================================================================
    encoders, trainers = {}, {}
    for modality, name in MODALITIES.items():
        method = InfoNCE(
            backbone=backbones[modality],
            dim=config.dim,
            queue_size=config.queue_size,
            temperature=config.temperature,
            input_key=modality,
        )
        trainers[modality] = train(
            method, f"1_infonce_{name}", modality, config.infonce_epochs, config.infonce_milestones
        )
        encoders[modality] = method.export_encoder()

    # ==============================================================================================
    # 5. stage 2: CoCLR cycles: train RGB with positives mined by the frozen flow network, then the reverse
    # ==============================================================================================
    for cycle in range(1, config.cycles + 1):
        for modality, other in (("video", "flow"), ("flow", "video")):
            method = CoCLR(
                backbone=encoders[modality].backbone,
                head=encoders[modality].head,
                other_backbone=encoders[other].backbone,
                other_head=encoders[other].head,
                dim=config.dim,
                queue_size=config.queue_size,
                temperature=config.temperature,
                topk=config.topk,
                drop_self_p=config.drop_self_p,
                input_key=modality,
                other_key=other,
                seed=config.seed,
            )
            stage = f"2_cycle{cycle}_{MODALITIES[modality]}_from_{MODALITIES[other]}"
            trainers[modality] = train(method, stage, "both", config.coclr_epochs, config.coclr_milestones)
            encoders[modality] = method.export_encoder()

    # ==============================================================================================
    # 6. evaluation: nearest-neighbour retrieval, held-out (test split) videos query the training videos
    # ==============================================================================================
    results: dict = {
        "command": run_info["command"],
        "config": config_to_dict(config),
        "overrides": run_info.get("overrides"),
        "retrieval": {},
    }
    if config.evaluate and is_main_process():
        size = config.aug.crop_size
        test_view = VideoEval(resize=size, crop_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        sampler = UniformClipSampler(num_frames=config.frames, stride=config.stride, num_clips=config.eval_clips)
        sets = {split: dataset(train=split == "train", sampler=sampler, transform=test_view, flow_transform=test_view)
                for split in ("train", "test")}  # fmt: skip

        @torch.inference_mode()
        def features(nets: dict, modality: str, split: str) -> tuple[dict, torch.Tensor]:
            """{name: (N, D)} per-video features of each net: clip embeddings L2-normalised, then averaged."""
            nets = {k: net.to(env.device).eval() for k, net in nets.items()}
            loader = torch.utils.data.DataLoader(sets[split], batch_size=8, num_workers=config.workers)
            rows, labels = {k: [] for k in nets}, []
            for batch in loader:
                clips = batch[modality].to(env.device)  # (B, N, C, T, H, W); (B, C, T, H, W) for one clip
                if clips.ndim == 5:
                    clips = rearrange(clips, "b c t h w -> b 1 c t h w")
                for k, net in nets.items():
                    emb = F.normalize(net(rearrange(clips, "b n c t h w -> (b n) c t h w")).float(), dim=1)
                    rows[k].append(rearrange(emb, "(b n) d -> b n d", b=clips.shape[0]).mean(dim=1).cpu())
                labels.append(batch["label"])
            return {k: torch.cat(v) for k, v in rows.items()}, torch.cat(labels)

        for modality, name in MODALITIES.items():
            nets = {"pretrained": trainers[modality].method.export_backbone(), "random_init": random_init[modality]}
            (queries, q_labels), (gallery, g_labels) = (features(nets, modality, s) for s in ("test", "train"))
            results["retrieval"][name] = {
                k: recall_at_k(queries[k], q_labels, gallery[k], g_labels, ks=(1, 5), center="own") for k in nets
            }
            r = results["retrieval"][name]
            print(
                f"retrieval {name}: R@1 pretrained {r['pretrained']['R@1']:.3f} vs random init "
                f"{r['random_init']['R@1']:.3f} ({len(sets['test'])} queries, {len(sets['train'])} gallery)"
            )

    # ==============================================================================================
    # 7. export: each trained backbone with save_pretrained + a model card; the results as JSON
    # ==============================================================================================
    data_name = "synthetic" if config.synthetic.enabled else config.dataset
    epochs = f"InfoNCE {config.infonce_epochs} + {config.cycles} CoCLR cycle(s) x {config.coclr_epochs} per modality"
    for modality, name in MODALITIES.items():
        metrics = [dict(task=f"{data_name} split-{config.split} retrieval (test queries train)", metric=metric,
                        value=100 * value, protocol="pooled, clip-normalised, averaged, mean-centred, cosine",
                        source=f"this run: {run_info['command']}")
                   for metric, value in results["retrieval"].get(name, {}).get("pretrained", {}).items()]  # fmt: skip
        out = trainers[modality].export(
            run_dir / "export" / f"coclr_{config.backbone}_{data_name}_{name}", metrics=metrics,
            card={"description": f"CoCLR {config.backbone}, {name} stream, pretrained on {data_name}",
                  "paper": "Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning. "
                  "NeurIPS 2020", "data": data_name if config.synthetic.enabled else str(data_root), "epochs": epochs,
                  "method": "CoCLR (InfoNCE, then co-training with positives mined by the other modality)"},
        )  # fmt: skip
        if out is not None:
            results.setdefault("exported", {})[name] = str(out)
    if is_main_process():
        results["wall_time_s"] = time.monotonic() - started
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {run_dir / 'results.json'}; weights: {run_dir / 'export'} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
