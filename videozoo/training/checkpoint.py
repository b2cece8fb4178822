"""Atomic training checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is one file holding everything a run needs to continue exactly (the trainer fills it):
``model``, ``optimizer``, ``scheduler``, ``scaler`` state dicts, ``epoch``, ``step`` (global),
``batches_done`` (in the epoch), ``config`` and ``rng`` (one snapshot per rank), all tensors and plain
python types, never pickled objects. ``<ckpt_dir>/last.pt`` is the one to resume from; with
``keep_epoch_checkpoints`` every epoch also leaves ``epoch_0001.pt``, ... (hard links, no second write).

A write goes to a temporary file in the same directory, is flushed and fsynced, and only then renamed
over the old file (``os.replace`` is atomic on POSIX and Windows), and the directory is fsynced so the
rename survives a power cut. A crash at any moment leaves the previous checkpoint whole; a leftover
temporary file is hidden (``.last.pt.*.tmp``) and never read.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from videozoo.distributed import is_main_process

__all__ = [
    "LAST",
    "atomic_write_bytes",
    "epoch_checkpoint_name",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
]

LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")


def epoch_checkpoint_name(epoch: int) -> str:
    """``epoch_0003.pt`` for the state after ``epoch`` epochs."""
    return f"epoch_{epoch:04d}.pt"


def save_checkpoint(
    path: str | os.PathLike[str], state: Mapping[str, Any], *, copies: Iterable[str | os.PathLike[str]] = ()
) -> Path | None:
    """Write ``state`` to ``path`` atomically; ``copies`` get the same bytes (hard-linked when possible).

    Only the main process (rank 0) writes; other ranks return ``None`` at once. Everything in ``state``
    must be loadable with ``weights_only=True``: tensors, numbers, strings, None, lists/tuples/dicts.
    """
    if not is_main_process():
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        for copy in copies:
            _publish_copy(Path(tmp), Path(copy))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename (used for ``config.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs on load); every rank may call it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {e}. Files written by save_checkpoint are "
            "never partial; move this one away (or pass resume=False) to start over."
        ) from e


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """``<directory>/last.pt`` if present, else the highest ``epoch_NNNN.pt``, else ``None``."""
    directory = Path(directory)
    if (directory / LAST).is_file():
        return directory / LAST
    epochs = [(int(m.group(1)), p) for p in directory.glob("epoch_*.pt") if (m := _EPOCH_FILE.match(p.name))]
    return max(epochs)[1] if epochs else None


def _publish_copy(tmp: Path, copy: Path) -> None:
    staged = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged)
    try:
        os.link(tmp, staged)  # same inode: the copy costs no second write
    except OSError:  # filesystems without hard links
        shutil.copyfile(tmp, staged)
    os.replace(staged, copy)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows; the rename is durable there
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
