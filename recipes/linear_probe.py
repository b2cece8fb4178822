"""Linear probe: how linearly separable a frozen backbone's features are (docs/finetune.md, docs/evaluation.md).

Two routes:

* ``--mode features`` (CoCLR's protocol, the default): one feature per video, CoCLR's retrieval features (pooled
  backbone output of every 32-frame window, L2-normalised, averaged; TengdaHan/CoCLR eval/main_classifier.py), cached
  in ``<run_dir>/features``; then BN → linear trained with SGD lr 1.0, momentum 0.9, wd 1e-3, batch 1024, 100 epochs,
  ×0.1 at 60 and 80 (eval/feature_linear_probe.py ``--final_bn --lr 1.0 --wd 1e-3``).
* ``--mode frozen``: ``videozoo.finetune(freeze="backbone")``: the head trained on clips through the frozen backbone
  (BatchNorm in eval mode), tested video-level and saved as a zoo model in ``<run_dir>/model``.

    python recipes/linear_probe.py --preset coclr --model coclr_s3d_ucf101_rgb --weights coclr_s3d_ucf101_rgb/
    python recipes/linear_probe.py --preset coclr --dataset hmdb51 --root data/HMDB51 --model coclr_s3d_k400_rgb
    python recipes/linear_probe.py --mode frozen --model stica_r2plus1d_k400 --weights runs/stica/export --epochs 10
    python recipes/linear_probe.py --dataset folder --root my/train --val my/test --model r2plus1d_18 --random-init
    python recipes/linear_probe.py --preset smoke               # synthetic videos, tiny random model: a CPU minute

``--weight-decay 1e-4,1e-3,1e-2,1e-1`` sweeps the decay on a random 20% of the training features (CoCLR's README:
tune lr and wd per dataset). Results go to ``<run_dir>/results.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import videozoo
from videozoo.data import HMDB51, UCF101, VideoFolder, VideoList
from videozoo.eval import extract_features, linear_probe, load_features, save_features, write_json
from videozoo.training import parse_config


# -- 1. configuration: defaults in one block, presets, command-line overrides ------------------------------------
@dataclass
class Config:
    mode: str = "features"  # features: cached features -> BN + linear (CoCLR) | frozen: finetune(freeze="backbone")
    model: str = "coclr_s3d_ucf101_rgb"  # registered name, or a directory written by save_pretrained
    weights: str | None = None  # weights dir / .safetensors / Hub id / official checkpoint; none: registered weights
    random_init: bool = False  # random weights (a baseline, or to try the pipeline)
    dataset: str = "ucf101"  # ucf101 | hmdb51 | folder | csv | synthetic (generated in run_dir)
    root: str = "data/UCF101"  # ucf101/hmdb51: video root; folder: <class>/<video> tree; csv: path,label list
    annotations: str | None = None  # ucfTrainTestlist / testTrainMulti_7030_splits folder; none: in or beside root
    split: int = 1  # official split: train on its train list, test on its test list
    val: str | None = None  # folder / csv: the test videos
    features: str = "coclr"  # features mode: retrieval protocol of the features (coclr | cacl)
    normalize: bool = False  # features mode: L2-normalise the video features before the probe
    bn: bool = True  # features mode: BatchNorm before the linear layer (CoCLR's --final_bn)
    epochs: int = 100
    lr: float = 1.0  # features: SGD; frozen: the head's Adam lr
    weight_decay: tuple[float, ...] = (1e-3,)  # several: swept on 20% of the training features (features mode)
    batch_size: int = 1024  # features: rows per step; frozen: clips per step
    limit: int = 0  # use only the first N videos of each set (smoke runs); 0: all
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    workers: int = 8  # frozen mode: DataLoader workers
    cpu_threads: int | None = None  # torch CPU threads (none: torch's default); 1: fastest for tiny models on busy CPUs
    frames: int | None = None  # override the model's clip length (none: its input spec) ...
    stride: int | None = None
    resize: int | None = None  # ... and its resolution
    crop_size: int | None = None
    run_dir: str = "runs/linear_probe"  # config.json, features/, results.json (frozen: checkpoints, model/)


PRESETS = {
    "coclr": {"mode": "features", "features": "coclr", "bn": True, "epochs": 100, "lr": 1.0, "weight_decay": (1e-3,),
              "batch_size": 1024},
    "frozen": {"mode": "frozen", "epochs": 10, "lr": 1e-3, "weight_decay": (0.0,), "batch_size": 32},
    "smoke": {"dataset": "synthetic", "model": "r3d_18_tiny", "random_init": True, "frames": 8, "stride": 2,
              "resize": 36, "crop_size": 32, "epochs": 30, "lr": 0.5, "batch_size": 64, "workers": 0, "cpu_threads": 1,
              "run_dir": "runs/linear_probe_smoke"},
}  # fmt: skip

config, run_info = parse_config(Config(), PRESETS)
run_dir = Path(config.run_dir)
if config.cpu_threads:
    torch.set_num_threads(config.cpu_threads)
print(f"linear probe ({config.mode}): {config.model} on {config.dataset}; writing to {run_dir}")

# -- 2. data: training and test videos with their labels ----------------------------------------------------------
if config.dataset == "synthetic":
    from videozoo.data.synthetic import make_synthetic_dataset

    classes = ("left", "up", "rotate_cw", "zoom_in")  # motion kinds: a horizontal flip keeps the label
    train_set, test_set = (VideoFolder(make_synthetic_dataset(run_dir / f"data/{part}", classes=classes, seed=seed,
                                                              videos_per_class=n, size=(48, 48)))
                           for part, seed, n in (("train", 0, 12), ("test", 1, 4)))  # fmt: skip
elif config.dataset in ("ucf101", "hmdb51"):
    Dataset = UCF101 if config.dataset == "ucf101" else HMDB51
    train_set, test_set = (Dataset(config.root, config.annotations, split=config.split, train=t) for t in (True, False))
elif config.dataset in ("folder", "csv"):
    if not config.val:
        raise SystemExit("--dataset folder|csv needs --val (the test videos)")
    train_set, test_set = (VideoList(p) if Path(p).is_file() else VideoFolder(p) for p in (config.root, config.val))
else:
    raise SystemExit(f"--dataset must be ucf101, hmdb51, folder, csv or synthetic, got {config.dataset!r}")
spec = {k: getattr(config, k) for k in ("frames", "stride", "resize", "crop_size") if getattr(config, k) is not None}

# -- 3a. frozen: the head trained through the frozen backbone, saved as a zoo model ---------------------------------
if config.mode == "frozen":
    model, result = videozoo.finetune(
        config.model, train_set, test_set, weights=config.weights, pretrained=not config.random_init,
        freeze="backbone", epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay[0], dropout=0.0,
        batch_size=config.batch_size, input_spec=spec or None, num_workers=config.workers, device=config.device,
        out_dir=run_dir, card={"recipe_command": run_info["command"]},
    )  # fmt: skip
    print(f"top-1 {100 * result.metrics.get('top1', result.metrics.get('val_acc', 0)):.2f}%; model: {result.model_dir}")
    raise SystemExit(0)
if config.mode != "features":
    raise SystemExit(f"--mode must be features or frozen, got {config.mode!r}")

# -- 3b. features: one per video, cached ----------------------------------------------------------------------------
model = videozoo.load(config.model, weights=config.weights, pretrained=not config.random_init, num_classes=0)
if spec:
    import dataclasses

    model.input_spec = dataclasses.replace(videozoo.api.input_spec_of(model), **spec)
classes = sorted(set(train_set.classes) | set(test_set.classes))  # labels matched by class name


def features_of(dataset, name: str):
    samples = dataset.samples[: config.limit or None]
    labels = torch.tensor([classes.index(dataset.classes[s.label]) for s in samples])
    cache = run_dir / "features" / f"{name}.safetensors"
    if cache.is_file():
        feats = load_features(cache)
    else:
        feats = extract_features(model, [s.path for s in samples], protocol=config.features, device=config.device)
        save_features(feats, cache, model_name=config.model)
    keep = [i for i, s in enumerate(samples) if s.path in set(feats.paths)]  # unreadable videos are left out
    return feats, labels[keep]


train_feats, train_labels = features_of(train_set, "train")
test_feats, test_labels = features_of(test_set, "test")
print(f"{len(train_labels)} training and {len(test_labels)} test videos, {train_feats.features.shape[1]}-d features")

# -- 4. the probe -----------------------------------------------------------------------------------------------------
decay = config.weight_decay[0] if len(config.weight_decay) == 1 else config.weight_decay
result = linear_probe(train_feats.features, train_labels, test_feats.features, test_labels, num_classes=len(classes),
                      epochs=config.epochs, lr=config.lr, weight_decay=decay, batch_size=config.batch_size,
                      normalize=config.normalize, bn=config.bn, device=config.device, eval_every=5)  # fmt: skip

# -- 5. report ------------------------------------------------------------------------------------------------------
out = write_json(run_dir / "results.json", {
    "top1": result.accuracy, "top5": result.top5, "weight_decay": result.weight_decay, "sweep": result.sweep,
    "history": result.history, "classes": classes, "failed": {**train_feats.failed, **test_feats.failed},
    "protocol": f"{config.features} video features, {'BN + ' if config.bn else ''}linear, SGD lr {config.lr}, "
                f"{config.epochs} epochs", "model": config.model, "run": run_info,
})  # fmt: skip
print(f"linear probe top-1 {100 * result.accuracy:.2f}% (top-5 {100 * result.top5:.2f}%), wd {result.weight_decay:g}")
print(f"results: {out}")
