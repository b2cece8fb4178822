"""Schedules as plain functions of training progress (the fraction of steps done, 0 → 1).

The trainer evaluates them before every step: an LR schedule gives the multiplier of each parameter
group's base learning rate; ``schedules={"momentum": ...}`` gives values passed to the method as
keyword arguments. Being functions of progress (step / (epochs × steps per epoch)), they need no state
in the checkpoint, and stopping early with ``max_steps`` does not change them. Milestones are fractions too:
CoCLR's drops at epochs 250 and 280 of 300 are ``multistep(milestones=(250 / 300, 280 / 300))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["constant", "cosine", "momentum_cosine", "multistep", "warmup_multistep"]

Schedule = Callable[[float], float]


def _warmup(progress: float, warmup: float) -> float:
    return progress / warmup if warmup > 0 and progress < warmup else 1.0


def constant(value: float = 1.0, *, warmup: float = 0.0) -> Schedule:
    """``value``, after an optional linear warm-up over the first ``warmup`` fraction (STiCA: 10/151)."""
    return lambda p: value * _warmup(p, warmup)


def cosine(*, final: float = 0.0, warmup: float = 0.0) -> Schedule:
    """Linear warm-up, then half a cosine from 1 down to ``final`` at the end (CACL)."""

    def schedule(p: float) -> float:
        if warmup > 0 and p < warmup:
            return p / warmup
        t = (p - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))

    return schedule


def multistep(*, milestones: Sequence[float], gamma: float = 0.1, warmup: float = 0.0) -> Schedule:
    """Multiply by ``gamma`` at every milestone passed (CoCLR: ×0.1 at 250/300 and 280/300)."""
    points = sorted(milestones)
    return lambda p: _warmup(p, warmup) * gamma ** sum(p >= m for m in points)


def momentum_cosine(*, base: float = 0.996, final: float = 1.0) -> Schedule:
    """A momentum rising from ``base`` to ``final`` along a half cosine (BYOL/DINO); MoCo keeps it constant."""
    return lambda p: final - (final - base) * 0.5 * (1.0 + math.cos(math.pi * min(max(p, 0.0), 1.0)))


def warmup_multistep(
    *,
    warmup: float,
    start: float = 0.0,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    epochs: int | None = None,
) -> Schedule:
    """Linear warm-up from ``start`` to 1 over the first ``warmup`` fraction, then ×``gamma`` at every milestone.

    STiCA (main_stica.py:114-127): ``start`` = 0.01 / 0.64, warm-up 10 of 151 epochs set every step, no milestones.
    ``epochs`` makes the warm-up a staircase, one value per epoch, as GDT's ``GradualWarmupScheduler`` stepped
    once per epoch (main_gdt.py:164-168, 248-249): epoch ``e`` of the warm-up runs at ``start + (1 − start)·e/E``.
    """
    points = sorted(milestones)

    def schedule(p: float) -> float:
        if warmup > 0 and p < warmup:
            if epochs:
                p = math.floor(p * epochs + 1e-9) / epochs
            return start + (1.0 - start) * p / warmup
        return gamma ** sum(p >= m for m in points)

    return schedule
