"""Frame orders of a given edit distance, and CACL's shuffle-degree labels.

Paper: Guo et al. Cross-Architecture Self-supervised Video Representation Learning (CACL). CVPR 2022. A clip of
``T`` frames is shown beside a shuffled copy; the network predicts the Levenshtein distance between the frame
order and the identity ("shuffle degree"). The official code shuffles ``n ~ U{1..T}`` random positions and
measures the distance afterwards; videozoo draws the distance first and builds an order with exactly that distance.

Which distances exist (identity vs a permutation of ``T`` distinct symbols, unit-cost insert/delete/substitute):
``{0}`` for ``T <= 1``, ``{0, 2}`` for ``T`` = 2 or 3, and ``{0, 2, 3, ..., T}`` for ``T >= 4``. Distance 1 never
occurs (one edit either changes the length or duplicates a symbol) and ``T`` substitutions always suffice.
So 16 frames give 15 distances plus the identity: 16 classes, label ``max(distance - 1, 0)``.

Construction (proof: docs/methods/cacl.md). For an alignment whose exact matches are the increasing subsequence
``M`` of the order (element ``j`` displaced by ``δ_j = position - value``), the cost is
``T - |M| + ½·TV(0, δ_1, ..., δ_k, 0)`` (TV: total variation of the displacement path). Hence moving a set ``S``
of positions by a rank pattern ``P`` costs exactly ``|S|`` whenever, for every ``t >= 0``, the moved elements with
``|δ| <= t`` contain no increasing run longer than ``t`` — and that survives any spacing of ``S``. Patterns used:
the reversal (even sizes), ``[2, 4, 3, 0, 1]`` (size 5), the reversal with its first and middle entries swapped
(odd sizes >= 7), each under a random symmetry (inverse, reverse-complement); distance 3 is a 3-cycle on three
positions that are not consecutive. The support ``S`` is a uniformly random set of positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from einops import rearrange

__all__ = [
    "ORDER_MODES",
    "achievable_distances",
    "apply_order",
    "distance_of_label",
    "edit_distance",
    "label_of_distance",
    "num_shuffle_classes",
    "permutation_with_distance",
    "sample_orders",
]

OrderMode = Literal["distance", "positions", "permutation"]
ORDER_MODES = ("distance", "positions", "permutation")


# -- distances and labels -----------------------------------------------------------------------------------------
def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences of hashable items (unit-cost insert, delete, substitute)."""
    previous = list(range(len(b) + 1))  # row i-1 of the DP table: distance of a[:i-1] to every prefix of b
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def achievable_distances(length: int) -> tuple[int, ...]:
    """Edit distances between the identity of ``length`` distinct symbols and its permutations, ascending."""
    if length <= 1:
        return (0,)
    if length <= 3:
        return (0, 2)
    return (0, *range(2, length + 1))


def num_shuffle_classes(length: int) -> int:
    """Classes of the shuffle-degree head for clips of ``length`` frames (16 for 16 frames)."""
    return len(achievable_distances(length))


def label_of_distance(distance: int) -> int:
    """CACL's label: the distance, minus one when positive (distance 1 cannot occur)."""
    return max(distance - 1, 0)


def distance_of_label(label: int) -> int:
    return label + 1 if label > 0 else 0


# -- the construction ---------------------------------------------------------------------------------------------
def _pattern(size: int, symmetry: int) -> list[int]:
    """A rank pattern of ``size`` elements, none fixed, whose edit distance stays ``size`` under any spacing."""
    if size % 2 == 0:
        pattern = list(range(size - 1, -1, -1))  # reversal: its own inverse and reverse-complement
    elif size == 5:
        pattern = [2, 4, 3, 0, 1]
    else:  # odd >= 7: the reversal fixes its middle; swapping it with the first entry moves everything
        pattern = list(range(size - 1, -1, -1))
        mid = size // 2
        pattern[0], pattern[mid] = pattern[mid], pattern[0]
    if symmetry & 1:  # inverse: increasing runs and |displacements| are preserved
        inverse = [0] * size
        for i, r in enumerate(pattern):
            inverse[r] = i
        pattern = inverse
    if symmetry & 2:  # reverse-complement: the same, read from the other end
        pattern = [size - 1 - r for r in reversed(pattern)]
    return pattern


def permutation_with_distance(length: int, distance: int, *, generator: torch.Generator | None = None) -> list[int]:
    """A random order of ``length`` frames whose Levenshtein distance from ``range(length)`` is exactly ``distance``.

    ``order[i]`` is the frame shown at position ``i`` (``clip[:, order]``). One pass, no retrying: a random set of
    ``distance`` positions (3 non-consecutive positions for distance 3) is rearranged by a pattern that provably
    keeps the distance at the size of the set (module docstring). Raises ``ValueError`` for a distance that no
    order of this length has (see :func:`achievable_distances`). ``generator`` (CPU) makes it reproducible.
    """
    allowed = achievable_distances(length)
    if distance not in allowed:
        raise ValueError(
            f"no order of {length} frames has edit distance {distance} from the identity; achievable: "
            f"{_describe(allowed)} (distance 1 never occurs, at most {length})"
        )
    order = list(range(length))
    if distance == 0:
        return order
    if distance == 3:
        support = sorted(torch.randperm(length, generator=generator)[:3].tolist())
        if support[2] - support[0] == 2:  # consecutive: a 3-cycle there costs only 2, so spread them out
            if support[2] + 1 < length:
                support[2] += 1
            else:
                support[0] -= 1  # length >= 4, so there is room on the left
        pattern = [[1, 2, 0], [2, 0, 1]][int(torch.randint(2, (), generator=generator))]
    else:
        support = sorted(torch.randperm(length, generator=generator)[:distance].tolist())
        pattern = _pattern(distance, int(torch.randint(4, (), generator=generator)))
    for i, r in enumerate(pattern):
        order[support[i]] = support[r]
    return order


def _describe(distances: tuple[int, ...]) -> str:
    return "0" if len(distances) == 1 else f"0 and {distances[1]}..{distances[-1]}"


# -- batches of orders --------------------------------------------------------------------------------------------
def _positions_order(length: int, generator: torch.Generator | None) -> list[int]:
    """The official CACL shuffle: n ~ U{1..T}; n = 1 is the identity, else n random positions are shuffled."""
    n = int(torch.randint(1, length + 1, (), generator=generator))
    order = list(range(length))
    if n == 1:
        return order
    picked = torch.randperm(length, generator=generator)[:n].tolist()
    for dst, src in zip(picked, torch.randperm(n, generator=generator).tolist()):
        order[dst] = picked[src]
    return order


def sample_orders(
    count: int, length: int, *, mode: OrderMode = "distance", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` frame orders ``(count, length)`` long and their shuffle-degree labels ``(count,)`` long.

    ``mode``: ``"distance"`` (videozoo, the paper's uniform degrees): label ~ U{0..classes-1}, then an order with
    that distance; ``"positions"``: the official CACL dataset (shuffle ``n ~ U{1..T}`` random positions);
    ``"permutation"``: a uniformly random order (the official shuffle-degree-only script, ``uniform_sdp=False``).
    The last two measure the distance with :func:`edit_distance`.
    """
    if mode not in ORDER_MODES:
        raise ValueError(f"mode must be one of {ORDER_MODES}, got {mode!r}")
    orders, labels = [], []
    for _ in range(count):
        if mode == "distance":
            label = int(torch.randint(num_shuffle_classes(length), (), generator=generator))
            order = permutation_with_distance(length, distance_of_label(label), generator=generator)
        else:
            order = (
                _positions_order(length, generator)
                if mode == "positions"
                else torch.randperm(length, generator=generator).tolist()
            )
            label = label_of_distance(edit_distance(range(length), order))
        orders.append(order)
        labels.append(label)
    return torch.tensor(orders, dtype=torch.long).reshape(count, length), torch.tensor(labels, dtype=torch.long)


def apply_order(clips: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Reorder the frames of ``clips`` (B, C, T, H, W) by ``orders`` (B, T): frame ``orders[b, i]`` goes to ``i``."""
    index = rearrange(orders.to(clips.device), "b t -> b 1 t 1 1")
    return torch.take_along_dim(clips, index, dim=2)  # (B, C, T, H, W)
