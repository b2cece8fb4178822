"""What a person watches during training: a tqdm bar and TensorBoard scalars, on rank 0 only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["Monitor", "scalars_of"]


class Monitor:
    """A progress bar (``progress``) and a TensorBoard ``SummaryWriter`` (``log_dir``); inert off rank 0.

    ``purge_step`` is the step a resumed run restarts from: TensorBoard then hides what the killed run
    logged after its last checkpoint, so the curves have no doubled stretch.
    """

    def __init__(
        self,
        *,
        main: bool,
        total: int,
        initial: int = 0,
        progress: bool = True,
        log_dir: str | Path | None = None,
        purge_step: int | None = None,
    ) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not (progress and main), dynamic_ncols=True, unit="step")
        self.writer = None
        if log_dir is not None and main:
            from torch.utils.tensorboard import SummaryWriter  # imported late: it takes a second

            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def advance(self) -> None:
        self.bar.update(1)

    def log(self, step: int, scalars: Mapping[str, float], *, prefix: str = "train/", **postfix: Any) -> None:
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(prefix + name, value, step)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def scalars_of(logs: Mapping[str, Any]) -> dict[str, float]:
    """The entries of a method's ``logs`` that are numbers or one-element tensors, as floats.

    NaN means "not measured at this step" and is left out: a method on the GPU reports a value that only
    sometimes exists (CoCLR's ``mined_precision``) as NaN rather than branch on the device's data.
    """
    out = {}
    for name, value in logs.items():
        scalar = isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1)
        if scalar and not math.isnan(value := float(value)):
            out[name] = value
    return out
