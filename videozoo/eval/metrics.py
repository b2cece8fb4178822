"""Classification metrics and their files: top-k, per-class accuracy, confusion matrix (+ PNG), CSV, JSON.

Every accuracy is a fraction in [0, 1] (papers print percentages: multiply by 100). ``scores`` are
``(N, K)`` video-level scores (averaged logits or probabilities, see :mod:`videozoo.eval.video_predict`),
``labels`` ``(N,)`` class indices. Nothing here runs a model.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "classification_report",
    "confusion_matrix",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "read_predictions_csv",
    "to_jsonable",
    "topk_accuracy",
    "write_json",
    "write_predictions_csv",
]


def _as_long(labels: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)


def topk_accuracy(
    scores: torch.Tensor, labels: Sequence[int] | torch.Tensor, *, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``: the fraction of rows whose label is among the ``k`` highest scores.

    A ``k`` larger than the number of classes counts every row as a hit (k is clamped).
    """
    labels = _as_long(labels)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be (N, K) with N = {labels.shape[0]} labels, got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        return {f"top{k}": float("nan") for k in ks}
    maxk = min(max(ks), scores.shape[1])
    top = scores.float().topk(maxk, dim=1).indices  # (N, maxk), best first
    hits = top == labels[:, None]  # (N, maxk)
    return {f"top{k}": hits[:, : min(k, maxk)].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(
    predictions: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor, *, num_classes: int
) -> torch.Tensor:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    predictions, labels = _as_long(predictions), _as_long(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    flat = labels * num_classes + predictions  # one bin per (true, predicted) pair
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(
    predictions: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor, *, num_classes: int
) -> torch.Tensor:
    """``(K,)`` accuracy within each true class (the confusion matrix's recall); NaN for a class with no video."""
    matrix = confusion_matrix(predictions, labels, num_classes=num_classes).double()
    support = matrix.sum(dim=1)  # (K,) videos per true class
    return torch.where(support > 0, matrix.diagonal() / support.clamp(min=1), torch.full_like(support, math.nan))


def classification_report(
    scores: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    *,
    class_names: Sequence[str] | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Top-k, mean class accuracy and per-class accuracy of ``(N, K)`` scores, as a JSON-ready dict."""
    labels = _as_long(labels)
    num_classes = scores.shape[1]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    predictions = scores.argmax(dim=1)
    per_class = per_class_accuracy(predictions, labels, num_classes=num_classes)
    return {
        "num_videos": int(labels.shape[0]),
        **topk_accuracy(scores, labels, ks=ks),
        "mean_class_accuracy": float(np.nanmean(per_class.numpy())) if labels.numel() else math.nan,
        "per_class_accuracy": {name: _finite(acc) for name, acc in zip(names, per_class.tolist())},
    }


# -- files ----------------------------------------------------------------------------------------------
def plot_confusion_matrix(
    matrix: torch.Tensor | np.ndarray,
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str = "",
    dpi: int = 120,
) -> Path:
    """Write the confusion matrix as a PNG (rows: true class, columns: predicted; rows normalised by default).

    Drawn with matplotlib's Agg canvas directly, so it never touches the global backend (no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=np.float64)
    num_classes = counts.shape[0]
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    side = min(40.0, max(4.0, 0.16 * num_classes + 2.5))  # 101 UCF classes stay legible at ~19 in
    fig = Figure(figsize=(side + 1.0, side), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    font = max(3.0, min(9.0, 500.0 / max(num_classes, 1)))
    ax.set_xticks(range(num_classes), names, rotation=90, fontsize=font)
    ax.set_yticks(range(num_classes), names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if num_classes <= 20:  # numbers in the cells only while they fit
        for (i, j), v in np.ndenumerate(values):
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            colour = "white" if v > 0.5 * values.max() else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=font, color=colour)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


PREDICTION_COLUMNS = ("path", "label", "label_name", "pred", "pred_name", "score", "topk", "topk_scores")


def write_predictions_csv(
    path: str | Path,
    *,
    paths: Sequence[str],
    scores: torch.Tensor,
    labels: Sequence[int] | torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
    topk: int = 5,
) -> Path:
    """One row per video: true label (blank if unknown), predicted class and score, the top-k classes and scores.

    ``topk`` and ``topk_scores`` hold space-separated lists. Read back with :func:`read_predictions_csv`.
    """
    if len(paths) != scores.shape[0]:
        raise ValueError(f"{len(paths)} paths for {scores.shape[0]} rows of scores")
    names = list(class_names) if class_names is not None else None
    labels_list = _as_long(labels).tolist() if labels is not None else [None] * len(paths)
    k = min(topk, scores.shape[1])
    top = scores.float().topk(k, dim=1)  # values, indices: (N, k)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for video, label, values, indices in zip(paths, labels_list, top.values.tolist(), top.indices.tolist()):
            writer.writerow([
                str(video),
                "" if label is None else label,
                "" if label is None or names is None else names[label],
                indices[0],
                "" if names is None else names[indices[0]],
                f"{values[0]:.7g}",
                " ".join(map(str, indices)),
                " ".join(f"{v:.7g}" for v in values),
            ])  # fmt: skip
    return path


def read_predictions_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a file written by :func:`write_predictions_csv`, typed back (``label`` is ``None`` when blank)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {
            "path": r["path"],
            "label": int(r["label"]) if r["label"] != "" else None,
            "label_name": r["label_name"],
            "pred": int(r["pred"]),
            "pred_name": r["pred_name"],
            "score": float(r["score"]),
            "topk": [int(i) for i in r["topk"].split()],
            "topk_scores": [float(v) for v in r["topk_scores"].split()],
        }
        for r in rows
    ]


def to_jsonable(obj: Any) -> Any:
    """Tensors, arrays, numpy scalars and paths as plain JSON values; NaN and inf become ``null``."""
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.ndarray | np.generic):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return _finite(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    return obj


def write_json(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write ``results`` (any mix of tensors, arrays, numbers, paths) as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(results), indent=2, allow_nan=False) + "\n")
    return path


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
