"""Linear probe on cached features: BN → linear, trained with SGD on frozen-backbone features.

CoCLR's protocol (``TengdaHan/CoCLR``, ``eval/feature_linear_probe.py``, run as its README says with
``--final_bn --lr 1.0 --wd 1e-3``): ``BatchNorm1d`` (weight 1, bias 0) then ``Linear`` (weight ~ N(0, 0.01),
bias 0), cross-entropy, SGD momentum 0.9, lr 1.0, weight decay 1e-3, batch 1024, 100 epochs, lr × 0.1 at epochs
60 and 80; features optionally L2-normalised first (``--normalize``). The README notes lr 0.1–1.0 and wd
1e-4–1e-1 need tuning per dataset: pass several weight decays to sweep them on a validation split.

One difference, on purpose: the official script evaluates on the test set every 5 epochs and reports the best
(model selection on the test set); :func:`linear_probe` reports the last epoch's accuracy, and ``history``
(with ``eval_every``) shows the curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

__all__ = ["LinearProbeResult", "linear_probe", "sweep_weight_decay"]


@dataclass
class LinearProbeResult:
    """``accuracy`` / ``top5``: test accuracy (fractions) of ``classifier`` after the last epoch.

    ``classifier`` is ``BatchNorm1d → Linear`` (or ``Linear`` alone) in eval mode, on the CPU; apply it to
    features prepared the same way (:meth:`predict` L2-normalises first when the probe did).
    """

    accuracy: float
    top5: float
    classifier: nn.Module
    weight_decay: float
    normalize: bool
    history: list[dict[str, float]] = field(default_factory=list)
    sweep: dict[float, float] = field(default_factory=dict)  # weight decay -> validation accuracy

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` for features ``(N, D)``."""
        features = features.float().cpu()
        return self.classifier(F.normalize(features, dim=1) if self.normalize else features)


def _classifier(dim: int, num_classes: int, *, bn: bool, generator: torch.Generator) -> nn.Module:
    fc = nn.Linear(dim, num_classes)
    nn.init.normal_(fc.weight, mean=0.0, std=0.01, generator=generator)  # CoCLR's LP init
    nn.init.zeros_(fc.bias)
    return nn.Sequential(nn.BatchNorm1d(dim), fc) if bn else fc  # BN: weight 1, bias 0 by default


def _lr_at(epoch: int, *, lr: float, epochs: int, schedule: str, milestones: Sequence[int]) -> float:
    if schedule == "step":
        return lr * 0.1 ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
    raise ValueError(f"schedule must be 'step' or 'cosine', got {schedule!r}")


@torch.no_grad()
def _evaluate(model: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(feats)  # (N, K)
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (N, 5)
    hits = top == labels[:, None]
    return hits[:, 0].float().mean().item(), hits.any(dim=1).float().mean().item()


def _train(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    num_classes: int,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    schedule: str,
    milestones: Sequence[int],
    bn: bool,
    seed: int,
    eval_every: int,
    progress: bool,
) -> tuple[nn.Module, float, float, list[dict[str, float]]]:
    generator = torch.Generator().manual_seed(seed)
    model = _classifier(train_x.shape[1], num_classes, bn=bn, generator=generator).to(train_x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history = []
    for epoch in tqdm(range(epochs), desc="linear probe", unit="epoch", disable=not progress):
        for group in optimizer.param_groups:  # per-epoch lr, as the official adjust_learning_rate
            group["lr"] = _lr_at(epoch, lr=lr, epochs=epochs, schedule=schedule, milestones=milestones)
        model.train()
        order = torch.randperm(train_x.shape[0], generator=generator).to(train_x.device)
        total = 0.0
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            if bn and len(batch) == 1:
                continue  # BatchNorm cannot train on one row (the official DataLoader would crash here)
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        if eval_every and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            top1, _ = _evaluate(model, test_x, test_y)
            history.append({"epoch": epoch + 1, "loss": total / len(order), "test_top1": top1})
    top1, top5 = _evaluate(model, test_x, test_y)
    return model.cpu().eval(), top1, top5, history


def _prepare(feats: torch.Tensor, labels: Any, normalize: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
    x = torch.as_tensor(feats).float().to(device)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1).to(device)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, D) with one label per row, got {tuple(x.shape)} and {y.shape[0]}")
    return (F.normalize(x, dim=1) if normalize else x), y


def sweep_weight_decay(
    train_feats: torch.Tensor,
    train_labels: Sequence[int] | torch.Tensor,
    val_feats: torch.Tensor,
    val_labels: Sequence[int] | torch.Tensor,
    *,
    weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
    **kwargs: Any,
) -> dict[float, float]:
    """Validation top-1 for each weight decay (``kwargs``: those of :func:`linear_probe`)."""
    return {
        float(wd): linear_probe(train_feats, train_labels, val_feats, val_labels, weight_decay=float(wd),
                                **kwargs).accuracy
        for wd in weight_decays
    }  # fmt: skip


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: Sequence[int] | torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: Sequence[int] | torch.Tensor,
    *,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float | Sequence[float] = 1e-3,
    batch_size: int = 1024,
    schedule: str = "step",
    milestones: Sequence[int] | None = None,
    normalize: bool = False,
    bn: bool = True,
    seed: int = 0,
    val_fraction: float = 0.2,
    eval_every: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> LinearProbeResult:
    """Train a linear classifier on ``train_feats`` ``(N, D)`` and report its accuracy on ``test_feats``.

    Defaults are CoCLR's (module docstring). ``schedule``: ``"step"`` (lr × 0.1 at ``milestones``, default 60%
    and 80% of ``epochs``: 60, 80 of 100) or ``"cosine"``. ``normalize``: L2-normalise features first; ``bn``:
    BatchNorm before the linear layer. ``weight_decay`` a sequence: each is tried on a random ``val_fraction``
    of the training features, and the best is retrained on all of them (a random split puts clips of one UCF101
    source video on both sides; for a group-aware split call :func:`sweep_weight_decay` yourself).
    Features live on ``device`` (default: where ``train_feats`` are); each epoch is a few matrix products.
    """
    device = torch.device(device) if device is not None else torch.as_tensor(train_feats).device
    train_x, train_y = _prepare(train_feats, train_labels, normalize, device)
    test_x, test_y = _prepare(test_feats, test_labels, normalize, device)
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    milestones = tuple(milestones) if milestones is not None else (int(0.6 * epochs), int(0.8 * epochs))
    settings = {
        "num_classes": num_classes,
        "epochs": epochs,
        "lr": lr,
        "momentum": momentum,
        "batch_size": batch_size,
        "schedule": schedule,
        "milestones": milestones,
        "bn": bn,
        "seed": seed,
    }
    sweep: dict[float, float] = {}
    if not isinstance(weight_decay, int | float):
        perm = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
        n_val = max(1, round(val_fraction * len(perm)))
        val, fit = perm[:n_val], perm[n_val:]
        sweep = sweep_weight_decay(
            train_x[fit], train_y[fit], train_x[val], train_y[val], weight_decays=weight_decay, **settings
        )  # features already normalised
        weight_decay = max(sweep, key=lambda wd: (sweep[wd], -wd))  # ties: the smallest decay
    model, top1, top5, history = _train(
        train_x,
        train_y,
        test_x,
        test_y,
        weight_decay=float(weight_decay),
        eval_every=eval_every,
        progress=progress,
        **settings,
    )
    return LinearProbeResult(
        accuracy=top1,
        top5=top5,
        classifier=model,
        weight_decay=float(weight_decay),
        normalize=normalize,
        history=history,
        sweep=sweep,
    )
