"""Top-k, per-class accuracy and confusion matrix against hand-computed values; the PNG, CSV and JSON files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from videozoo.eval.metrics import (
    classification_report,
    confusion_matrix,
    per_class_accuracy,
    plot_confusion_matrix,
    read_predictions_csv,
    topk_accuracy,
    write_json,
    write_predictions_csv,
)

# 4 videos, 3 classes. Ranked classes per row: [1, 2, 0], [0, 1, 2], [2, 1, 0], [0, 2, 1].
SCORES = torch.tensor(
    [
        [0.1, 0.7, 0.2],  # label 1: top-1 hit
        [0.5, 0.3, 0.2],  # label 2: missed until top-3
        [0.2, 0.3, 0.5],  # label 1: top-2 hit
        [0.6, 0.1, 0.3],  # label 0: top-1 hit
    ]
)
LABELS = [1, 2, 1, 0]
NAMES = ["walk", "run", "jump"]


def test_topk_by_hand() -> None:
    acc = topk_accuracy(SCORES, LABELS, ks=(1, 2, 3, 5))
    assert acc == pytest.approx({"top1": 0.5, "top2": 0.75, "top3": 1.0, "top5": 1.0})  # k = 5 clamps to 3


def test_confusion_and_per_class_by_hand() -> None:
    preds = SCORES.argmax(dim=1)  # [1, 0, 2, 0]
    matrix = confusion_matrix(preds, LABELS, num_classes=3)
    expected = [[1, 0, 0], [0, 1, 1], [1, 0, 0]]  # rows: true class, columns: predicted
    assert matrix.tolist() == expected
    per_class = per_class_accuracy(preds, LABELS, num_classes=4)  # class 3 has no video
    assert per_class[:3].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert math.isnan(per_class[3])


def test_report() -> None:
    report = classification_report(SCORES, LABELS, class_names=NAMES, ks=(1, 2))
    assert report["num_videos"] == 4
    assert report["top1"] == pytest.approx(0.5) and report["top2"] == pytest.approx(0.75)
    assert report["mean_class_accuracy"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert report["per_class_accuracy"] == pytest.approx({"walk": 1.0, "run": 0.5, "jump": 0.0})


def test_confusion_png_is_a_png(tmp_path) -> None:
    import matplotlib.image

    matrix = confusion_matrix(SCORES.argmax(dim=1), LABELS, num_classes=3)
    path = plot_confusion_matrix(matrix, tmp_path / "plots" / "confusion.png", class_names=NAMES, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    many = plot_confusion_matrix(torch.eye(30, dtype=torch.long), tmp_path / "ucf.png", normalize=False)
    assert many.stat().st_size > 0


def test_predictions_csv_round_trip(tmp_path) -> None:
    paths = [f"videos/{i}.mp4" for i in range(4)]
    path = write_predictions_csv(
        tmp_path / "p.csv", paths=paths, scores=SCORES, labels=LABELS, class_names=NAMES, topk=2
    )
    rows = read_predictions_csv(path)
    assert [r["path"] for r in rows] == paths
    assert [r["label"] for r in rows] == LABELS
    assert [r["pred"] for r in rows] == [1, 0, 2, 0]
    assert rows[0]["pred_name"] == "run" and rows[1]["label_name"] == "jump"
    assert rows[2]["topk"] == [2, 1] and rows[2]["topk_scores"] == pytest.approx([0.5, 0.3])
    assert [r["score"] for r in rows] == pytest.approx([0.7, 0.5, 0.5, 0.6])
    unlabelled = read_predictions_csv(write_predictions_csv(tmp_path / "u.csv", paths=paths, scores=SCORES))
    assert all(r["label"] is None and r["pred_name"] == "" for r in unlabelled)


def test_json_writer(tmp_path) -> None:
    results = {"acc": torch.tensor(0.25), "curve": np.arange(3), "missing": float("nan"), "where": tmp_path}
    data = json.loads(write_json(tmp_path / "r.json", results).read_text())
    assert data == {"acc": 0.25, "curve": [0, 1, 2], "missing": None, "where": str(tmp_path)}
