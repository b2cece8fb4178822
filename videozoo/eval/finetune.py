"""Fine-tuning: a zoo model with a new linear head, trained end to end (or as a linear probe), judged video-level.

    model, result = videozoo.finetune("coclr_s3d_k400_rgb", "my_videos/train", "my_videos/val", epochs=10, lr=1e-3)
    model, result = videozoo.finetune(name, train, test, protocol="stica")      # a paper's settings
    model, result = videozoo.finetune(name, train, test, config=FinetuneConfig(...), epochs=20)

Every setting is a field of :class:`~videozoo.eval.finetune_config.FinetuneConfig` (documented there), which the
recipe (``recipes/finetune.py``) and the command (``videozoo finetune``) read too; the papers' protocols, each
value with its source in the official code, are :data:`FINETUNE_PROTOCOLS` (docs/finetune.md,
docs/methods/presets.md). :func:`finetune` runs in numbered stages, each a function below it: 1. the model,
2. the data, 3. optimiser and schedule, 4. train, 5. the kept epoch, 6. the video-level test, 7. the saved model.

The run goes through :class:`videozoo.training.Trainer` (bf16/fp16, DDP, tqdm, TensorBoard, atomic checkpoints,
exact resume); :class:`Classifier` is the "method" it trains. Layout of ``out_dir``::

    checkpoints/last.pt  checkpoints/best.pt   resume point; the weights with the best validation accuracy
    tb/                                        TensorBoard: train/loss, train/acc, epoch/val_acc, ...
    history.json                               per-epoch train loss / accuracy and validation accuracy
    results.json  predictions.csv  confusion_matrix.png     the final video-level evaluation (and the config)
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

from videozoo.eval.finetune_config import FINETUNE_PROTOCOLS, Evaluation, FinetuneConfig, Optimisation, resolve_config
from videozoo.methods.base import Method

__all__ = ["FINETUNE_PROTOCOLS", "Classifier", "FinetuneConfig", "FinetuneResult", "finetune", "param_groups"]

log = logging.getLogger("videozoo.finetune")

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

    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        freeze: Literal["backbone"] | None = None,
    ) -> None:
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
        self.padded_videos: dict[str, str] = {}  # likewise: videos whose clips are mostly padding

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.freeze == "backbone" and mode:
            self.backbone.eval()  # BN statistics and any dropout inside the frozen part stay fixed ...
            for name, module in self.backbone.named_children():
                if name in ("fc", "dropout"):  # ... the head (and the dropout before it) trains
                    module.train()
        return self

    def forward(self, batch: dict[str, Any], **_: Any) -> dict[str, Any]:
        _collect_notes(batch.get("bad_videos"), into=self.bad_videos)
        _collect_notes(batch.get("padded_videos"), into=self.padded_videos)
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


def _collect_notes(entries: Sequence[str] | None, *, into: dict[str, str]) -> None:
    """Add the ``"path\tnote"`` lines of a batch's strings (one per sample, see :class:`_TrainData`) to ``into``."""
    for entry in entries or ():
        for line in filter(None, entry.split("\n")):
            path, _, note = line.partition("\t")
            into.setdefault(path, note)


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float = 0.0,
    freeze: Literal["backbone"] | None = None,
) -> list[dict[str, Any]]:
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
_SAMPLE_NOTES = {"bad_videos": "failed_paths", "padded_videos": "padded_paths"}  # sample key -> the dataset's dict


class _TrainData(torch.utils.data.Dataset):
    """The training set seen ``repeat`` times per epoch (STiCA: 10 random clips per video), reporting bad videos.

    videozoo datasets replace an unreadable video and note it in ``failed_paths`` of the process that read it
    (a DataLoader worker), and note a video whose clips are mostly padding in ``padded_paths``; each sample
    carries the paths newly noted while drawing it, as one string per kind (``bad_videos``,
    ``padded_videos``), so the main process learns them whatever the number of workers.
    """

    def __init__(self, dataset: Any, repeat: int = 1) -> None:
        self.dataset, self.repeat = dataset, max(1, int(repeat))

    def __len__(self) -> int:
        return self.repeat * len(self.dataset)

    @property
    def num_failures(self) -> int | None:  # the trainer logs it as train/bad_videos
        return getattr(self.dataset, "num_failures", None)

    def __getitem__(self, index: int) -> Any:
        notes = {key: getattr(self.dataset, attr, None) for key, attr in _SAMPLE_NOTES.items()}
        notes = {key: found for key, found in notes.items() if isinstance(found, dict)}
        before = {key: len(found) for key, found in notes.items()}
        sample = self.dataset[index % len(self.dataset)]
        if isinstance(sample, dict):  # every sample gets every key, or the DataLoader cannot collate them
            new = {key: list(found.items())[before[key] :] for key, found in notes.items()}
            sample = {**sample, **{key: "\n".join(f"{p}\t{c}" for p, c in items) for key, items in new.items()}}
        return sample


def _dataset(
    source: Any, *, model: nn.Module, train: bool, classes: Sequence[str] | None, transform: Callable | None
) -> Any:
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
            dataset = VideoList(
                path, transform=transform, sampler=sampler, classes=list(classes) if classes is not None else None
            )
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
    ``padded_videos``: path → note of every video (training or test) supplying less than half of a clip's frames,
    used with its clips padded (looped); also in ``results.json`` and one warning line at the end.
    ``config``: the resolved :class:`FinetuneConfig` the run used (also under ``config`` in ``results.json``).
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
    padded_videos: dict[str, str] = field(default_factory=dict)
    config: FinetuneConfig | None = None


# -- the entry point -----------------------------------------------------------------------------------------------
def finetune(
    model: str | nn.Module,
    train: str | os.PathLike | torch.utils.data.Dataset,
    val: str | os.PathLike | torch.utils.data.Dataset | None = None,
    *,
    config: FinetuneConfig | None = None,
    protocol: str | None = None,
    train_transform: Callable | None = None,
    **overrides: Any,
) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune ``model`` on ``train``; return the model (best on ``val``, head named by the classes) and a
    :class:`FinetuneResult`.

    Args:
        model: a zoo name or a directory written by ``save_pretrained`` (loaded with the config's ``weights`` /
            ``pretrained`` as :func:`videozoo.load` does), or a zoo model. Its ``fc`` is replaced by a new head.
        train, val: a folder with one sub-folder per class, a ``.csv``/``.txt`` list (``path,label``), or a
            videozoo dataset (used as it is; one without ``transform`` gets the model's). Clip length, stride /
            fps and preprocessing come from the model's input spec. Validation classes are matched to the
            training classes by name. Every ``eval_every`` epochs a clip-level check on ``val`` picks the best
            epoch; at the end the kept model is tested video-level on ``val``.
        config: a :class:`FinetuneConfig` (default: its defaults), documented field by field there.
        protocol: a paper's settings applied over ``config`` (:data:`FINETUNE_PROTOCOLS`: ``coclr``, ``cacl``,
            ``stica``, ``cacl_released_defaults``).
        train_transform: replaces the training augmentation (default: :func:`videozoo.transforms_for`
            ``(model, train=True)``); an object, so not part of the config.
        **overrides: any config field by its flat name, applied last: ``epochs=20``, ``lr=0.01``,
            ``freeze="backbone"``, ``out_dir=...``; ``input_spec={"frames": 32}`` and ``test={"clips": 1}`` set
            the fields they name. An unknown name raises ``TypeError`` naming the nearest valid one.

    Everything lands in ``out_dir`` (module docstring). Under ``torchrun`` every process calls this; ``batch_size``
    is per process, and one process tests and saves.
    """
    config = resolve_config(config, protocol=protocol, **overrides)
    model, start = _load_model(model, config)  # 1. the model
    data = _load_data(model, train, val, config, train_transform=train_transform)  # 2. the data
    method = Classifier(backbone=model, num_classes=len(data.classes), dropout=config.dropout,
                        label_smoothing=config.optim.label_smoothing, freeze=config.freeze)  # fmt: skip
    optimizer, lr_schedule = _optimiser(model, config)  # 3. optimiser and schedule
    run = _train(method, optimizer, lr_schedule, data, config, start=start)  # 4. train, checking val each epoch
    trained, kept = _kept_model(method, run, data, config)  # 5. the kept epoch's weights
    bad = _gather_bad_videos({**run.state.bad_videos, **method.bad_videos})  # every process's share of the data
    padded = _gather_bad_videos({**run.state.padded_videos, **method.padded_videos})
    metrics, model_dir = {}, None
    if run.trainer.main:  # one process tests and saves; the others receive what it found
        metrics = _evaluate(trained, data.val, run, config)  # 6. the video-level test
        bad.update(metrics.get("failed") or {})
        padded.update(metrics.get("padded") or {})
        _record(metrics, padded, config)
        if config.run.save:
            model_dir = _save(trained, data, run, kept, metrics, config)  # 7. the saved model
        _warn_unreadable(bad)
    metrics, model_dir = _share((metrics, model_dir))
    return trained, FinetuneResult(
        history=run.state.history, best_epoch=kept.epoch, best_checkpoint=kept.checkpoint, model_dir=model_dir,
        metrics=metrics, bad_videos=bad, out_dir=run.out, steps=run.summary["steps"],
        epochs_done=run.summary["epochs_done"], resumed_from=run.summary["resumed_from"], padded_videos=_share(padded),
        config=config,
    )  # fmt: skip


# -- 1. the model --------------------------------------------------------------------------------------------------
_SPEC_FIELDS = ("frames", "stride", "fps", "resize", "crop_size")  # config.data fields that change the input spec


def _load_model(given: str | nn.Module, config: FinetuneConfig) -> tuple[nn.Module, str]:
    """The model to tune, with the config's input-spec changes, and where it started from (in words, for the card)."""
    from videozoo.api import input_spec_of, load

    if isinstance(given, nn.Module):
        if config.weights is not None:
            raise TypeError("weights= is for a model given by name; load the weights into the module yourself")
        model = given
    else:
        model = load(str(given), weights=config.weights, pretrained=config.pretrained)
    changes = {k: getattr(config.data, k) for k in _SPEC_FIELDS if getattr(config.data, k) is not None}
    if changes:  # a model may carry its own spec (videozoo.api.input_spec_of); transforms and sampling follow it
        model.input_spec = dataclasses.replace(input_spec_of(model), **changes)
    return model, _start(model, given, config.weights, config.pretrained)


def _start(model: nn.Module, given: Any, weights: Any, pretrained: bool) -> str:
    """Where the fine-tuning started from, in words (for the model card)."""
    if isinstance(given, nn.Module):
        source = getattr(model, "zoo_weights", None)
        return f"the weights in `{source}`" if source else "a model given in memory"
    if weights is not None:
        return f"the weights `{weights}`"
    return "its registered weights" if pretrained else "a random initialisation"


# -- 2. the data ---------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class _Data:
    train: Any  # the training dataset
    val: Any | None  # the validation dataset, relabelled to the training classes
    classes: list[str]  # the head's class names
    source: Any  # what was given as `train` (a folder, a list, a dataset): names the task


def _load_data(model: nn.Module, train: Any, val: Any, config: FinetuneConfig, *,
               train_transform: Callable | None) -> _Data:  # fmt: skip
    train_set = _dataset(train, model=model, train=True, classes=None, transform=train_transform)
    classes = _class_names(train_set, config.data.class_names)
    val_set = _dataset(val, model=model, train=False, classes=classes, transform=None) if val is not None else None
    return _Data(train=train_set, val=val_set, classes=classes, source=train)


# -- 3. optimiser and schedule -------------------------------------------------------------------------------------
def _optimiser(model: nn.Module, config: FinetuneConfig) -> tuple[torch.optim.Optimizer, Callable]:
    """The optimiser over :func:`param_groups` and the learning-rate schedule (a function of training progress)."""
    o = config.optim
    backbone_lr = o.backbone_lr if o.backbone_lr is not None else o.lr * o.backbone_lr_mult
    groups = param_groups(model, lr=o.lr, backbone_lr=backbone_lr, weight_decay=o.weight_decay, freeze=config.freeze)
    if o.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    else:  # the choices were checked by resolve_config
        optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[o.optimizer](groups, lr=o.lr)
    return optimizer, _lr_schedule(o)


def _lr_schedule(o: Optimisation) -> Callable:
    """Milestones and warm-up are given in epochs; the schedules take fractions of the run."""
    from videozoo.training import schedules

    warmup = o.warmup_epochs / o.epochs
    if o.schedule == "multistep":
        return schedules.multistep(milestones=[m / o.epochs for m in o.milestones], gamma=o.gamma, warmup=warmup)
    return {"cosine": schedules.cosine, "constant": schedules.constant}[o.schedule](warmup=warmup)


# -- 4. train ------------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class _Run:
    trainer: Any  # the videozoo.training.Trainer that ran
    summary: dict[str, Any]  # what Trainer.fit returned
    state: _Progress  # history.json: per-epoch numbers, the best epoch, bad and padded videos
    settings: dict[str, Any]  # the settings stored in the checkpoints and described on the card
    out: Path


def _train(method: Classifier, optimizer: torch.optim.Optimizer, lr_schedule: Callable, data: _Data,
           config: FinetuneConfig, *, start: str) -> _Run:  # fmt: skip
    """Train with the Trainer (resuming from ``out_dir`` unless told not to), checking ``val`` after each epoch."""
    from videozoo.training import Trainer
    from videozoo.training.checkpoint import LAST

    out = Path(config.run.out_dir)
    ckpt_dir, resume = out / "checkpoints", config.run.resume
    resuming = (resume is not False and not isinstance(resume, bool)) or (resume and (ckpt_dir / LAST).is_file())
    state = _Progress(out / "history.json", resuming=bool(resuming))
    settings = _settings(method.backbone, data.classes, optimizer, config, start=start)
    on_epoch_end = _EpochEnd(method=method, optimizer=optimizer, val_set=data.val, state=state, config=config,
                             best_file=ckpt_dir / "best.pt")  # fmt: skip
    r = config.run
    trainer = Trainer(
        method=method, optimizer=optimizer, dataset=_TrainData(data.train, config.data.clips_per_video),
        batch_size=config.optim.batch_size, epochs=config.optim.epochs, lr_schedule=lr_schedule, device=r.device,
        amp=r.amp, channels_last=r.channels_last, compile=r.compile, grad_clip=config.optim.grad_clip,
        num_workers=config.data.num_workers, log_dir=out / "tb" if r.tensorboard else None, progress=r.progress,
        ckpt_dir=ckpt_dir, resume=resume, seed=r.seed, max_steps=r.max_steps, on_epoch_end=on_epoch_end,
        config=settings,
    )  # fmt: skip
    on_epoch_end.trainer = trainer
    if not resuming and trainer.main:  # starting over: no best weights or history of an earlier run
        (ckpt_dir / "best.pt").unlink(missing_ok=True)
        (out / "history.json").unlink(missing_ok=True)
    summary = trainer.fit()
    return _Run(trainer=trainer, summary=summary, state=state, settings=settings, out=out)


def _settings(model: nn.Module, classes: list[str], optimizer: torch.optim.Optimizer, config: FinetuneConfig, *,
              start: str) -> dict[str, Any]:  # fmt: skip
    """What the checkpoints record (a resumed run warns when one differs) and the model card describes."""
    o = config.optim
    return {"model": getattr(model, "zoo_name", type(model).__name__), "classes": classes, "epochs": o.epochs,
            "lr": o.lr, "backbone_lr": optimizer.param_groups[-1]["lr"], "optimizer": o.optimizer,
            "weight_decay": o.weight_decay, "schedule": o.schedule, "milestones": list(o.milestones), "gamma": o.gamma,
            "warmup_epochs": o.warmup_epochs, "batch_size": o.batch_size, "freeze": config.freeze,
            "dropout": config.dropout, "label_smoothing": o.label_smoothing,
            "clips_per_video": config.data.clips_per_video, "select": config.evaluation.select,
            "seed": config.run.seed, "start": start}  # fmt: skip


class _EpochEnd:
    """The Trainer's ``on_epoch_end``: the epoch's training numbers, and every ``eval_every`` epochs (and the last)
    the clip-level accuracy on ``val``, keeping the best epoch's weights in ``best.pt``; history.json after each."""

    def __init__(self, *, method: Classifier, optimizer: torch.optim.Optimizer, val_set: Any, state: _Progress,
                 config: FinetuneConfig, best_file: Path) -> None:  # fmt: skip
        self.method, self.optimizer, self.val_set, self.state = method, optimizer, val_set, state
        self.config, self.best_file = config, best_file
        self.trainer: Any = None  # set once the Trainer that calls this exists

    def __call__(self, epoch: int) -> dict[str, float]:
        entry = self._train_numbers(epoch)
        epochs, every = self.config.optim.epochs, max(1, self.config.evaluation.eval_every)
        if self.val_set is not None and (epoch + 1 == epochs or (epoch + 1) % every == 0):
            self._validate(entry)
        state, method = self.state, self.method
        state.add(entry)
        state.bad_videos.update(method.bad_videos)
        state.padded_videos.update(method.padded_videos)
        if self.trainer.main:
            state.save()
            if self.config.run.progress:
                from tqdm.auto import tqdm

                tqdm.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch"))  # fmt: skip
        return {k: v for k, v in entry.items() if k != "epoch"}

    def _train_numbers(self, epoch: int) -> dict[str, float]:
        """The epoch's mean loss and accuracy over every process's clips (the sums the Classifier kept)."""
        sums = self.method.epoch_sums.clone()
        if self.trainer.world_size > 1:
            torch.distributed.all_reduce(sums)
        self.method.epoch_sums.zero_()
        seen = max(sums[2].item(), 1)
        return {"epoch": epoch + 1, "train_loss": sums[0].item() / seen, "train_acc": sums[1].item() / seen,
                "lr": self.optimizer.param_groups[0]["lr"]}  # fmt: skip

    def _validate(self, entry: dict[str, float]) -> None:
        from videozoo.training.checkpoint import save_checkpoint

        c = self.config
        correct, seen = _clip_accuracy(self.method.backbone, self.val_set, batch_size=c.optim.batch_size,
                                       num_workers=c.data.num_workers, device=self.trainer.device, amp=self.trainer.amp,
                                       seed=c.run.seed)  # fmt: skip
        entry["val_acc"] = correct / max(seen, 1)
        best = self.state.best
        if best is None or entry["val_acc"] >= best["val_acc"]:  # ties: the later, longer-trained
            self.state.best = {"epoch": entry["epoch"], "val_acc": entry["val_acc"]}
            save_checkpoint(self.best_file, {"model": self.method.backbone.state_dict(), **self.state.best})


class _Progress:
    """history.json: per-epoch numbers, the best epoch, bad and padded videos, rewritten after every epoch (rank 0)."""

    def __init__(self, path: Path, *, resuming: bool) -> None:
        self.path, self.first_call = path, True
        state = json.loads(path.read_text()) if resuming and path.is_file() else {}
        self.history: list[dict[str, float]] = state.get("history", [])
        self.best: dict[str, float] | None = state.get("best")  # {"epoch", "val_acc"}: matches best.pt
        self.bad_videos: dict[str, str] = state.get("bad_videos", {})
        self.padded_videos: dict[str, str] = state.get("padded_videos", {})

    def add(self, entry: dict[str, float]) -> None:
        if self.first_call:  # epochs after the checkpoint we resumed from are being run again
            self.history = [h for h in self.history if h["epoch"] < entry["epoch"]]
            self.first_call = False
        self.history.append(entry)

    def save(self) -> None:
        from videozoo.training.checkpoint import atomic_write_bytes

        state = {"history": self.history, "best": self.best, "bad_videos": self.bad_videos,
                 "padded_videos": self.padded_videos}  # fmt: skip
        atomic_write_bytes(self.path, (json.dumps(state, indent=2) + "\n").encode())


@torch.no_grad()
def _clip_accuracy(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    amp: str | None,
    seed: int,
) -> tuple[float, float]:
    """(correct, clips) on this rank's share of ``dataset``: one centre clip per video, a quick per-epoch check."""
    import torch.distributed as dist

    from videozoo.training import SeededDataset

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    share = torch.utils.data.Subset(SeededDataset(dataset, seed), range(rank, len(dataset), world))
    loader = torch.utils.data.DataLoader(
        share, batch_size=batch_size, num_workers=num_workers, generator=torch.Generator().manual_seed(seed)
    )
    was_training = model.training
    model.eval()
    counts = torch.zeros(2, device=device)
    for batch in loader:
        video, label = batch["video"].to(device), batch["label"].to(device)
        with torch.autocast(
            device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16, enabled=amp is not None
        ):
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


# -- 5. the kept epoch ---------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class _Kept:
    epoch: int | None  # the best validation epoch, or the last one without val
    checkpoint: Path | None  # its weights' file


def _kept_model(method: Classifier, run: _Run, data: _Data, config: FinetuneConfig) -> tuple[nn.Module, _Kept]:
    """The model to return: the best validation epoch's weights (``select="best"``) or the last epoch's."""
    from videozoo.training.checkpoint import load_checkpoint

    best_file = run.out / "checkpoints" / "best.pt"
    if run.state.best is not None and best_file.is_file():
        kept = _Kept(epoch=int(run.state.best["epoch"]), checkpoint=best_file)
        if config.evaluation.select == "best":
            method.backbone.load_state_dict(load_checkpoint(best_file, map_location=run.trainer.device)["model"])
    else:
        kept = _Kept(epoch=run.trainer.epoch or None, checkpoint=Path(run.summary["checkpoint"]))
    trained = method.export_model()
    trained.class_names = data.classes
    return trained, kept


# -- 6. the video-level test ---------------------------------------------------------------------------------------
def _evaluate(model: nn.Module, val_set: Any, run: _Run, config: FinetuneConfig) -> dict[str, Any]:
    """Video-level accuracy of the returned model on ``val`` (files in ``out_dir``), else the kept epoch's
    clip-level accuracy; nothing without ``val``."""
    from videozoo.eval.video_predict import evaluate_videos

    if val_set is None:
        return {}
    if config.evaluation.video_eval and hasattr(val_set, "samples"):
        protocol = _test_protocol(config.evaluation, model)
        results = evaluate_videos(model, [s.path for s in val_set.samples], val_set.labels,
                                  class_names=list(val_set.classes), device=run.trainer.device, out_dir=run.out,
                                  progress=config.run.progress, **protocol)  # fmt: skip
        results["description"] = _describe_protocol(protocol, results["protocol"]["average"])
        return results
    history = run.state.history
    kept = run.state.best if config.evaluation.select == "best" else next(
        (h for h in reversed(history) if "val_acc" in h), None)  # fmt: skip
    if kept is None:
        return {}
    return {"val_acc": kept["val_acc"], "description": "clip-level: one centre clip and crop per video"}


def _test_protocol(evaluation: Evaluation, model: nn.Module) -> dict[str, Any]:
    """evaluate_videos keywords: the protocol named by ``test`` (else the model's own paper's), with the
    ``test_*`` fields that are set."""
    from videozoo.eval.video_predict import TEST_PROTOCOLS

    method = str(getattr(model, "zoo_name", "")).split("_", 1)[0]
    # a name resolve_config checked, or the model's own paper's (10 uniform clips x 3 crops for others)
    base = TEST_PROTOCOLS[evaluation.test] if evaluation.test is not None else TEST_PROTOCOLS.get(method, DEFAULT_TEST)
    changes = {k: getattr(evaluation, f"test_{k}") for k in ("clips", "crops", "sampling", "step", "average")}
    return {**base, **{k: v for k, v in changes.items() if v is not None}}


def _describe_protocol(protocol: Mapping[str, Any], average: str) -> str:
    n = protocol.get("clips", 10)
    clips = "every window" if protocol.get("sampling") == "sliding" else f"{n} clip{'s' if n != 1 else ''}"
    return (
        f"video-level: {clips} ({protocol.get('sampling', 'uniform')}) x {protocol.get('crops', 3)} crops, "
        f"{'softmax probabilities' if average == 'prob' else 'logits'} averaged"
    )


def _record(metrics: dict[str, Any], padded: dict[str, str], config: FinetuneConfig) -> None:
    """Padded videos into ``metrics`` and one warning line; ``results.json`` (when the video-level test wrote one)
    rewritten with them and with the resolved config."""
    from videozoo.eval.metrics import write_json
    from videozoo.training.config import config_to_dict

    if padded:
        metrics["padded_videos"] = dict(padded)  # training and test; "padded" holds the test's alone
        log.warning("%d videos supply less than half of a clip's frames and were used padded (looped): %s",
                    len(padded), "; ".join(f"{p} ({note})" for p, note in padded.items()))  # fmt: skip
    if "protocol" in metrics:
        write_json(Path(config.run.out_dir) / "results.json", {**metrics, "config": config_to_dict(config)})


def _warn_unreadable(bad: dict[str, str]) -> None:
    if bad:
        log.warning("unreadable videos, replaced by others in training and left out of the test (%d): %s",
                    len(bad), "; ".join(f"{p} ({c})" for p, c in bad.items()))  # fmt: skip


# -- 7. the saved model --------------------------------------------------------------------------------------------
def _save(model: nn.Module, data: _Data, run: _Run, kept: _Kept, metrics: Mapping[str, Any],
          config: FinetuneConfig) -> Path:  # fmt: skip
    """``save_pretrained`` into ``out_dir/model`` with the class names, the measured numbers (percent, as the
    registry's) and a card saying how the model was tuned."""
    from videozoo.api import save_pretrained
    from videozoo.registry import Metric

    settings, classes, freeze = run.settings, data.classes, config.freeze
    task = config.run.task or _task_name(data.source, data.train)
    best_epoch = kept.epoch if data.val is not None else None
    kind = "linear probe" if freeze == "backbone" else "finetune"
    found = []
    for key, name in (("top1", "top-1"), ("top5", "top-5"), ("val_acc", "top-1")):
        if key in metrics and (key != "top5" or len(classes) > 5):
            found.append(
                Metric(
                    f"{task} {kind}",
                    name,
                    round(100 * float(metrics[key]), 2),
                    metrics.get("description", ""),
                    "videozoo.finetune",
                )
            )
    fields = {"description": f"{settings['model']} fine-tuned ({kind}) on {task}, {len(classes)} classes.",
              "source": f"Fine-tuned with `videozoo.finetune` from {settings['start']}.",
              "finetuned_from": settings["model"], "finetuned_on": task, "epochs": run.trainer.epoch,
              "kept": f"epoch {best_epoch} (best validation accuracy)" if best_epoch and settings["select"] == "best"
              else "the last epoch",
              "optimizer": f"{settings['optimizer']}, lr {settings['lr']:g} ("
                           + ("backbone frozen" if freeze else f"backbone {settings['backbone_lr']:g}") + "), "
                           f"weight decay {settings['weight_decay']:g}, {settings['schedule']} schedule, "
                           f"batch {settings['batch_size']}, dropout {settings['dropout']:g}",
              "tags": ["finetuned", "video-classification"], **dict(config.run.card or {})}  # fmt: skip
    return save_pretrained(model, run.out / "model", class_names=classes, metrics=found, card=fields)


def _task_name(source: Any, dataset: Any) -> str:
    """``UCF101 split-1`` for the official sets, else the folder or list the data came from."""
    kind = type(dataset).__name__
    if kind in ("UCF101", "HMDB51"):
        return f"{kind} split-{getattr(dataset, 'split', 1)}"
    where = source if isinstance(source, (str, os.PathLike)) else getattr(dataset, "root", None)
    return "/".join(Path(where).parts[-2:]) if where is not None else kind


# -- processes -----------------------------------------------------------------------------------------------------
def _gather_bad_videos(bad: dict[str, str]) -> dict[str, str]:
    """Every rank's bad videos, or any other path -> note dict (each rank saw its own share of the data)."""
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
