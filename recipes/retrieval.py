"""Nearest-neighbour video retrieval: test videos query the training videos, R@1,5,10,20,50.

Protocols (docs/evaluation.md): ``coclr`` = pooled features of every 32-frame window (step 15), L2-normalised,
averaged, each set mean-centred, cosine (CoCLR's eval/main_classifier.py); ``cacl`` = conv5 map max-pooled
(1, 2, 2) and flattened, averaged over 10 clips, cosine (CACL's retrieve_videos.py).

    python recipes/retrieval.py --preset ucf101 --weights coclr_s3d_ucf101_rgb/ --root data/UCF101
    python recipes/retrieval.py --preset hmdb51 --model coclr_s3d_k400_rgb --root data/HMDB51
    python recipes/retrieval.py --preset cacl --model cacl_r3d_ucf101 --weights runs/cacl/export --root data/UCF101
    python recipes/retrieval.py --dataset lists --query my/test --gallery my/train --model r2plus1d_18 --random-init
    python recipes/retrieval.py --preset smoke        # synthetic videos, tiny random model: needs no download

``--dataset lists``: ``--query`` / ``--gallery`` are each a folder ``<class>/<video>`` or a CSV list
(``path,label``); classes are matched by name. Features are cached in ``<run_dir>/features`` (delete to recompute);
results go to ``<run_dir>/results.json``, the config to ``<run_dir>/config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import videozoo
from videozoo.data import HMDB51, UCF101, VideoFolder, VideoList
from videozoo.eval import evaluate_retrieval, retrieval_sets, write_json
from videozoo.training.config import parse_config


# -- 1. configuration: defaults in one block, presets, command-line overrides ------------------------------------
@dataclass
class Config:
    model: str = "coclr_s3d_ucf101_rgb"  # registered name, or a directory written by save_pretrained
    weights: str | None = None  # weights dir / .safetensors / Hub id / official checkpoint; none: registered weights
    random_init: bool = False  # random weights (to try the pipeline)
    dataset: str = "ucf101"  # ucf101 | hmdb51 | lists (--query / --gallery) | synthetic (generated in run_dir)
    root: str = "data/UCF101"  # dataset videos
    annotations: str | None = None  # ucfTrainTestlist / testTrainMulti_7030_splits folder; none: in or beside root
    split: int = 1  # official split: its test videos query its train videos
    query: str | None = None  # lists: folder <class>/<video> or CSV path,label of the query videos
    gallery: str | None = None  # lists: the same for the gallery videos
    protocol: str = "coclr"  # coclr | cacl
    ks: tuple[int, ...] = (1, 5, 10, 20, 50)  # R@k reported
    limit: int = 0  # use only the first N videos of each set (smoke runs); 0: all
    batch_size: int = 16  # clips per forward pass
    chunk_size: int = 1024  # queries per similarity block (memory: chunk_size x 32768 floats)
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    run_dir: str = "runs/retrieval"  # config.json, features/, results.json


PRESETS = {
    "ucf101": {"dataset": "ucf101", "root": "data/UCF101", "protocol": "coclr"},
    "hmdb51": {"dataset": "hmdb51", "root": "data/HMDB51", "protocol": "coclr", "run_dir": "runs/retrieval_hmdb51"},
    "cacl": {"dataset": "ucf101", "protocol": "cacl", "model": "cacl_c3d_ucf101", "run_dir": "runs/retrieval_cacl"},
    "smoke": {"dataset": "synthetic", "model": "r3d_18_tiny", "random_init": True, "limit": 8,
              "run_dir": "runs/retrieval_smoke"},
}  # fmt: skip

config, run_info = parse_config(Config(), PRESETS)
run_dir = Path(config.run_dir)
print(f"retrieval: {config.model} ({config.protocol} protocol) on {config.dataset}; writing to {run_dir}")

# -- 2. model ------------------------------------------------------------------------------------------------------
model = videozoo.load(config.model, weights=config.weights, pretrained=not config.random_init, num_classes=0)

# -- 3. data: query and gallery videos with their labels ----------------------------------------------------------
if config.dataset == "synthetic":
    from videozoo.data.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(run_dir / "data", classes=("left", "right", "up", "down"), videos_per_class=4)
    annotations = root if (root / "classInd.txt").is_file() else root / "ucfTrainTestlist"
    query_set, gallery_set = (UCF101(root, annotations, split=1, train=train) for train in (False, True))
elif config.dataset in ("ucf101", "hmdb51"):
    Dataset = UCF101 if config.dataset == "ucf101" else HMDB51
    query_set, gallery_set = (
        Dataset(config.root, config.annotations, split=config.split, train=train) for train in (False, True)
    )
elif config.dataset == "lists":
    if not (config.query and config.gallery):
        raise SystemExit("--dataset lists needs --query and --gallery (folders or CSV lists)")
    query_set, gallery_set = (
        VideoList(where) if Path(where).is_file() else VideoFolder(where) for where in (config.query, config.gallery)
    )
else:
    raise SystemExit(f"--dataset must be ucf101, hmdb51, lists or synthetic, got {config.dataset!r}")

split = retrieval_sets(query_set, gallery_set, limit=config.limit)  # labels matched by class name
classes = sorted(set(query_set.classes) | set(gallery_set.classes))
print(
    f"{len(split['query_videos'])} query videos, {len(split['gallery_videos'])} gallery videos, {len(classes)} classes"
)

# -- 4. features and retrieval ------------------------------------------------------------------------------------
results = evaluate_retrieval(
    model,
    **split,
    protocol=config.protocol,
    ks=config.ks,
    batch_size=config.batch_size,
    chunk_size=config.chunk_size,
    device=config.device,
    features_dir=run_dir / "features",
)

# -- 5. report ------------------------------------------------------------------------------------------------------
results["dataset"] = {"name": config.dataset, "split": config.split, "classes": len(classes)}
results["run"] = run_info
out = write_json(run_dir / "results.json", results)
print("  ".join(f"R@{k} {100 * results[f'R@{k}']:.1f}" for k in config.ks))
if results["failed"]:
    print(f"{len(results['failed'])} videos could not be read (listed in {out})")
print(f"results: {out}")
