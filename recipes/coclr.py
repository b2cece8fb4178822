"""CoCLR pretraining: InfoNCE per modality, then co-training cycles RGB<-flow, flow<-RGB (docs/methods/coclr.md).

Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning. NeurIPS 2020.

    python recipes/coclr.py --preset smoke                       # CPU, a few minutes, synthetic clips, no download
    python recipes/coclr.py --preset ucf101 --data UCF101/ --annotations ucfTrainTestlist/ --flow UCF101_flow/
    torchrun --nproc_per_node=2 recipes/coclr.py --preset ucf101 --data ... --amp bf16   # the official 2 x 32 clips
    python recipes/coclr.py --help                               # every key, its default, the presets

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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange

import videozoo
from videozoo.data import UCF101, Kinetics400, PairedTransform, UniformClipSampler, VideoEval, extract_flow_folder
from videozoo.data import preset as augmentation
from videozoo.data.synthetic import make_synthetic_dataset
from videozoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from videozoo.distributed import init_from_env, is_main_process
from videozoo.eval.retrieval import recall_at_k
from videozoo.methods import CoCLR, InfoNCE
from videozoo.registry import InputSpec
from videozoo.training import Trainer, parse_config, schedules, summary_line

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
    synthetic: bool = False  # write a synthetic motion dataset (and its flow) into run_dir instead of --data
    synthetic_videos_per_class: int = 12
    synthetic_clips_per_group: int = 2  # clips cut from one "source video" (same appearance); group 1 is the test set
    synthetic_frames: int = 16
    synthetic_size: int = 64  # rendered frame side, pixels
    synthetic_scenes: int | None = 2  # scenes shared by every class (None: one per group and class; see synthetic.py)
    synthetic_colour_cast: float = 0.0  # per-video colour grade: each channel x exp(U(-c, c)) (see synthetic.py)
    synthetic_object_size: tuple[float, float] = (0.14, 0.22)  # object radius range, fraction of the side
    synthetic_objects: tuple[int, int] = (1, 2)  # fewest and most moving objects per scene
    flow_size: int | None = None  # short side at which synthetic flow is extracted (None: stored resolution)
    backbone: str = "s3d"  # any registered backbone (videozoo.list_models(tiny=None))
    frames: int = 32  # clip length: 32 consecutive frames
    stride: int = 1
    crop_size: int = 128
    crop_scale: tuple[float, float] = (0.2, 1.0)  # random resized crop area
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # Gaussian blur sigma range, pixels (p 0.5)
    jitter_p: float = 0.8  # colour jitter (0.4, 0.4, 0.4, 0.1) with this probability
    grey_p: float = 0.2  # greyscale
    channel_gain: float = 0.0  # colour-cast augmentation: each channel x exp(U(-g, g)) per clip (0: off)
    flip_p: float = 0.5  # horizontal flip; 0 where direction is the label (the synthetic classes are mirror pairs)
    decode_size: int | None = None  # resize while decoding (short side)
    batch_size: int = 32  # per process; official: 32 per GPU on 2 GPUs (UCF101), 4 GPUs (K400 InfoNCE)
    lr: float = 1e-3  # Adam
    wd: float = 1e-5
    infonce_epochs: int = 300
    infonce_milestones: tuple[int, ...] = (250, 280)  # lr x0.1 at these epochs
    coclr_epochs: int = 100  # per half-cycle (RGB<-flow, then flow<-RGB)
    coclr_milestones: tuple[int, ...] = (80,)
    cycles: int = 2
    queue_size: int = 2048
    dim: int = 128
    temperature: float = 0.07
    momentum: float = 0.999  # key encoder EMA
    topk: int = 5  # positives mined per query
    drop_self_p: float = 0.9  # drop the self-positive with this probability (issue #43)
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


PRESETS = {
    "ucf101": dict(dataset="ucf101", queue_size=2048, infonce_epochs=300, infonce_milestones=(250, 280),
                   coclr_epochs=100, coclr_milestones=(80,), cycles=2, batch_size=32, run_dir="runs/coclr_ucf101"),
    "k400": dict(dataset="k400", data="data/kinetics400", flow="data/kinetics400_flow", decode_size=256,
                 queue_size=16384, infonce_epochs=300, infonce_milestones=(250, 280), coclr_epochs=50,
                 coclr_milestones=(40,), cycles=1, batch_size=32, run_dir="runs/coclr_k400"),
    # smoke (docs/benchmarks.md): the cast augmentation (channel_gain) does the colour invariance, and lighter jitter
    # and no grey let the tiny RGB network learn the motion within 300 co-training steps at every seed
    "smoke": dict(synthetic=True, backbone="r3d_tiny", synthetic_videos_per_class=16, synthetic_clips_per_group=4,
                  synthetic_frames=10, synthetic_size=64, flow_size=32, decode_size=32, frames=8, crop_size=32,
                  synthetic_colour_cast=0.6, synthetic_object_size=(0.22, 0.30), synthetic_objects=(2, 2),
                  channel_gain=0.6, jitter_p=0.4, grey_p=0.0, crop_scale=(0.5, 1.0), blur_sigma=(0.1, 0.5), flip_p=0.0,
                  batch_size=16, lr=1e-3, infonce_epochs=6, infonce_milestones=(), coclr_epochs=50, coclr_milestones=(),
                  cycles=1, queue_size=96, momentum=0.95, topk=5, workers=2, ckpt_every_minutes=1.0, log_every=3,
                  evaluate=True, run_dir="runs/coclr_smoke"),
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
    if config.synthetic:  # the smoke run: motion-only classes, flow extracted with TV-L1 like the real data
        data_root, annotations, flow_root = run_dir / "data", run_dir / "data", run_dir / "flow"
        if is_main_process():
            if not (data_root / "testlist01.txt").is_file():
                make_synthetic_dataset(data_root, videos_per_class=config.synthetic_videos_per_class,
                                       clips_per_group=config.synthetic_clips_per_group,
                                       scenes=config.synthetic_scenes, colour_cast=config.synthetic_colour_cast,
                                       object_size=config.synthetic_object_size, objects=config.synthetic_objects,
                                       frames=config.synthetic_frames, seed=config.seed,
                                       size=(config.synthetic_size, config.synthetic_size))
            print("flow:", extract_flow_folder(data_root, flow_root, size=config.flow_size, workers=config.workers,
                                               progress=config.progress))
        barrier()

    def dataset(*, train: bool, flow: bool = True, **kwargs):
        common = dict(num_frames=config.frames, stride=config.stride, decode_size=config.decode_size,
                      flow_root=flow_root if flow else None, **kwargs)
        if config.dataset == "k400":
            return Kinetics400(data_root, annotations or data_root.parent / "kinetics400_train.csv", **common)
        return UCF101(data_root, annotations, split=config.split, train=train, **common)

    train_aug = augmentation("coclr", crop_size=config.crop_size, scale=config.crop_scale, blur_sigma=config.blur_sigma,
                             jitter_p=config.jitter_p, grey_p=config.grey_p, flip_p=config.flip_p,
                             channel_gain=config.channel_gain)
    train_sets = {  # what each stage reads: InfoNCE needs one modality, CoCLR both
        "video": dataset(train=True, flow=False, num_views=2, transform=train_aug),
        "flow": dataset(train=True, num_views=2, transform=PairedTransform(train_aug.without_colour())),
        "both": dataset(train=True, num_views=2, transform=PairedTransform(train_aug)),
    }  # (the flow stage's RGB views are unused: cropped only, no colour work)

    # ==============================================================================================
    # 3. model: one backbone per modality (flow is a 3-channel image: x, y, 128), any registered architecture
    # ==============================================================================================
    def new_backbone(modality: str) -> torch.nn.Module:
        backbone = videozoo.create_model(config.backbone)
        # what the exported weights expect (save_pretrained writes it into config.json and the card)
        backbone.input_spec = InputSpec(channels=MODALITIES[modality], frames=config.frames, stride=config.stride,
                                        resize=config.crop_size, crop_size=config.crop_size, mean=IMAGENET_MEAN,
                                        std=IMAGENET_STD)
        return backbone

    backbones = {m: new_backbone(m) for m in MODALITIES}  # seeded above: a resumed run rebuilds the same init
    random_init = {m: copy.deepcopy(b) for m, b in backbones.items()}

    def train(method: torch.nn.Module, stage: str, data: str, epochs: int, milestones: tuple[int, ...]) -> Trainer:
        optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=config.lr,
                                     weight_decay=config.wd)
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
        method = InfoNCE(backbone=backbones[modality], dim=config.dim, queue_size=config.queue_size,
                         temperature=config.temperature, input_key=modality)
        trainers[modality] = train(method, f"1_infonce_{name}", modality, config.infonce_epochs,
                                   config.infonce_milestones)
        encoders[modality] = method.export_encoder()

    # ==============================================================================================
    # 5. stage 2: CoCLR cycles: train RGB with positives mined by the frozen flow network, then the reverse
    # ==============================================================================================
    for cycle in range(1, config.cycles + 1):
        for modality, other in (("video", "flow"), ("flow", "video")):
            method = CoCLR(backbone=encoders[modality].backbone, head=encoders[modality].head,
                           other_backbone=encoders[other].backbone, other_head=encoders[other].head,
                           dim=config.dim, queue_size=config.queue_size, temperature=config.temperature,
                           topk=config.topk, drop_self_p=config.drop_self_p, input_key=modality, other_key=other,
                           seed=config.seed)
            stage = f"2_cycle{cycle}_{MODALITIES[modality]}_from_{MODALITIES[other]}"
            trainers[modality] = train(method, stage, "both", config.coclr_epochs, config.coclr_milestones)
            encoders[modality] = method.export_encoder()

    # ==============================================================================================
    # 6. evaluation: nearest-neighbour retrieval, held-out (test split) videos query the training videos
    # ==============================================================================================
    results: dict = {"command": run_info["command"], "config": run_info.get("overrides"), "retrieval": {}}
    if config.evaluate and is_main_process():
        test_view = VideoEval(resize=config.crop_size, crop_size=config.crop_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
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
            print(f"retrieval {name}: R@1 pretrained {r['pretrained']['R@1']:.3f} vs random init "
                  f"{r['random_init']['R@1']:.3f} ({len(sets['test'])} queries, {len(sets['train'])} gallery)")

    # ==============================================================================================
    # 7. export: each trained backbone with save_pretrained + a model card; the results as JSON
    # ==============================================================================================
    data_name = "synthetic" if config.synthetic else config.dataset
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
                  "NeurIPS 2020", "data": data_name if config.synthetic else str(data_root), "epochs": epochs,
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
