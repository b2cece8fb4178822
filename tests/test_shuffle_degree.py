"""Frame orders of an exact edit distance and CACL's shuffle-degree labels, checked against rapidfuzz's Levenshtein.

The achievable distances are found by enumerating every permutation of 2..8 frames; the construction is checked
over its whole random space (every support, every symmetry) for up to 9 frames and by sampling for 4..32.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from rapidfuzz.distance import Levenshtein

from videozoo.methods.cacl import edit_distance, permutation_with_distance
from videozoo.methods.shuffle import (
    _pattern,
    achievable_distances,
    apply_order,
    distance_of_label,
    label_of_distance,
    num_shuffle_classes,
    sample_orders,
)


def lev(order: list[int]) -> int:
    """The reference: rapidfuzz's Levenshtein distance of ``order`` from the identity."""
    return Levenshtein.distance(list(range(len(order))), list(order))


@pytest.mark.parametrize("length", range(1, 9))
def test_achievable_distances_match_exhaustive_enumeration(length: int) -> None:
    found = {lev(list(p)) for p in itertools.permutations(range(length))}
    assert tuple(sorted(found)) == achievable_distances(length)
    if length >= 4:  # 1 never (one edit changes the length or duplicates a frame), the length always
        assert found == {0, *range(2, length + 1)}


@pytest.mark.parametrize("length", range(4, 10))
def test_construction_is_exact_over_its_whole_random_space(length: int) -> None:
    identity = list(range(length))
    for distance in range(2, length + 1):
        for support in itertools.combinations(range(length), distance if distance != 3 else 3):
            patterns = (
                [[1, 2, 0], [2, 0, 1]] if distance == 3 else [_pattern(distance, symmetry) for symmetry in range(4)]
            )
            if distance == 3 and support[2] - support[0] == 2:
                continue  # never drawn: consecutive positions are spread first
            for pattern in patterns:
                order = identity.copy()
                for i, r in enumerate(pattern):
                    order[support[i]] = support[r]
                assert lev(order) == distance, (length, distance, support, pattern)


@pytest.mark.parametrize("length", range(4, 33))
def test_permutation_with_distance_is_exact_for_every_achievable_distance(length: int) -> None:
    generator = torch.Generator().manual_seed(length)
    for distance in achievable_distances(length):
        for _ in range(4):
            order = permutation_with_distance(length, distance, generator=generator)
            assert sorted(order) == list(range(length))
            assert lev(order) == distance, (length, distance, order)


def test_permutation_with_distance_tiny_lengths_and_errors() -> None:
    assert permutation_with_distance(1, 0) == [0]
    assert permutation_with_distance(2, 2) == [1, 0]
    assert lev(permutation_with_distance(3, 2)) == 2
    for length, distance in ((16, 1), (16, 17), (3, 3), (16, -1)):
        with pytest.raises(ValueError, match="achievable"):
            permutation_with_distance(length, distance)


def test_permutation_with_distance_is_deterministic_with_a_generator_and_varied() -> None:
    def draws(seed: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        return [permutation_with_distance(16, d, generator=generator) for d in range(2, 17) for _ in range(3)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)
    generator = torch.Generator().manual_seed(0)
    assert len({tuple(permutation_with_distance(16, 4, generator=generator)) for _ in range(50)}) > 40


def test_edit_distance_equals_rapidfuzz() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        a = torch.randint(0, 5, (int(torch.randint(0, 9, (), generator=generator)),), generator=generator).tolist()
        b = torch.randint(0, 5, (int(torch.randint(0, 9, (), generator=generator)),), generator=generator).tolist()
        assert edit_distance(a, b) == Levenshtein.distance(a, b)
    assert edit_distance("kitten", "sitting") == 3


def test_labels_16_classes_for_16_frames() -> None:
    assert num_shuffle_classes(16) == 16
    assert [label_of_distance(d) for d in achievable_distances(16)] == list(range(16))
    assert [distance_of_label(label) for label in range(16)] == list(achievable_distances(16))
    assert label_of_distance(0) == 0 and label_of_distance(2) == 1 and label_of_distance(16) == 15


@pytest.mark.parametrize("mode", ["distance", "positions", "permutation"])
def test_sample_orders_labels_are_the_levenshtein_labels(mode: str) -> None:
    orders, labels = sample_orders(300, 16, mode=mode, generator=torch.Generator().manual_seed(1))
    assert orders.shape == (300, 16) and labels.shape == (300,) and orders.dtype == labels.dtype == torch.long
    for order, label in zip(orders.tolist(), labels.tolist()):
        assert sorted(order) == list(range(16))
        assert label == label_of_distance(lev(order))
    if mode == "distance":  # uniform over the 16 classes
        assert set(labels.tolist()) == set(range(16))
    if mode == "permutation":  # random permutations are far from the identity
        assert labels.float().mean() > 10


def test_apply_order_moves_frames() -> None:
    clips = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 1, 4, 1, 1).expand(2, 3, 4, 2, 2)  # (B, C, T, H, W)
    orders = torch.tensor([[3, 2, 1, 0], [0, 2, 1, 3]])
    out = apply_order(clips, orders)
    assert out.shape == clips.shape
    assert out[0, 0, :, 0, 0].tolist() == [3.0, 2.0, 1.0, 0.0]
    assert out[1, 2, :, 1, 1].tolist() == [4.0, 6.0, 5.0, 7.0]


def longest_increasing(values: list[int]) -> int:
    best: list[int] = []  # patience sorting: best[i] = smallest tail of an increasing run of length i + 1
    for v in values:
        i = next((j for j, tail in enumerate(best) if tail >= v), len(best))
        best[i : i + 1] = [v]
    return len(best)


@pytest.mark.parametrize("size", [2, *range(4, 65)])
def test_patterns_satisfy_the_condition_of_the_proof(size: int) -> None:
    """No fixed point, and for every t the elements displaced by at most t hold no increasing run longer than t."""
    for symmetry in range(4):
        pattern = _pattern(size, symmetry)
        assert sorted(pattern) == list(range(size))
        shift = [abs(i - r) for i, r in enumerate(pattern)]
        assert min(shift) >= 1
        for t in range(1, size + 1):
            assert longest_increasing([r for i, r in enumerate(pattern) if shift[i] <= t]) <= t, (size, symmetry, t)
