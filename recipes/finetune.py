"""Fine-tune a zoo model for action classification, with the papers' protocols as presets (docs/finetune.md).

    python recipes/finetune.py --preset smoke                # CPU minute: tiny random model, synthetic clips
    python recipes/finetune.py --preset stica --model stica_r2plus1d_k400 --weights runs/stica/export --root data/UCF101
    python recipes/finetune.py --preset coclr --model coclr_s3d_k400_rgb --dataset hmdb51 --root data/HMDB51 --split 2
    python recipes/finetune.py --preset cacl --model cacl_r3d_ucf101 --weights runs/cacl/export --root data/UCF101
    python recipes/finetune.py --dataset folder --root my_videos/train --val my_videos/val --model r2plus1d_18 \
        --weights org/my-pretrained-r2plus1d --epochs 20
    python recipes/finetune.py --dataset csv --root train.csv --val val.csv --model s3d --pretrained false
    python recipes/finetune.py --help                        # every key, its default, the presets

Presets: the papers' protocols (``videozoo.eval.finetune_config.FINETUNE_PROTOCOLS``, each value with its source in
the official code; docs/methods/presets.md lists them), and ``smoke``:

* ``coclr``: Adam lr 1e-3, backbone 1e-4, wd 1e-3, dropout 0.9, batch 32, 500 epochs (×0.1 at 400, 450);
  test = 10 crops over every 32-frame window, probabilities averaged (TengdaHan/CoCLR eval/main_classifier.py).
* ``cacl``: SGD lr 0.1, batch 64, 150 epochs cosine (the README's command); test = 10 linspace clips, centre crop,
  logits averaged. ``cacl_released_defaults``: train_finetune.py's own defaults (lr 1e-3, wd 5e-4, x0.1 at epochs
  120 and 150, 180 epochs, batch 8); docs/methods/cacl.md says what neither reproduces.
* ``stica``: SGD head 0.0025 / backbone 0.00025, wd 0.005, batch 32, 12 epochs, warm-up 2, ×0.05 at epochs 6 and 10,
  10 training clips per video per epoch; test = 10 clips × 3 crops, logits averaged (facebookresearch/GDT).

The keys are those of ``videozoo.finetune`` (``FinetuneConfig``, by their flat names: ``--lr``, ``--batch-size``,
``--out-dir``; ``--help`` lists them with their defaults, ``--print-config`` prints the resolved config), plus this
script's data keys. Every value of a preset can be overridden (``--preset stica --epochs 20 --lr 0.005``).
``--dataset ucf101|hmdb51`` trains on ``--split``'s train list and validates / tests on its test list (as the papers
report); ``folder`` and ``csv`` take ``--root`` (training) and ``--val``. Everything lands in ``--out-dir``:
config.json, checkpoints (re-running the same command resumes), TensorBoard, history.json, results.json /
predictions.csv / confusion_matrix.png, and ``model/`` (safetensors + config.json with the class names + a model
card with the measured numbers; push it with ``videozoo publish``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import videozoo
from videozoo.data import HMDB51, UCF101
from videozoo.eval.finetune_config import FINETUNE_PROTOCOLS, FinetuneConfig
from videozoo.training import parse_config


# -- 1. configuration: videozoo.finetune's settings + this script's data, presets, command-line overrides ---------
@dataclass(kw_only=True)
class Config(FinetuneConfig):  # every fine-tuning key, with its default, comes from FinetuneConfig
    model: str = "stica_r2plus1d_k400"  # registered name, or a directory written by save_pretrained / finetune
    dataset: str = "ucf101"  # ucf101 | hmdb51 | folder | csv | synthetic (generated in out_dir)
    root: str = "data/UCF101"  # ucf101/hmdb51: video root; folder: <class>/<video> tree; csv: path,label list
    annotations: str | None = None  # ucfTrainTestlist / testTrainMulti_7030_splits folder; none: in or beside root
    split: int = 1  # official split (1, 2, 3): train on its train list, test on its test list
    val: str | None = None  # folder / csv: the validation videos (a folder or a list); none: no validation
    cpu_threads: int | None = None  # torch CPU threads (none: torch's default); 1: fastest for tiny models on busy CPUs


PRESETS = {
    **FINETUNE_PROTOCOLS,
    "smoke": {"dataset": "synthetic", "model": "r3d_18_tiny", "pretrained": False, "frames": 8, "stride": 1,
              "resize": 36, "crop_size": 32, "epochs": 10, "lr": 3e-3, "backbone_lr_mult": 1.0, "weight_decay": 0.0,
              "dropout": 0.0, "batch_size": 8, "num_workers": 0, "cpu_threads": 1, "test_clips": 1, "test_crops": 3,
              "amp": None, "out_dir": "runs/finetune_smoke"},
}  # fmt: skip

# --run-dir and --workers as in the other recipes
aliases = {"run_dir": "run.out_dir", "workers": "data.num_workers"}
config, run_info = parse_config(Config(), PRESETS, flat=True, aliases=aliases, run_dir_field="run.out_dir")
run_dir = Path(config.run.out_dir)
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

# -- 3. fine-tune, test, save: every setting is in config --------------------------------------------------------
card = {"recipe_command": run_info["command"], **(config.run.card or {})}
model, result = videozoo.finetune(config.model, train, val, config=config, task=config.run.task or task, card=card)

# -- 4. report ------------------------------------------------------------------------------------------------------
metrics = result.metrics
if "top1" in metrics:
    print(
        f"video-level top-1 {100 * metrics['top1']:.2f}% (top-5 {100 * metrics.get('top5', 0):.2f}%, mean class "
        f"{100 * metrics['mean_class_accuracy']:.2f}%) over {metrics['num_videos']} videos; {metrics['description']}"
    )
elif "val_acc" in metrics:
    print(f"clip-level validation accuracy {100 * metrics['val_acc']:.2f}%")
if result.bad_videos:
    print(f"{len(result.bad_videos)} videos could not be read and were replaced: {', '.join(result.bad_videos)}")
print(f"best epoch {result.best_epoch}; model: {result.model_dir}; results: {run_dir / 'results.json'}")
