"""Checkpoints: weights_only loading of a full training state, atomic writes, latest_checkpoint, rank 0 only."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from videozoo.training import checkpoint as ckpt
from videozoo.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from videozoo.training.seeding import rng_state, set_rng_state


def training_state(seed: int = 0) -> dict:
    """Everything the trainer stores, built from real objects after one step."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model(torch.randn(2, 3, 3, 4, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": 2,
        "step": 17,
        "batches_done": 3,
        "world_size": 1,
        "batch_size": 4,
        "config": {"lr": 1e-3, "milestones": [0.5, 0.9], "amp": None, "data": "/x"},
        "rng": [rng_state()],
    }


def assert_same(a, b) -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (type(a), type(b))
    if torch.is_tensor(a):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_full_state_loads_with_weights_only(tmp_path: Path):
    state = training_state()
    path = save_checkpoint(tmp_path / "last.pt", state)
    assert path == tmp_path / "last.pt"
    assert_same(torch.load(path, weights_only=True), state)  # no pickled objects anywhere
    assert_same(load_checkpoint(path), state)


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave cached Gaussians in the states
    saved = torch.load(_bytes(rng_state()), weights_only=True)
    expected = (random.random(), random.gauss(0, 1), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    set_rng_state(saved)
    again = (random.random(), random.gauss(0, 1), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    assert expected[:4] == again[:4] and torch.equal(expected[4], again[4])


def _bytes(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_crash_during_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.pt"
    old = training_state(0)
    save_checkpoint(path, old)

    def torn_save(obj, f):  # half a file, then the "crash"
        f.write(b"PK\x03\x04 partial zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, training_state(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temporary file was removed
    assert_same(load_checkpoint(path), old)


def _die_mid_write(path: str) -> None:
    def torn_save(obj, f):
        f.write(b"PK\x03\x04 partial zip")
        f.flush()
        os._exit(9)  # like SIGKILL: no exception handler, no cleanup

    ckpt.torch.save = torn_save
    save_checkpoint(path, {"step": 2})


@pytest.mark.skipif(sys.platform != "linux", reason="uses fork")
def test_killed_writer_leaves_only_a_hidden_temporary(tmp_path: Path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})
    process = mp.get_context("fork").Process(target=_die_mid_write, args=(str(path),))
    process.start()
    process.join(30)
    assert process.exitcode == 9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.") and leftovers[0].endswith(".tmp")
    assert latest_checkpoint(tmp_path) == path
    assert load_checkpoint(path) == {"step": 1}
    save_checkpoint(path, {"step": 3})  # the next save is unaffected by the leftover
    assert load_checkpoint(path) == {"step": 3}


def test_epoch_copies_and_latest(tmp_path: Path):
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path / "last.pt", {"epoch": 1}, copies=[tmp_path / "epoch_0001.pt"])
    save_checkpoint(tmp_path / "last.pt", {"epoch": 2}, copies=[tmp_path / "epoch_0002.pt"])
    save_checkpoint(tmp_path / "last.pt", {"epoch": 2, "step": 5})
    assert load_checkpoint(tmp_path / "epoch_0001.pt") == {"epoch": 1}  # later saves never touch a copy
    assert load_checkpoint(tmp_path / "epoch_0002.pt") == {"epoch": 2}
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "last.pt").unlink()
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch_0002.pt"


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(ckpt, "is_main_process", lambda: False)
    assert save_checkpoint(tmp_path / "last.pt", {"step": 1}) is None
    assert not (tmp_path / "last.pt").exists()


def test_unreadable_checkpoint_says_what_to_do(tmp_path: Path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="resume=False"):
        load_checkpoint(tmp_path / "last.pt")
