"""CACL pretraining: a 3D CNN and a frame transformer contrast each other, plus shuffle-degree prediction.

Guo et al. Cross-Architecture Self-supervised Video Representation Learning. CVPR 2022 (docs/methods/cacl.md).

    python recipes/cacl.py --preset smoke                          # CPU, a few minutes, synthetic clips, no download
    python recipes/cacl.py --preset ucf101 --backbone c3d --data UCF101/ --annotations ucfTrainTestlist/
    python recipes/cacl.py --preset ucf101_released --backbone r21d --data ...   # the released code's choices
    python recipes/cacl.py --preset ucf101 --frame-model resnet50.a1_in1k --data ...   # skip the frame stage
    torchrun --nproc_per_node=8 recipes/cacl.py --preset ucf101 --batch-size 8 --data ... --amp bf16
    python recipes/cacl.py --help                                  # every key, its default, the presets
    python recipes/cacl.py --preset ucf101_released --print-config # the resolved configuration, as JSON

Presets: ``ucf101`` follows the paper, ``ucf101_released`` the official code as its README runs it,
``ucf101_released_defaults`` train_pretrain.py's own defaults; every value and its source: docs/methods/presets.md.

Stages, top to bottom: 1 config → 2 data → 3 frame network (MoCo on single frames, as the paper's never-released
frame ResNet-50; or a timm model named by ``--frame-model``) → 4 CACL → 5 shuffle-degree prediction on its own
(``--sdp_epochs``, the released second script) → 6 retrieval R@1 of the pretrained CNN against its random
initialisation (``--evaluate``) → 7 export of the CNN (and the transformer) with ``videozoo.save_pretrained``.
Every stage checkpoints into ``<run_dir>/checkpoints/<stage>/last.pt``; running the same command after a kill
resumes exactly (finished stages load their last checkpoint and return at once).
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

import videozoo
from videozoo.data import UCF101, VideoTrain
from videozoo.distributed import init_from_env, is_main_process
from videozoo.eval.retrieval import evaluate_retrieval, retrieval_sets
from videozoo.heads.projection import MLPHead
from videozoo.methods import InfoNCE
from videozoo.methods.cacl import CACL, FrameNetwork, ShuffleDegree
from videozoo.registry import InputSpec
from videozoo.training import Trainer, parse_config, schedules, summary_line
from videozoo.training.config import config_to_dict
from videozoo.training.presets import Augment, Synthetic, augment, sourced, src

PAPER = "Guo et al. Cross-Architecture Self-supervised Video Representation Learning. CVPR 2022"


# ==================================================================================================
# 1. config: defaults = the paper's UCF101 setting; presets; any key overridable from the command line
# ==================================================================================================
MOCO_V1 = "our choice: MoCo v1's recipe for the never-released frame network (CACL models/video_transformer.py:192 "
MOCO_V1 += "loads a private mocov1_ucf101_ep200.pth.tar)"


@dataclass
class Config:
    data: str = "data/UCF101"  # UCF101 video root
    annotations: str | None = None  # ucfTrainTestlist folder; default in or beside --data
    split: int = 1
    synthetic: Synthetic = field(default_factory=Synthetic)  # the smoke run's data
    backbone: str = "c3d"  # the 3D CNN: c3d, r3d, r21d or any registered video backbone
    transformer: str = "frame_transformer"  # registered frame transformer (6 blocks, 768-d)
    frame_model: str | None = None  # a timm model, used with its timm weights: skips the frame stage
    frame_arch: str = sourced("resnet50", "paper: a frozen 2D ResNet-50; CACL models/video_transformer.py:192")
    frame_epochs: int = sourced(200, MOCO_V1)  # frame stage: MoCo v1 on UCF101 frames
    frame_batch_size: int = sourced(256, MOCO_V1)
    frame_lr: float = sourced(0.03, MOCO_V1)  # SGD, MoCo v1
    frame_milestones: tuple[float, ...] = sourced((0.6, 0.8), MOCO_V1)  # lr x0.1 at these fractions (120, 160)
    frame_queue_size: int = sourced(16384, MOCO_V1)
    frame_crop_scale: tuple[float, float] = sourced((0.2, 1.0), MOCO_V1)
    frames: int = sourced(16, "paper: 16 frames; CACL README.md:30 --cl 16")  # clip length: 16 frames ...
    stride: int = sourced(2, "paper: stride 2; CACL README.md:30 --it 2 (train_pretrain.py:301 default 8)")  # ...
    aug: Augment = field(**augment("cacl"))  # the clip augmentation (videozoo.data.preset("cacl"))
    batch_size: int = sourced(
        64, "paper; CACL README.md:33 --bs 64, per process (train_pretrain.py:432-436 divides only the workers)"
    )  # per process
    epochs: int = sourced(300, "paper; CACL README.md:34 --epochs 300")
    lr: float = sourced(1e-2, "paper; CACL train_pretrain.py:304 --lr 1e-2")  # SGD
    lr_schedule: Literal["cosine", "step"] = sourced(
        "cosine",
        "paper: cosine; CACL README.md:34 --cos (train_pretrain.py:44-52: per epoch, from epoch 1; here per "
        "step, from 0)",
    )  # cosine to 0, or x0.1 at each of `milestones`
    milestones: tuple[int, ...] = sourced(
        (149, 249), "CACL train_pretrain.py:332 --schedule 150 250 (lr_schedule 'step'), epochs counted from 1"
    )  # epochs done when the lr drops x0.1
    sgd_momentum: float = sourced(0.9, "CACL train_pretrain.py:305 --momentum 0.9")
    wd: float = sourced(1e-4, "CACL train_pretrain.py:306 --wd 1e-4")
    queue_size: int = sourced(6400, "paper; CACL train_pretrain.py:342 --moco-k 6400")  # CNN + transformer keys
    dim: int = sourced(128, "paper; CACL train_pretrain.py:340 --moco-dim 128")
    temperature: float = sourced(0.07, "paper; CACL train_pretrain.py:346 --moco-t 0.07")
    momentum: float = sourced(0.999, "paper; CACL train_pretrain.py:344 --moco-m 0.999")  # key encoders' EMA
    sdp_weight: float = sourced(1.0, "paper: the two losses trained jointly")  # shuffle-degree loss weight
    order_mode: Literal["distance", "positions", "permutation"] = sourced(
        "distance", "paper: shuffle degrees drawn uniformly"
    )  # how shuffled orders are drawn
    tf_negatives: Literal["transformer", "cnn"] = sourced(
        "transformer", "our choice: each InfoNCE pair against its own anchor's negatives"
    )  # negatives of the (tf_q, tf_k) pair
    key_order: Literal["same", "swapped"] = sourced(
        "same", "our choice: the key pair in the query's order, (clip, shuffled)"
    )  # key pair (clip, shuffled) or the official (shuffled, clip)
    sdp_epochs: int = sourced(0, "paper: no separate shuffle-degree stage")  # >0: also train SDP alone
    amp: Literal["auto", "bf16", "fp16"] | None = "auto"  # autocast; auto: bf16 on CUDA, float32 on the CPU
    channels_last: bool | Literal["auto"] = "auto"  # channels-last-3d; auto: on CUDA only
    compile: bool | Literal["auto"] = "auto"  # torch.compile the method; auto: on CUDA (methods tested compiled)
    workers: int = 8  # DataLoader workers per process
    threads: int | None = None  # torch CPU threads (None: torch's default)
    max_steps: int | None = None  # per stage, for debugging
    ckpt_every_minutes: float = 30.0
    log_every: int = 10
    progress: bool = True
    evaluate: bool = False  # retrieval R@1 (test split queries train split), pretrained vs random init
    eval_protocol: Literal["cacl", "coclr"] = "cacl"  # conv5 features of 10 clips (CACL) or pooled windows
    seed: int = 0
    run_dir: str = "runs/cacl_ucf101"


RELEASED = {  # the released code as its README runs it (README.md:28-36; train_pretrain.py, datasets/ucf101.py)
    "sdp_weight": src(0.0, "CACL train_pretrain.py:173 total_loss = cls_loss * 0.0 + moco_loss"),
    "order_mode": src("positions", "CACL datasets/ucf101.py:282-296: n ~ U{1..16} positions shuffled"),
    "tf_negatives": src(
        "cnn", "CACL models/vmoco_with_transformer.py:168-173: l_pos_transformer_qk beside l_neg = q . queue"
    ),
    "key_order": src("swapped", "CACL datasets/ucf101.py:324-345: the key pair built as (shuffled, clip)"),
    "sdp_epochs": src(300, "CACL README.md:19-23: train_pretrain_sdp.py --epochs 300, a separate network"),
}
RELEASED_DEFAULTS = {  # train_pretrain.py run without the README's arguments (its argparse defaults)
    **RELEASED,
    "stride": src(8, "CACL train_pretrain.py:301 --it 8 (default; README.md:30 passes --it 2)"),
    "batch_size": src(8, "CACL train_pretrain.py:314 --bs 8 (default; README.md:33 passes --bs 64)"),
    "lr_schedule": src("step", "CACL train_pretrain.py:44-52: step decay unless --cos (README.md:34 passes it)"),
    "milestones": src(
        (149, 249),
        "CACL train_pretrain.py:332 --schedule 150 250, epochs counted from 1 "
        "(:511 range(args.start_epoch, ...), :313 --start-epoch 1): x0.1 from the 150th epoch on",
    ),
}
PRESETS = {
    "ucf101": dict(run_dir="runs/cacl_ucf101"),  # the paper: joint loss, corrected pairing, uniform degrees
    "ucf101_released": {**RELEASED, "run_dir": "runs/cacl_ucf101_released"},
    "ucf101_released_defaults": {**RELEASED_DEFAULTS, "run_dir": "runs/cacl_ucf101_released_defaults"},
    # smoke: 8-frame clips of 16-frame videos (fast motion), no flip (the synthetic classes come in mirror pairs),
    # a queue shorter than one epoch of keys (else it holds stale keys of the query's own video as negatives)
    "smoke": {"synthetic.enabled": True, "backbone": "c3d_tiny", "transformer": "frame_transformer_tiny",
              "frame_arch": "test_resnet", "synthetic.videos_per_class": 16, "synthetic.clips_per_group": 4,
              "synthetic.frames": 16, "synthetic.size": 64, "frame_epochs": 10, "frame_batch_size": 32,
              "frame_queue_size": 64, "frames": 8, "stride": 2, "aug.resize": (36, 36), "aug.crop_size": 32,
              "aug.flip_p": 0.0, "batch_size": 16, "epochs": 20, "lr": 0.01, "queue_size": 96, "temperature": 0.1,
              "momentum": 0.99, "workers": 2, "threads": 1, "ckpt_every_minutes": 1.0, "log_every": 5,
              "evaluate": True, "run_dir": "runs/cacl_smoke"},
}  # fmt: skip


def main() -> None:
    config, run_info = parse_config(Config(), PRESETS)
    env = init_from_env()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir, started = Path(config.run_dir), time.monotonic()
    torch.manual_seed(config.seed)

    # ==============================================================================================
    # 2. data: one clip per video, augmented twice (query and key see the same frames), no normalisation
    # ==============================================================================================
    data_root, annotations = Path(config.data), config.annotations
    if config.synthetic.enabled:  # the smoke run: motion-only classes, written once into the run directory
        data_root = annotations = run_dir / "data"
        if is_main_process():
            config.synthetic.make(data_root, seed=config.seed)
        if dist.is_initialized():
            dist.barrier()

    def dataset(*, train: bool = True, **kwargs) -> UCF101:
        return UCF101(data_root, annotations, split=config.split, train=train, **kwargs)

    aug = config.aug
    train_set = dataset(
        num_frames=config.frames, stride=config.stride, num_views=2, views_share_clip=True, transform=aug.build("cacl")
    )
    spec = InputSpec(
        channels="rgb",
        frames=config.frames,
        stride=config.stride,
        resize=aug.resize,
        crop_size=aug.crop_size,
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )  # what the exports expect
    milestones = [m / config.epochs for m in config.milestones]
    clip_schedule = schedules.cosine() if config.lr_schedule == "cosine" else schedules.multistep(milestones=milestones)

    def train(
        method: torch.nn.Module, stage: str, *, epochs: int, batch_size: int, lr: float, data, lr_schedule=None
    ) -> Trainer:
        optimizer = torch.optim.SGD(
            [p for p in method.parameters() if p.requires_grad],
            lr=lr,
            momentum=config.sgd_momentum,
            weight_decay=config.wd,
        )
        trainer = Trainer(
            method=method, optimizer=optimizer, dataset=data, batch_size=batch_size, epochs=epochs,
            num_workers=config.workers, lr_schedule=lr_schedule or clip_schedule,
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
    # 3. frame network: MoCo v1 on single frames (He et al. 2020), or a timm model as it comes
    # ==============================================================================================
    if config.frame_model is None:
        frame_aug = VideoTrain(
            crop_size=aug.crop_size,
            scale=config.frame_crop_scale,
            resize=aug.resize,
            jitter=(0.4, 0.4, 0.4, 0.4),
            jitter_p=1.0,
            grey_p=0.2,
            blur_p=0.0,
            mean=0.0,
            std=1.0,
            channel_gain=aug.channel_gain,
        )
        frame_set = dataset(num_frames=1, num_views=2, views_share_clip=True, transform=frame_aug)
        frame_net = FrameNetwork(model=config.frame_arch)
        frame_moco = InfoNCE(
            backbone=frame_net,
            head=MLPHead(in_dim=frame_net.num_features, out_dim=config.dim),
            dim=config.dim,
            queue_size=config.frame_queue_size,
            temperature=config.temperature,
        )
        frame_trainer = train(
            frame_moco,
            "1_frames",
            epochs=config.frame_epochs,
            batch_size=config.frame_batch_size,
            lr=config.frame_lr,
            data=frame_set,
            lr_schedule=schedules.multistep(milestones=config.frame_milestones),
        )
        transformer = videozoo.create_model(config.transformer, frame_model=config.frame_arch)
        transformer.frame_model.load_state_dict(frame_trainer.method.export_backbone().model.state_dict())
    else:
        transformer = videozoo.create_model(config.transformer, frame_model=config.frame_model, frame_pretrained=True)

    # ==============================================================================================
    # 4. CACL: cross-architecture MoCo + shuffle-degree prediction (SGD, cosine)
    # ==============================================================================================
    backbone = videozoo.create_model(config.backbone)
    backbone.input_spec = transformer.input_spec = spec
    random_init = copy.deepcopy(backbone)  # seeded above: a resumed run rebuilds the same initialisation
    method = CACL(
        backbone=backbone,
        transformer=transformer,
        dim=config.dim,
        queue_size=config.queue_size,
        temperature=config.temperature,
        num_frames=config.frames,
        sdp_weight=config.sdp_weight,
        order_mode=config.order_mode,
        tf_negatives=config.tf_negatives,
        key_order=config.key_order,
        seed=config.seed,
    )
    trainer = train(method, "2_cacl", epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, data=train_set)

    # ==============================================================================================
    # 5. released code: shuffle-degree prediction alone, a fresh CNN, uniformly random orders, no colour
    # ==============================================================================================
    sdp_trainer = None
    if config.sdp_epochs > 0:
        plain = VideoTrain(
            crop_size=aug.crop_size,
            scale=None,
            resize=aug.resize,
            jitter_p=0.0,
            grey_p=0.0,
            blur_p=0.0,
            flip_p=0.0,
            mean=0.0,
            std=1.0,
        )
        sdp_set = dataset(num_frames=config.frames, stride=config.stride, transform=plain)
        sdp_backbone = videozoo.create_model(config.backbone)
        sdp_backbone.input_spec = spec
        sdp = ShuffleDegree(backbone=sdp_backbone, num_frames=config.frames, order_mode="permutation", seed=config.seed)
        sdp_trainer = train(
            sdp, "3_sdp", epochs=config.sdp_epochs, batch_size=config.batch_size, lr=config.lr, data=sdp_set
        )

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
        split = retrieval_sets(dataset(train=False), dataset(train=True))  # test queries, train gallery
        for which, model in (("pretrained", trainer.method.export_backbone()), ("random_init", random_init)):
            r = evaluate_retrieval(
                model, **split, protocol=config.eval_protocol, ks=(1, 5), device=env.device, progress=False
            )
            results["retrieval"][which] = {k: r[k] for k in ("R@1", "R@5", "num_queries", "num_gallery")}
        r = results["retrieval"]
        print(
            f"retrieval R@1 ({config.eval_protocol} protocol): pretrained {r['pretrained']['R@1']:.3f} vs random "
            f"init {r['random_init']['R@1']:.3f} ({r['pretrained']['num_queries']} held-out queries, "
            f"{r['pretrained']['num_gallery']} gallery videos)"
        )

    # ==============================================================================================
    # 7. export: the CNN (and the transformer) with save_pretrained + a model card; the results as JSON
    # ==============================================================================================
    data_name = "synthetic" if config.synthetic.enabled else "ucf101"
    pretrained = results["retrieval"].get("pretrained", {})
    metrics = [dict(task=f"{data_name} split-{config.split} retrieval (test queries train)", metric=metric,
                    value=100 * value, protocol=f"{config.eval_protocol} retrieval protocol",
                    source=f"this run: {run_info['command']}")
               for metric, value in pretrained.items() if metric.startswith("R@")]  # fmt: skip
    card = {"paper": PAPER, "data": data_name if config.synthetic.enabled else str(data_root),
            "method": f"CACL (sdp_weight={config.sdp_weight}, order_mode={config.order_mode}, "
                      f"tf_negatives={config.tf_negatives}, key_order={config.key_order})"}  # fmt: skip
    name = f"cacl_{config.backbone}_{data_name}"
    description = f"CACL {config.backbone} 3D-CNN branch, pretrained on {data_name}"
    out = trainer.export(run_dir / "export" / name, metrics=metrics, card={**card, "description": description})
    if is_main_process():
        results["exported"] = {"cnn": str(out)}
        tf_dir = run_dir / "export" / f"cacl_{config.transformer}_{data_name}"
        videozoo.save_pretrained(trainer.method.export_transformer(), tf_dir,
                                 card={**card, "recipe_command": run_info["command"],
                                       "description": f"the video transformer trained beside {name}"})  # fmt: skip
        results["exported"]["transformer"] = str(tf_dir)
    if sdp_trainer is not None:
        sdp_out = sdp_trainer.export(
            run_dir / "export" / f"sdp_{config.backbone}_{data_name}",
            card={
                **card,
                "method": "shuffle-degree prediction alone (train_pretrain_sdp.py)",
                "description": f"{config.backbone} trained on shuffle degrees only",
            },
        )
        results["exported"] = {**results.get("exported", {}), "sdp": str(sdp_out)}
    if is_main_process():
        results["wall_time_s"] = time.monotonic() - started
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results: {run_dir / 'results.json'}; weights: {run_dir / 'export'} ({results['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
