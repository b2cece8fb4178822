"""Fine-tuning: a zoo model with a new linear head, trained end to end (or as a linear probe), judged video-level.

    model, result = videozoo.finetune("coclr_s3d_k400_rgb", "my_videos/train", "my_videos/val", epochs=10, lr=1e-3)

The papers' protocols, as their official code runs them (:data:`FINETUNE_PROTOCOLS`, docs/finetune.md):

* CoCLR (``TengdaHan/CoCLR`` ``eval/main_classifier.py --train_what ft``, README command): Adam lr 1e-3, backbone
  lr / 10, weight decay 1e-3, dropout 0.9 before the linear head, batch 32, 500 epochs with lr × 0.1 at 400 and
  450; test = 10 crops over every 32-frame window (step 15), softmax probabilities averaged.
* CACL (``guoshengcv/CACL`` ``train_finetune.py``; REFERENCE.md): SGD momentum 0.9, lr 0.1, batch 64, 150 epochs,
  cosine; test = 10 clips at ``linspace`` starts, centre crop, logits averaged.
* STiCA (``facebookresearch/GDT`` ``eval_video.py`` + ``scripts/run_finetune.sh``): SGD momentum 0.9, head lr
  0.0025, backbone 0.00025, weight decay 0.005 on both, batch 32, 12 epochs, 2 warm-up epochs, then × 0.05 at
  epochs 6 and 10 (``--lr-milestones 6,10``; the MultiStepLR milestones 4 and 8 count from the end of the
  warm-up), 10 random training clips per video per epoch, no dropout; test = 10 clips × 3 crops, logits averaged.

The run goes through :class:`videozoo.training.Trainer` (bf16/fp16, DDP, tqdm, TensorBoard, atomic checkpoints,
exact resume); :class:`Classifier` is the "method" it trains. Layout of ``out_dir``::

    checkpoints/last.pt  checkpoints/best.pt   resume point; the weights with the best validation accuracy
    tb/                                        TensorBoard: train/loss, train/acc, epoch/val_acc, ...
    history.json                               per-epoch train loss / accuracy and validation accuracy
    results.json  predictions.csv  confusion_matrix.png     the final video-level evaluation
    model/                                     the fine-tuned model: safetensors, config.json, README card
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from videozoo.methods.base import Method

__all__ = ["FINETUNE_PROTOCOLS", "Classifier", "FinetuneResult", "finetune", "param_groups"]

log = logging.getLogger("videozoo.finetune")

# Keyword sets of finetune(); the recipe's presets are these (recipes/finetune.py).
FINETUNE_PROTOCOLS: dict[str, dict[str, Any]] = {
    "coclr": {"optimizer": "adam", "lr": 1e-3, "backbone_lr": 1e-4, "weight_decay": 1e-3, "dropout": 0.9,
              "batch_size": 32, "epochs": 500, "schedule": "multistep", "milestones": (400, 450), "gamma": 0.1,
              "test": "coclr"},
    "cacl": {"optimizer": "sgd", "lr": 0.1, "backbone_lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
             "dropout": 0.0, "batch_size": 64, "epochs": 150, "schedule": "cosine", "test": "cacl"},
    "stica": {"optimizer": "sgd", "lr": 0.0025, "backbone_lr": 0.00025, "momentum": 0.9, "weight_decay": 0.005,
              "dropout": 0.0, "batch_size": 32, "epochs": 12, "schedule": "multistep", "milestones": (6, 10),
              "gamma": 0.05, "warmup_epochs": 2, "clips_per_video": 10, "test": "stica"},
}  # fmt: skip
DEFAULT_TEST = {"sampling": "uniform", "clips": 10, "crops": 3}  # mmaction2 / SlowFast's 10 × 3 test
HEAD_PREFIX = "fc."  # the classifier of every zoo backbone (backbones/base.py)


# -- the method --------------------------------------------------------------------------------------------------
class Classifier(Method):
    """Fine-tuning as a method: ``backbone`` (any zoo model, its ``fc`` reset to ``num_classes``) + cross-entropy.

    ``forward(batch)`` takes ``video`` ``(B, C, T, H, W)`` (or ``(B, V, ...)`` views, each labelled) and ``label``,
    returns ``{"loss", "logs": {"acc"}}`` and adds to per-epoch sums kept in a buffer (so a resumed epoch's
    mean is exact). ``freeze="backbone"`` trains only ``fc``: everything else gets no gradient and stays in eval
    mode, BatchNorm statistics included (CoCLR's linear probe: "totally freeze BN in backbone").
    """

    compile_verified = True  # tests/test_compile.py: Trainer(compile="auto") compiles it on CUDA

    def __init__(self, *, backbone: nn.Module, num_classes: int, dropout: float = 0.0,
                 label_smoothing: float = 0.0, freeze: Literal["backbone"] | None = None) -> None:
        super().__init__()
        if freeze not in (None, "backbone"):
            raise ValueError(f"freeze must be None or 'backbone', got {freeze!r}")
        backbone.reset_head(num_classes, dropout=dropout)
        self.backbone, self.freeze, self.label_smoothing = backbone, freeze, label_smoothing
        if freeze == "backbone":
            for name, p in backbone.named_parameters():
                p.requires_grad_(name.startswith(HEAD_PREFIX))
        self.register_buffer("epoch_sums", torch.zeros(3))  # loss sum, correct, clips
        self.bad_videos: dict[str, str] = {}  # reported by the training data (see _TrainData)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.freeze == "backbone" and mode:
            self.backbone.eval()  # BN statistics and any dropout inside the frozen part stay fixed ...
            for name, module in self.backbone.named_children():
                if name in ("fc", "dropout"):  # ... the head (and the dropout before it) trains
                    module.train()
        return self

    def forward(self, batch: dict[str, Any], **_: Any) -> dict[str, Any]:
        for entry in batch.get("bad_videos") or ():  # "path\tcause" lines, one string per sample
            for line in filter(None, entry.split("\n")):
                path, _, cause = line.partition("\t")
                self.bad_videos.setdefault(path, cause)
        video, label = batch["video"], batch["label"]
        if video.ndim == 6:  # (B, V, C, T, H, W): several clips of each video, each with the video's label
            label = label.repeat_interleave(video.shape[1])
            video = video.flatten(0, 1)
        logits = self.backbone(video).float()  # the loss in float32 under autocast
        loss = F.cross_entropy(logits, label, label_smoothing=self.label_smoothing)
        correct = (logits.argmax(dim=1) == label).sum()
        with torch.no_grad():
            self.epoch_sums[0] += loss.detach() * len(label)
            self.epoch_sums[1] += correct
            self.epoch_sums[2] += len(label)
        return {"loss": loss, "logs": {"acc": correct.detach().float() / len(label)}}

    def export_model(self) -> nn.Module:
        """A copy of the fine-tuned model, head included, in eval mode (``export_backbone`` drops the head)."""
        model = copy.deepcopy(self.backbone)
        model.requires_grad_(True)
        return model.eval()


def param_groups(model: nn.Module, *, lr: float, backbone_lr: float, weight_decay: float = 0.0,
                 freeze: Literal["backbone"] | None = None) -> list[dict[str, Any]]:
    """Optimizer groups: ``head`` (``fc``) at ``lr``, ``backbone`` (the rest) at ``backbone_lr``.

    The papers fine-tune the pretrained layers ten times more gently than the new head (CoCLR: 1e-3 / 1e-4,
    STiCA: 0.0025 / 0.00025). With ``freeze="backbone"`` only the head group exists.
    """
    head = [p for n, p in model.named_parameters() if n.startswith(HEAD_PREFIX)]
    body = [p for n, p in model.named_parameters() if not n.startswith(HEAD_PREFIX)]
    groups = [{"name": "head", "params": head, "lr": lr, "weight_decay": weight_decay}]
    if freeze != "backbone":
        groups.append({"name": "backbone", "params": body, "lr": backbone_lr, "weight_decay": weight_decay})
    return groups


# -- data ----------------------------------------------------------------------------------------------------------
class _TrainData(torch.utils.data.Dataset):
    """The training set seen ``repeat`` times per epoch (STiCA: 10 random clips per video), reporting bad videos.

    videozoo datasets replace an unreadable video and note it in ``failed_paths`` of the process that read it
    (a DataLoader worker); each sample carries the paths newly noted while drawing it, as one string, so the
    main process learns them whatever the number of workers.
    """

    def __init__(self, dataset: Any, repeat: int = 1) -> None:
        self.dataset, self.repeat = dataset, max(1, int(repeat))

    def __len__(self) -> int:
        return self.repeat * len(self.dataset)

    @property
    def num_failures(self) -> int | None:  # the trainer logs it as train/bad_videos
        return getattr(self.dataset, "num_failures", None)

    def __getitem__(self, index: int) -> Any:
        failed = getattr(self.dataset, "failed_paths", None)
        before = len(failed) if isinstance(failed, dict) else 0
        sample = self.dataset[index % len(self.dataset)]
        if isinstance(sample, dict) and isinstance(failed, dict):
            new = list(failed.items())[before:]
            sample = {**sample, "bad_videos": "\n".join(f"{p}\t{c}" for p, c in new)}
        return sample


def _dataset(source: Any, *, model: nn.Module, train: bool, classes: Sequence[str] | None,
             transform: Callable | None) -> Any:
    """A folder (``<class>/<video>``), a ``.csv``/``.txt`` list, or a dataset; clips sampled as the model expects."""
    from videozoo.api import input_spec_of, transforms_for
    from videozoo.data import RandomClipSampler, UniformClipSampler, VideoFolder, VideoList

    spec = input_spec_of(model)
    clip = {"num_frames": spec.frames, "stride": spec.stride, "fps": spec.fps}
    # training: a random clip, the model's augmentation; validation: the centre clip, centre crop
    sampler = RandomClipSampler(**clip) if train else UniformClipSampler(num_clips=1, **clip)
    transform = transform or transforms_for(model, train=train)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            dataset = VideoFolder(path, transform=transform, sampler=sampler)
        elif path.suffix.lower() in (".csv", ".txt") and path.is_file():
            dataset = VideoList(path, transform=transform, sampler=sampler,
                                classes=list(classes) if classes is not None else None)
        else:
            raise FileNotFoundError(f"{path}: expected a folder of <class>/<video> files or a .csv/.txt list")
    else:
        dataset = source
        if getattr(dataset, "transform", True) is None:  # a raw videozoo dataset: give it the model's clips
            dataset = copy.copy(dataset)
            dataset.transform, dataset.sampler = transform, sampler
    return _align_classes(dataset, classes) if classes is not None else dataset


def _align_classes(dataset: Any, classes: Sequence[str]) -> Any:
    """Relabel ``dataset`` to the training classes by name (a validation folder may lack a class)."""
    own = list(getattr(dataset, "classes", None) or [])
    if not own or own == list(classes):
        return dataset
    unknown = sorted(set(own) - set(classes))
    if unknown:
        raise ValueError(f"validation classes {unknown} are not among the training classes {list(classes)}")
    if not hasattr(dataset, "samples"):
        raise ValueError(f"validation classes {own} differ from the training classes {list(classes)}")
    index = {name: i for i, name in enumerate(classes)}
    aligned = copy.copy(dataset)
    aligned.samples = [dataclasses.replace(s, label=index[own[s.label]]) for s in dataset.samples]
    aligned.classes = list(classes)
    return aligned


def _class_names(dataset: Any, given: Sequence[str] | None) -> list[str]:
    if given is not None:
        return list(given)
    names = list(getattr(dataset, "classes", None) or [])
    if not names:
        raise ValueError("the training data names no classes; pass class_names=[...]")
    return names


# -- results -------------------------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    """What a fine-tuning run produced. Accuracies are fractions in [0, 1].

    ``history``: one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_acc`` (clip-level, augmented
    training clips), ``val_acc`` (clip-level, centre clip and crop; absent without ``val``), ``lr``.
    ``best_epoch`` / ``best_checkpoint``: the epoch with the best ``val_acc`` (ties: the later one) and the file
    of its weights (``checkpoints/best.pt``; without ``val``, the last epoch and ``last.pt``).
    ``metrics``: the final video-level evaluation (:func:`videozoo.eval.evaluate_videos`: ``top1``, ``top5``,
    ``mean_class_accuracy``, ``protocol``, ...) of the returned model, or the clip-level ``val_acc`` when the
    validation data has no video files. ``model_dir``: the saved model (``videozoo.load(model_dir)``).
    ``bad_videos``: path → cause of every video that could not be read (and was replaced) during the run.
    """

    history: list[dict[str, float]]
    best_epoch: int | None
    best_checkpoint: Path | None
    model_dir: Path | None
    metrics: dict[str, Any]
    bad_videos: dict[str, str] = field(default_factory=dict)
    out_dir: Path | None = None
    steps: int = 0
    epochs_done: int = 0
    resumed_from: str | None = None


class _Progress:
    """history.json: per-epoch numbers, the best epoch and bad videos, rewritten after every epoch (rank 0)."""

    def __init__(self, path: Path, *, resuming: bool) -> None:
        self.path, self.first_call = path, True
        state = json.loads(path.read_text()) if resuming and path.is_file() else {}
        self.history: list[dict[str, float]] = state.get("history", [])
        self.best: dict[str, float] | None = state.get("best")  # {"epoch", "val_acc"}: matches best.pt
        self.bad_videos: dict[str, str] = state.get("bad_videos", {})

    def add(self, entry: dict[str, float]) -> None:
        if self.first_call:  # epochs after the checkpoint we resumed from are being run again
            self.history = [h for h in self.history if h["epoch"] < entry["epoch"]]
            self.first_call = False
        self.history.append(entry)

    def save(self) -> None:
        from videozoo.training.checkpoint import atomic_write_bytes

        state = {"history": self.history, "best": self.best, "bad_videos": self.bad_videos}
        atomic_write_bytes(self.path, (json.dumps(state, indent=2) + "\n").encode())


@torch.no_grad()
def _clip_accuracy(model: nn.Module, dataset: Any, *, batch_size: int, num_workers: int, device: torch.device,
                   amp: str | None, seed: int) -> tuple[float, float]:
    """(correct, clips) on this rank's share of ``dataset``: one centre clip per video, a quick per-epoch check."""
    import torch.distributed as dist

    from videozoo.training import SeededDataset

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    share = torch.utils.data.Subset(SeededDataset(dataset, seed), range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(share, batch_size=batch_size, num_workers=num_workers,
                                         generator=torch.Generator().manual_seed(seed))
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)
    for batch in loader:
        video, label = batch["video"].to(device), batch["label"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16,
                            enabled=amp is not None):
            if video.ndim == 6:  # several views per video: their logits averaged
                logits = model(video.flatten(0, 1)).float().unflatten(0, video.shape[:2]).mean(dim=1)
            else:
                logits = model(video).float()
        counts[0] += (logits.argmax(dim=1) == label).sum()
        counts[1] += len(label)
    model.train(was_training)
    if world > 1:
        dist.all_reduce(counts)
    return counts[0].item(), counts[1].item()


def _test_protocol(test: str | Mapping[str, Any] | None, model: nn.Module) -> dict[str, Any]:
    """evaluate_videos keywords: a paper's protocol by name, or the model's own paper's with ``test``'s changes."""
    from videozoo.eval.video_predict import TEST_PROTOCOLS

    if isinstance(test, str):
        if test not in TEST_PROTOCOLS:
            raise ValueError(f"test must be one of {sorted(TEST_PROTOCOLS)} or a dict of evaluate_videos keywords")
        return dict(TEST_PROTOCOLS[test])
    method = str(getattr(model, "zoo_name", "")).split("_", 1)[0]
    return {**TEST_PROTOCOLS.get(method, DEFAULT_TEST), **dict(test or {})}


def _describe_protocol(protocol: Mapping[str, Any], average: str) -> str:
    n = protocol.get("clips", 10)
    clips = "every window" if protocol.get("sampling") == "sliding" else f"{n} clip{'s' if n != 1 else ''}"
    return (f"video-level: {clips} ({protocol.get('sampling', 'uniform')}) x {protocol.get('crops', 3)} crops, "
            f"{'softmax probabilities' if average == 'prob' else 'logits'} averaged")


def _task_name(source: Any, dataset: Any) -> str:
    """``UCF101 split-1`` for the official sets, else the folder or list the data came from."""
    kind = type(dataset).__name__
    if kind in ("UCF101", "HMDB51"):
        return f"{kind} split-{getattr(dataset, 'split', 1)}"
    where = source if isinstance(source, (str, os.PathLike)) else getattr(dataset, "root", None)
    return "/".join(Path(where).parts[-2:]) if where is not None else kind


def _start(model: nn.Module, given: Any, weights: Any, pretrained: bool) -> str:
    """Where the fine-tuning started from, in words (for the model card)."""
    if isinstance(given, nn.Module):
        source = getattr(model, "zoo_weights", None)
        return f"the weights in `{source}`" if source else "a model given in memory"
    if weights is not None:
        return f"the weights `{weights}`"
    return "its registered weights" if pretrained else "a random initialisation"


# -- the entry point -----------------------------------------------------------------------------------------------
def finetune(
    model: str | nn.Module,
    train: str | os.PathLike | torch.utils.data.Dataset,
    val: str | os.PathLike | torch.utils.data.Dataset | None = None,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    backbone_lr: float | None = None,
    backbone_lr_mult: float = 0.1,
    optimizer: Literal["adam", "adamw", "sgd"] = "adam",
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    schedule: Literal["cosine", "multistep", "constant"] = "cosine",
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
    batch_size: int = 8,
    freeze: Literal["backbone"] | None = None,
    dropout: float = 0.5,
    label_smoothing: float = 0.0,
    clips_per_video: int = 1,
    select: Literal["best", "last"] = "best",
    input_spec: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    class_names: Sequence[str] | None = None,
    train_transform: Callable | None = None,
    test: str | Mapping[str, Any] | None = None,
    video_eval: bool = True,
    eval_every: int = 1,
    out_dir: str | os.PathLike = "runs/finetune",
    save: bool = True,
    task: str | None = None,
    card: Mapping[str, Any] | None = None,
    amp: Literal["auto", "bf16", "fp16"] | None = "auto",
    channels_last: bool | Literal["auto"] = "auto",
    compile: bool | Literal["auto"] = "auto",
    grad_clip: float | None = None,
    num_workers: int = 4,
    device: str | torch.device | None = None,
    seed: int = 0,
    resume: bool | str | os.PathLike = True,
    max_steps: int | None = None,
    progress: bool = True,
    tensorboard: bool = True,
) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune ``model`` on ``train``; return the model (best on ``val``, head named by ``class_names``) and a
    :class:`FinetuneResult`.

    Args:
        model: a zoo name or a directory written by ``save_pretrained`` (loaded with ``weights`` / ``pretrained``
            as :func:`videozoo.load` does), or a zoo model. Its ``fc`` is replaced by a ``num_classes`` head.
        train, val: a folder with one sub-folder per class, a ``.csv``/``.txt`` list (``path,label``), or a
            videozoo dataset (used as it is; one without ``transform`` gets the model's). Clip length, stride /
            fps and preprocessing come from the model's input spec; ``train_transform`` replaces the
            augmentation (default: :func:`videozoo.transforms_for` ``(model, train=True)``). Validation
            classes are matched to the training classes by name.
        lr, backbone_lr, backbone_lr_mult: the head's learning rate, and the backbone's (``backbone_lr``, else
            ``lr * backbone_lr_mult``; the papers use a tenth). ``optimizer``: ``adam`` / ``adamw`` / ``sgd``
            (with ``momentum``); ``weight_decay`` on every parameter, as the papers do.
        schedule: ``cosine`` to 0, ``multistep`` (× ``gamma`` at each of ``milestones``, in epochs) or
            ``constant``; after ``warmup_epochs`` of linear warm-up. Evaluated every step.
        freeze: ``"backbone"`` trains only the head on frozen features (BatchNorm in eval mode): a linear probe.
        dropout: before the head (CoCLR: 0.9). ``label_smoothing``: of the cross-entropy.
        clips_per_video: random training clips per video per epoch (STiCA: 10).
        select: return and save the epoch with the best clip-level ``val`` accuracy (``"best"``, what the papers'
            code does, on their test split) or the last epoch (``"last"``: no model selection on ``val``).
        input_spec: fields of the model's :class:`~videozoo.registry.InputSpec` to change (``{"frames": 32}``,
            ``{"crop_size": 160, "resize": 182}``); saved with the model.
        test, video_eval: the final video-level test of the best model on ``val``: a key of
            :data:`videozoo.eval.TEST_PROTOCOLS` (``coclr``, ``cacl``, ``stica``), a dict of
            :func:`videozoo.eval.evaluate_videos` keywords, or ``None`` for the model's own paper's protocol
            (10 uniform clips × 3 crops for others). Every ``eval_every`` epochs (and at the end) a quick
            clip-level accuracy on ``val`` picks the best epoch.
        out_dir: checkpoints, TensorBoard, history, evaluation files and the saved ``model/`` (module docstring).
        save, task, card: save the model with ``videozoo.save_pretrained`` (class names, metrics named after
            ``task``, default e.g. ``"UCF101 split-1"``; ``card`` adds model-card fields such as
            ``recipe_command``).
        amp, channels_last, compile, grad_clip, num_workers, device, seed, max_steps, progress: those of
            :class:`videozoo.training.Trainer`; ``tensorboard`` writes ``out_dir/tb``.
        resume: continue from ``out_dir/checkpoints/last.pt`` if present (``True``), start over (``False``), or
            from a given checkpoint. A finished run resumes to its end and is evaluated and saved again.

    Under ``torchrun`` every process calls this; ``batch_size`` is per process.
    """
    import videozoo
    from videozoo.training import Trainer, schedules
    from videozoo.training.checkpoint import LAST, load_checkpoint, save_checkpoint

    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    given = model
    # -- 1. model and data ---------------------------------------------------------------------------------------
    if isinstance(model, nn.Module):
        if weights is not None:
            raise TypeError("weights= is for a model given by name; load the weights into the module yourself")
    else:
        model = videozoo.load(str(model), weights=weights, pretrained=pretrained)
    start = _start(model, given, weights, pretrained)
    if select not in ("best", "last"):
        raise ValueError(f"select must be 'best' or 'last', got {select!r}")
    if input_spec:  # a model may carry its own spec (videozoo.api.input_spec_of); transforms and sampling follow it
        from videozoo.api import input_spec_of

        model.input_spec = dataclasses.replace(input_spec_of(model), **dict(input_spec))
    train_set = _dataset(train, model=model, train=True, classes=None, transform=train_transform)
    classes = _class_names(train_set, class_names)
    val_set = _dataset(val, model=model, train=False, classes=classes, transform=None) if val is not None else None
    method = Classifier(backbone=model, num_classes=len(classes), dropout=dropout,
                        label_smoothing=label_smoothing, freeze=freeze)

    # -- 2. optimizer and schedule -------------------------------------------------------------------------------
    groups = param_groups(model, lr=lr, backbone_lr=backbone_lr if backbone_lr is not None else lr * backbone_lr_mult,
                          weight_decay=weight_decay, freeze=freeze)
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    elif optimizer in ("adam", "adamw"):
        opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW)(groups, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")
    warmup = warmup_epochs / epochs
    if schedule == "cosine":
        lr_schedule = schedules.cosine(warmup=warmup)
    elif schedule == "multistep":
        lr_schedule = schedules.multistep(milestones=[m / epochs for m in milestones], gamma=gamma, warmup=warmup)
    elif schedule == "constant":
        lr_schedule = schedules.constant(warmup=warmup)
    else:
        raise ValueError(f"schedule must be 'cosine', 'multistep' or 'constant', got {schedule!r}")

    # -- 3. train, with a validation pass at every epoch end -----------------------------------------------------
    settings = {"model": getattr(model, "zoo_name", type(model).__name__), "classes": classes, "epochs": epochs,
                "lr": lr, "backbone_lr": groups[-1]["lr"], "optimizer": optimizer, "weight_decay": weight_decay,
                "schedule": schedule, "milestones": list(milestones), "gamma": gamma, "warmup_epochs": warmup_epochs,
                "batch_size": batch_size, "freeze": freeze, "dropout": dropout, "label_smoothing": label_smoothing,
                "clips_per_video": clips_per_video, "select": select, "seed": seed, "start": start}
    resuming = (resume is not False and not isinstance(resume, bool)) or (resume and (ckpt_dir / LAST).is_file())
    state = _Progress(out / "history.json", resuming=bool(resuming))
    trainer: Trainer

    def on_epoch_end(epoch: int) -> dict[str, float]:
        sums = method.epoch_sums.clone()
        if trainer.world_size > 1:
            torch.distributed.all_reduce(sums)
        method.epoch_sums.zero_()
        entry = {"epoch": epoch + 1, "train_loss": sums[0].item() / max(sums[2].item(), 1),
                 "train_acc": sums[1].item() / max(sums[2].item(), 1), "lr": opt.param_groups[0]["lr"]}
        last = epoch + 1 == epochs
        if val_set is not None and (last or (epoch + 1) % max(1, eval_every) == 0):
            correct, seen = _clip_accuracy(method.backbone, val_set, batch_size=batch_size, num_workers=num_workers,
                                           device=trainer.device, amp=trainer.amp, seed=seed)
            entry["val_acc"] = correct / max(seen, 1)
            if state.best is None or entry["val_acc"] >= state.best["val_acc"]:  # ties: the later, longer-trained
                state.best = {"epoch": epoch + 1, "val_acc": entry["val_acc"]}
                save_checkpoint(ckpt_dir / "best.pt", {"model": method.backbone.state_dict(), **state.best})
        state.add(entry)
        state.bad_videos.update(method.bad_videos)
        if trainer.main:
            state.save()
            if progress:
                from tqdm.auto import tqdm

                tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))
        return {k: v for k, v in entry.items() if k != "epoch"}

    trainer = Trainer(
        method=method, optimizer=opt, dataset=_TrainData(train_set, clips_per_video), batch_size=batch_size,
        epochs=epochs, lr_schedule=lr_schedule, device=device, amp=amp, channels_last=channels_last,
        compile=compile, grad_clip=grad_clip, num_workers=num_workers, log_dir=out / "tb" if tensorboard else None,
        progress=progress, ckpt_dir=ckpt_dir, resume=resume, seed=seed, max_steps=max_steps,
        on_epoch_end=on_epoch_end, config=settings,
    )  # fmt: skip
    if not resuming and trainer.main:  # starting over: no best weights or history of an earlier run
        (ckpt_dir / "best.pt").unlink(missing_ok=True)
        (out / "history.json").unlink(missing_ok=True)
    summary = trainer.fit()

    # -- 4. the best weights, the video-level test, the saved model ----------------------------------------------
    best_file = ckpt_dir / "best.pt"
    if state.best is not None and best_file.is_file():
        best_epoch, best_checkpoint = int(state.best["epoch"]), best_file
        if select == "best":
            method.backbone.load_state_dict(load_checkpoint(best_file, map_location=trainer.device)["model"])
    else:
        best_epoch, best_checkpoint = (trainer.epoch or None), Path(summary["checkpoint"])
    trained = method.export_model()
    trained.class_names = classes
    bad = _gather_bad_videos({**state.bad_videos, **method.bad_videos})
    metrics, model_dir = {}, None
    if trainer.main:
        chosen = state.best if select == "best" else next((h for h in reversed(state.history) if "val_acc" in h), None)
        metrics = _evaluate(trained, val_set, chosen["val_acc"] if chosen else None, test=test, video_eval=video_eval,
                            out=out, device=trainer.device, progress=progress)
        bad.update(metrics.get("failed") or {})
        if save:
            model_dir = _save(trained, out / "model", classes=classes, metrics=metrics,
                              task=task or _task_name(train, train_set), freeze=freeze, epochs=trainer.epoch,
                              best_epoch=best_epoch if val_set is not None else None, settings=settings, card=card)
        if bad:
            log.warning("unreadable videos, replaced by others in training and left out of the test (%d): %s",
                        len(bad), "; ".join(f"{p} ({c})" for p, c in bad.items()))
    metrics, model_dir = _share((metrics, model_dir))
    result = FinetuneResult(
        history=state.history, best_epoch=best_epoch, best_checkpoint=best_checkpoint, model_dir=model_dir,
        metrics=metrics, bad_videos=bad, out_dir=out, steps=summary["steps"], epochs_done=summary["epochs_done"],
        resumed_from=summary["resumed_from"],
    )  # fmt: skip
    return trained, result


def _evaluate(model: nn.Module, val_set: Any, clip_acc: float | None, *, test: str | Mapping[str, Any] | None,
              video_eval: bool, out: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    """Video-level accuracy of the returned model on ``val`` (files in ``out``), else its clip-level ``clip_acc``."""
    from videozoo.eval.video_predict import evaluate_videos

    if val_set is None:
        return {}
    if video_eval and hasattr(val_set, "samples"):
        protocol = _test_protocol(test, model)
        results = evaluate_videos(model, [s.path for s in val_set.samples], val_set.labels,
                                  class_names=list(val_set.classes), device=device, out_dir=out, progress=progress,
                                  **protocol)
        results["description"] = _describe_protocol(protocol, results["protocol"]["average"])
        return results
    if clip_acc is None:
        return {}
    return {"val_acc": clip_acc, "description": "clip-level: one centre clip and crop per video"}


def _save(model: nn.Module, directory: Path, *, classes: list[str], metrics: Mapping[str, Any], task: str,
          freeze: str | None, epochs: int, best_epoch: int | None, settings: Mapping[str, Any],
          card: Mapping[str, Any] | None) -> Path:
    """``save_pretrained`` with the class names, the measured numbers (percent, as the registry's) and a card."""
    from videozoo.api import save_pretrained
    from videozoo.registry import Metric

    kind = "linear probe" if freeze == "backbone" else "finetune"
    found = []
    for key, name in (("top1", "top-1"), ("top5", "top-5"), ("val_acc", "top-1")):
        if key in metrics and (key != "top5" or len(classes) > 5):
            found.append(Metric(f"{task} {kind}", name, round(100 * float(metrics[key]), 2),
                                metrics.get("description", ""), "videozoo.finetune"))
    fields = {"description": f"{settings['model']} fine-tuned ({kind}) on {task}, {len(classes)} classes.",
              "source": f"Fine-tuned with `videozoo.finetune` from {settings['start']}.",
              "finetuned_from": settings["model"], "finetuned_on": task, "epochs": epochs,
              "kept": f"epoch {best_epoch} (best validation accuracy)" if best_epoch and settings["select"] == "best"
              else "the last epoch",
              "optimizer": f"{settings['optimizer']}, lr {settings['lr']:g} ("
                           + ("backbone frozen" if freeze else f"backbone {settings['backbone_lr']:g}") + "), "
                           f"weight decay {settings['weight_decay']:g}, {settings['schedule']} schedule, "
                           f"batch {settings['batch_size']}, dropout {settings['dropout']:g}",
              "tags": ["finetuned", "video-classification"], **dict(card or {})}  # fmt: skip
    return save_pretrained(model, directory, class_names=classes, metrics=found, card=fields)


def _gather_bad_videos(bad: dict[str, str]) -> dict[str, str]:
    """Every rank's bad videos (each saw its own share of the data)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(bad)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, bad)
    return {p: c for part in parts for p, c in part.items()}


def _share(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (only rank 0 evaluates and saves)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
