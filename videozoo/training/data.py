"""Feeding the trainer: batches to the device, and data errors that say where they happened."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["DataLoadingError", "batches_of_epoch", "to_device"]


class DataLoadingError(RuntimeError):
    """Loading a batch failed (in the main process or a DataLoader worker); the cause is chained."""


def batches_of_epoch(loader: Iterable[Any], *, epoch: int, first: int = 0) -> Iterator[Any]:
    """Yield the loader's batches; a failure becomes a :class:`DataLoadingError` naming epoch and batch.

    Bad videos do not get here: videozoo's datasets replace a sample that fails to decode. What does
    get here (a dataset bug, every retry failing, a worker killed by the OOM killer) stops the run with
    a message instead of a hang; the last checkpoint is intact and the run resumes from it.
    """
    iterator = iter(loader)
    index = first
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            raise DataLoadingError(f"loading batch {index} of epoch {epoch} failed{_describe(e)} "
                                   "(the dataset's traceback is printed above)") from e
        yield batch
        index += 1


def _describe(error: Exception) -> str:
    """``: ValueError: msg``, or `` in DataLoader worker process 0: ValueError: msg`` for a worker's error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[1].startswith("Original Traceback"):  # torch's wrapped worker exception
        where = lines[0].split(" in ", 1)[-1].rstrip(".")
        return f" in {where}: {lines[-1]}"
    return f": {type(error).__name__}: {lines[0] if lines else ''}"


def to_device(batch: Any, device: torch.device, *, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; clips (5-D or more) optionally channels-last."""
    if torch.is_tensor(batch):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() >= 5 and batch.is_floating_point():
            # (..., C, T, H, W) stored with C innermost: channels-last-3d for 5-D clips, and for multi-view
            # (B, V, C, T, H, W) batches every view slice and the (B*V, C, T, H, W) flattening are too
            batch = batch.movedim(-4, -1).contiguous().movedim(-1, -4)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last=channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, channels_last=channels_last) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch
