"""Feeding the trainer: the epoch's batches to persistent workers, batches to the device ahead of use, and data
errors that say where they happened."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

__all__ = [
    "DataLoadingError",
    "DevicePrefetcher",
    "EpochBatchSampler",
    "batches_of_epoch",
    "channels_last_3d",
    "to_device",
]


class EpochBatchSampler:
    """The batch sampler of a persistent DataLoader: the trainer refills it with each epoch's batches.

    It yields lists of ``(epoch, index)`` keys, which :class:`~videozoo.training.SeededDataset` draws under a seed
    of its own, so a worker started at epoch 0 serves epoch 5 with epoch 5's augmentations and never needs to be
    told the epoch (re-creating the workers each epoch, which set_epoch needed, cost seconds at every epoch start).
    The loader iterates it in the main process, once per ``iter(loader)``, after :meth:`set_epoch`.
    """

    def __init__(self) -> None:
        self.epoch, self.batches = 0, []

    def set_epoch(self, epoch: int, batches: list[list[int]]) -> None:
        """The batches (sample indices) still to load in ``epoch``: a resumed epoch starts mid-list."""
        self.epoch, self.batches = int(epoch), list(batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in self.batches:
            yield [(epoch, int(i)) for i in batch]

    def __len__(self) -> int:
        return len(self.batches)


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
            raise DataLoadingError(
                f"loading batch {index} of epoch {epoch} failed{_describe(e)} "
                "(the dataset's traceback is printed above)"
            ) from e
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
    batch = _map_tensors(batch, lambda t: t.to(device, non_blocking=True))
    return channels_last_3d(batch) if channels_last else batch


def channels_last_3d(batch: Any) -> Any:
    """Every floating clip (5-D or more) of a (nested) batch in channels-last-3d layout; other entries as they are."""

    def convert(t: torch.Tensor) -> torch.Tensor:
        if t.dim() >= 5 and t.is_floating_point():
            # (..., C, T, H, W) stored with C innermost: channels-last-3d for 5-D clips, and for multi-view
            # (B, V, C, T, H, W) batches every view slice and the (B*V, C, T, H, W) flattening are too
            return t.movedim(-4, -1).contiguous().movedim(-1, -4)
        return t

    return _map_tensors(batch, convert)


def _map_tensors(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if torch.is_tensor(batch):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_map_tensors(v, fn) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def _tensors(batch: Any) -> Iterator[torch.Tensor]:
    if torch.is_tensor(batch):
        yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, (list, tuple)):
        for v in batch:
            yield from _tensors(v)


class DevicePrefetcher:
    """Batches on ``device``, the next one copied while the current one trains (CUDA); on other devices a plain move.

    On CUDA the copy of batch k+1 is queued on a side stream (from pinned memory, ``non_blocking``) before batch k
    is handed out, so it overlaps batch k's step; the compute stream waits for the copy only when it uses the
    batch, and ``record_stream`` keeps the allocator from reusing the copy's memory early. Elsewhere nothing is
    read ahead: a batch is moved when it is asked for, and a loading error surfaces at the batch that caused it.
    """

    def __init__(self, batches: Iterable[Any], *, device: torch.device, channels_last: bool = False) -> None:
        self.batches, self.device, self.channels_last = batches, torch.device(device), channels_last
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __iter__(self) -> Iterator[Any]:
        if self.stream is None:
            for batch in self.batches:
                yield to_device(batch, self.device, channels_last=self.channels_last)
            return
        iterator = iter(self.batches)
        try:
            pending = self._copy(next(iterator))
        except StopIteration:
            return
        for batch in iterator:
            ready, pending = pending, self._copy(batch)
            yield self._wait(ready)
        yield self._wait(pending)

    def _copy(self, batch: Any) -> Any:
        with torch.cuda.stream(self.stream):
            return to_device(batch, self.device, channels_last=self.channels_last)

    def _wait(self, batch: Any) -> Any:
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        for tensor in _tensors(batch):
            if tensor.device.type == "cuda":
                tensor.record_stream(current)
        return batch
