"""Linear probe on synthetic features: near-perfect when separable, chance on random labels, wd sweep."""

from __future__ import annotations

import pytest
import torch

from videozoo.eval.linear_probe import linear_probe

FAST = {"epochs": 15, "batch_size": 128, "lr": 0.5}


def blobs(n: int, *, dim: int = 16, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated Gaussian clusters: class centres 4σ apart on average, unit noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 4
    labels = torch.arange(n) % classes
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_separable_features_are_learned() -> None:
    train_x, train_y = blobs(400)
    test_x, test_y = blobs(200, seed=1)
    result = linear_probe(train_x, train_y, test_x, test_y, **FAST)
    assert result.accuracy >= 0.97
    assert result.top5 == 1.0  # 4 classes: top-5 covers all
    assert isinstance(result.classifier[0], torch.nn.BatchNorm1d)  # BN → linear, CoCLR's probe
    assert (result.predict(test_x).argmax(dim=1) == test_y).float().mean().item() == pytest.approx(result.accuracy)


def test_random_labels_give_chance() -> None:
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(1000, 16, generator=g), torch.randn(1000, 16, generator=g)
    train_y, test_y = torch.randint(0, 4, (1000,), generator=g), torch.randint(0, 4, (1000,), generator=g)
    result = linear_probe(train_x, train_y, test_x, test_y, **FAST)
    assert 0.17 <= result.accuracy <= 0.33  # chance is 0.25; 0.08 is > 5 standard errors


def test_options_and_determinism() -> None:
    train_x, train_y = blobs(200)
    test_x, test_y = blobs(100, seed=1)
    kw = {**FAST, "schedule": "cosine", "normalize": True, "bn": False, "eval_every": 5}
    a = linear_probe(train_x, train_y, test_x, test_y, **kw)
    b = linear_probe(train_x, train_y, test_x, test_y, **kw)
    assert a.accuracy == b.accuracy and torch.equal(a.classifier.weight, b.classifier.weight)
    assert [h["epoch"] for h in a.history] == [5, 10, 15]
    with pytest.raises(ValueError, match="schedule"):
        linear_probe(train_x, train_y, test_x, test_y, **{**FAST, "schedule": "linear"})


def test_weight_decay_sweep_on_validation_split() -> None:
    train_x, train_y = blobs(300)
    test_x, test_y = blobs(100, seed=1)
    result = linear_probe(train_x, train_y, test_x, test_y, weight_decay=(1e-4, 1e-3, 3.0), **FAST)
    assert set(result.sweep) == {1e-4, 1e-3, 3.0}
    assert result.sweep[3.0] < max(result.sweep.values())  # a decay that strong shrinks the classifier away
    assert result.weight_decay in (1e-4, 1e-3)
    assert result.accuracy >= 0.95
