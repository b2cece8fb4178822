"""Fine-tune a zoo model for action classification, with the papers' protocols as presets (docs/finetune.md).

    python recipes/finetune.py --preset smoke                # CPU minute: tiny random model, synthetic clips
    python recipes/finetune.py --preset stica --model stica_r2plus1d_k400 --weights runs/stica/export --root data/UCF101
    python recipes/finetune.py --preset coclr --model coclr_s3d_k400_rgb --dataset hmdb51 --root data/HMDB51 --split 2
    python recipes/finetune.py --preset cacl --model cacl_r3d_ucf101 --weights runs/cacl/export --root data/UCF101
    python recipes/finetune.py --dataset folder --root my_videos/train --val my_videos/val --model r2plus1d_18 \
        --weights org/my-pretrained-r2plus1d --epochs 20
    python recipes/finetune.py --dataset csv --root train.csv --val val.csv --model s3d --random-init
    python recipes/finetune.py --help                        # every key, its default, the presets

Presets (``videozoo.eval.finetune.FINETUNE_PROTOCOLS``, from the official code; REFERENCE.md):

* ``coclr``: Adam lr 1e-3, backbone 1e-4, wd 1e-3, dropout 0.9, batch 32, 500 epochs (×0.1 at 400, 450);
  test = 10 crops over every 32-frame window, probabilities averaged (TengdaHan/CoCLR eval/main_classifier.py).
* ``cacl``: SGD lr 0.1, batch 64, 150 epochs cosine; test = 10 linspace clips, centre crop, logits averaged.
* ``stica``: SGD head 0.0025 / backbone 0.00025, wd 0.005, batch 32, 12 epochs, warm-up 2, ×0.05 at epochs 6 and 10,
  10 training clips per video per epoch; test = 10 clips × 3 crops, logits averaged (facebookresearch/GDT).

Every value of a preset can be overridden (``--preset stica --epochs 20 --lr 0.005``). ``--dataset ucf101|hmdb51``
trains on ``--split``'s train list and validates / tests on its test list (as the papers report); ``folder`` and
``csv`` take ``--root`` (training) and ``--val``. Everything lands in ``--run-dir``: checkpoints (re-running the same
command resumes), TensorBoard, history.json, results.json / predictions.csv / confusion_matrix.png, and ``model/``
(safetensors + config.json with the class names + a model card with the measured numbers; push it with
``videozoo publish``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import videozoo
from videozoo.data import HMDB51, UCF101
from videozoo.eval import TEST_PROTOCOLS
from videozoo.eval.finetune import FINETUNE_PROTOCOLS
from videozoo.training import parse_config


# -- 1. configuration: defaults in one block, presets, command-line overrides ------------------------------------
@dataclass
class Config:
    model: str = "stica_r2plus1d_k400"  # registered name, or a directory written by save_pretrained / finetune
    weights: str | None = None  # weights dir / .safetensors / Hub id / official checkpoint; none: registered weights
    random_init: bool = False  # start from random weights (a baseline, or to try the pipeline)
    dataset: str = "ucf101"  # ucf101 | hmdb51 | folder | csv | synthetic (generated in run_dir)
    root: str = "data/UCF101"  # ucf101/hmdb51: video root; folder: <class>/<video> tree; csv: path,label list
    annotations: str | None = None  # ucfTrainTestlist / testTrainMulti_7030_splits folder; none: in or beside root
    split: int = 1  # official split (1, 2, 3): train on its train list, test on its test list
    val: str | None = None  # folder / csv: the validation videos (a folder or a list); none: no validation
    # optimisation (defaults: videozoo.finetune's; --preset coclr|cacl|stica sets a paper's)
    epochs: int = 10
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3  # the new head's learning rate
    backbone_lr: float | None = None  # the pretrained layers' learning rate; none: lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-3
    schedule: str = "cosine"  # cosine | multistep | constant
    milestones: tuple[float, ...] = ()  # multistep: epochs at which the lr is multiplied by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    batch_size: int = 8  # clips per step (per GPU)
    dropout: float = 0.5  # before the new head
    label_smoothing: float = 0.0
    clips_per_video: int = 1  # random training clips per video per epoch
    freeze: str | None = None  # backbone: train the head only (a linear probe; see recipes/linear_probe.py)
    select: str = "best"  # best: keep the epoch with the best validation accuracy | last: the final epoch
    frames: int | None = None  # override the model's clip length (none: its input spec) ...
    stride: int | None = None  # ... frame stride ...
    resize: int | None = None  # ... short side before cropping ...
    crop_size: int | None = None  # ... and crop; saved with the model
    # test: the final video-level evaluation
    test: str | None = None  # coclr | cacl | stica (TEST_PROTOCOLS); none: the model's own paper's protocol
    test_clips: int | None = None  # override the protocol's clips per video
    test_crops: int | None = None  # override the protocol's crops per clip (1, 3, 5, 10)
    # running
    amp: str | None = "auto"  # auto (bf16 on CUDA, float32 on the CPU) | bf16 | fp16 | none
    compile: bool | str = "auto"  # auto: torch.compile on CUDA; true | false
    workers: int = 8  # DataLoader workers per GPU
    seed: int = 0
    cpu_threads: int | None = None  # torch CPU threads (none: torch's default); 1: fastest for tiny models on busy CPUs
    max_steps: int | None = None  # stop early (smoke runs)
    run_dir: str = "runs/finetune"  # checkpoints, tb, history.json, results.json, model/


PRESETS = {
    **{name: dict(protocol) for name, protocol in FINETUNE_PROTOCOLS.items()},
    "smoke": {"dataset": "synthetic", "model": "r3d_18_tiny", "random_init": True, "frames": 8, "stride": 1,
              "resize": 36, "crop_size": 32, "epochs": 10, "lr": 3e-3, "backbone_lr_mult": 1.0, "weight_decay": 0.0,
              "dropout": 0.0, "batch_size": 8, "workers": 0, "cpu_threads": 1, "test_clips": 1, "test_crops": 3,
              "amp": None, "run_dir": "runs/finetune_smoke"},
}  # fmt: skip

config, run_info = parse_config(Config(), PRESETS)
run_dir = Path(config.run_dir)
if config.cpu_threads:
    torch.set_num_threads(config.cpu_threads)
where = "" if config.dataset == "synthetic" else f" ({config.root})"
print(f"finetune: {config.model} on {config.dataset}{where}; writing to {run_dir}")

# -- 2. data ------------------------------------------------------------------------------------------------------
if config.dataset == "synthetic":
    from einops import rearrange

    from videozoo.data.synthetic import render_clip, write_video

    def scenes(root: Path, *, per_class: int, seed: int) -> Path:
        """Motion kinds on one shared scene: appearance says nothing about the class, so a tiny model learns the
        motion in a few dozen steps (make_synthetic_dataset's per-video scenes need hundreds of videos)."""
        for ci, label in enumerate(("left", "up", "rotate_cw", "zoom_in")):  # a horizontal flip keeps each label
            for i in range(per_class):
                path = root / label / f"{i:03d}.mp4"
                if not path.is_file():  # a resumed run keeps its data
                    motion = (seed, ci, i)
                    video, _ = render_clip(label, frames=8, size=(48, 48), appearance_seed=(7,), motion_seed=motion)
                    write_video(path, rearrange(torch.from_numpy(video), "t h w c -> t c h w"), fps=8)
        return root

    train, val = scenes(run_dir / "data/train", per_class=16, seed=0), scenes(run_dir / "data/val", per_class=8, seed=1)
    task = "synthetic motion"
elif config.dataset in ("ucf101", "hmdb51"):
    Dataset = UCF101 if config.dataset == "ucf101" else HMDB51
    train, val = (Dataset(config.root, config.annotations, split=config.split, train=t) for t in (True, False))
    task = f"{Dataset.__name__} split-{config.split}"
elif config.dataset in ("folder", "csv"):
    train, val, task = config.root, config.val, None  # a folder or a list each; finetune tells them apart
else:
    raise SystemExit(f"--dataset must be ucf101, hmdb51, folder, csv or synthetic, got {config.dataset!r}")

# -- 3. fine-tune, test, save -------------------------------------------------------------------------------------
# a protocol name and / or single numbers changed; finetune fills the rest from the model's own paper's protocol
test = dict(TEST_PROTOCOLS[config.test]) if config.test else {}
test.update({k: v for k, v in (("clips", config.test_clips), ("crops", config.test_crops)) if v})
spec = {k: getattr(config, k) for k in ("frames", "stride", "resize", "crop_size") if getattr(config, k) is not None}
model, result = videozoo.finetune(
    config.model, train, val, weights=config.weights, pretrained=not config.random_init,
    epochs=config.epochs, optimizer=config.optimizer, lr=config.lr, backbone_lr=config.backbone_lr,
    backbone_lr_mult=config.backbone_lr_mult, momentum=config.momentum, weight_decay=config.weight_decay,
    schedule=config.schedule, milestones=config.milestones, gamma=config.gamma, warmup_epochs=config.warmup_epochs,
    batch_size=config.batch_size, dropout=config.dropout, label_smoothing=config.label_smoothing,
    clips_per_video=config.clips_per_video, freeze=config.freeze, select=config.select, input_spec=spec or None,
    test=test or None, amp=config.amp, compile=config.compile, num_workers=config.workers, seed=config.seed,
    max_steps=config.max_steps, out_dir=run_dir, task=task, card={"recipe_command": run_info["command"]},
)  # fmt: skip

# -- 4. report ------------------------------------------------------------------------------------------------------
metrics = result.metrics
if "top1" in metrics:
    print(f"video-level top-1 {100 * metrics['top1']:.2f}% (top-5 {100 * metrics.get('top5', 0):.2f}%, mean class "
          f"{100 * metrics['mean_class_accuracy']:.2f}%) over {metrics['num_videos']} videos; {metrics['description']}")
elif "val_acc" in metrics:
    print(f"clip-level validation accuracy {100 * metrics['val_acc']:.2f}%")
if result.bad_videos:
    print(f"{len(result.bad_videos)} videos could not be read and were replaced: {', '.join(result.bad_videos)}")
print(f"best epoch {result.best_epoch}; model: {result.model_dir}; results: {run_dir / 'results.json'}")
