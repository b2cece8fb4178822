"""The Trainer on a toy MoCo: exact resume after SIGKILL, DDP (gloo) = one process, TensorBoard, data errors.

The toy method has what makes resuming hard: a momentum encoder and a queue in buffers, dropout (so the
main process's RNG matters), a momentum schedule and an LR schedule; the toy dataset draws its
augmentations from python's ``random``, numpy's global RNG and torch at once.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videozoo.losses import FeatureQueue
from videozoo.losses.queue import MomentumEncoder
from videozoo.training import (
    DataLoadingError,
    SeededDataset,
    Trainer,
    epoch_batches,
    load_checkpoint,
    schedules,
    summary_line,
)

try:  # tests/ as a package or as a plain directory on sys.path
    from .dist_utils import run_two_process
except ImportError:
    from dist_utils import run_two_process

TESTS = Path(__file__).resolve().parent


class ToyClips(torch.utils.data.Dataset):
    """``n`` fixed clips; each item is two views augmented with python, numpy and torch randomness."""

    def __init__(self, n: int = 40, *, fail_at: int | None = None) -> None:
        self.clips = torch.randn(n, 3, 2, 6, 6, generator=torch.Generator().manual_seed(123))
        self.fail_at = fail_at

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        if i == self.fail_at:
            raise ValueError(f"sample {i} is broken")
        views = []
        for _ in range(2):
            x = self.clips[i].flip(-1) if random.random() < 0.5 else self.clips[i]
            views.append(x * float(np.random.uniform(0.8, 1.2)) + 0.1 * torch.randn_like(x))
        return {"video": torch.stack(views), "index": i}  # video (2, C, T, H, W)


class ToyMoCo(nn.Module):
    """MoCo in miniature: conv encoder with dropout, momentum copy, queue of keys, InfoNCE."""

    def __init__(self, *, dropout: float = 0.2, dim: int = 8, queue: int = 12) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv3d(3, 6, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(6, dim),
        )
        self.key_encoder = MomentumEncoder(self.encoder)
        self.queue = FeatureQueue(size=queue, dim=dim)
        self.calls, self.stall_at, self.marker = 0, None, None  # test hooks: freeze at a step to be killed

    def forward(self, batch: dict, *, momentum: float) -> dict:
        self.calls += 1
        if self.calls == self.stall_at:
            Path(self.marker).touch()
            time.sleep(300)
        video = batch["video"]  # (B, 2, C, T, H, W)
        q = F.normalize(self.encoder(video[:, 0]), dim=1)
        self.key_encoder.update(self.encoder, momentum=momentum)
        k = F.normalize(self.key_encoder(video[:, 1]), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.features.clone().T], dim=1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
        self.queue.enqueue(k)
        return {"loss": loss, "logs": {"pos_sim": (q * k).sum(1).mean().detach(), "momentum": momentum}}

    def export_backbone(self) -> nn.Module:
        return self.encoder


def make_trainer(*, n: int = 40, batch_size: int = 4, dropout: float = 0.2, sgd: bool = False, **kwargs) -> Trainer:
    torch.manual_seed(0)
    method = ToyMoCo(dropout=dropout)
    if sgd:
        optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(method.parameters(), lr=0.05, weight_decay=1e-3)
    options = {
        "epochs": 3,
        "lr_schedule": schedules.cosine(warmup=0.2),
        "seed": 7,
        "progress": False,
        "schedules": {"momentum": schedules.momentum_cosine(base=0.9)},
        **kwargs,
    }
    return Trainer(method=method, optimizer=optimizer, dataset=ToyClips(n), batch_size=batch_size, **options)


def train(
    ckpt_dir: str,
    *,
    steps: int,
    workers: int = 0,
    threads: int | None = None,
    stall_at: int | None = None,
    marker: str | None = None,
) -> dict:
    """Module level: run in this process, in a forked child, or in a fresh interpreter."""
    if threads:
        torch.set_num_threads(threads)
    trainer = make_trainer(ckpt_dir=ckpt_dir, ckpt_every_steps=3, num_workers=workers, max_steps=steps)
    trainer.method.stall_at, trainer.method.marker = stall_at, marker
    return trainer.fit()


def assert_same(a, b, path: str = "") -> None:
    """Recursive bit-exact equality of checkpoint contents."""
    if torch.is_tensor(a):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


# -- exact resume ------------------------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter importing torch for the resumed run
@pytest.mark.skipif(sys.platform != "linux", reason="forks the run to be killed")
def test_resume_after_sigkill_is_bit_exact(tmp_path: Path):
    # One intra-op thread everywhere: a child forked after OpenMP ran with more hangs in GNU OpenMP,
    # and the three runs must do the same arithmetic anyway.
    threads = 1
    previous = torch.get_num_threads()
    try:
        reference = train(str(tmp_path / "ref"), steps=14, threads=threads)  # 10 steps per epoch: ends in epoch 1
    finally:
        torch.set_num_threads(previous)
    assert reference["steps"] == 14 and reference["resumed_from"] is None

    run, marker = tmp_path / "run", tmp_path / "stalled"
    child = mp.get_context("fork").Process(
        # planned to run longer: max_steps only stops a run, the schedules do not depend on it
        target=train,
        args=(str(run),),
        kwargs={"steps": 30, "threads": threads, "stall_at": 8, "marker": str(marker)},
    )
    child.start()
    deadline = time.monotonic() + 60
    while not marker.exists() and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run to be killed never reached step 8"
    os.kill(child.pid, signal.SIGKILL)  # during step 8: step 7 was done but never saved
    child.join()
    assert child.exitcode == -signal.SIGKILL
    saved = torch.load(run / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"], saved["batches_done"]) == (0, 6, 6)  # mid-epoch

    code = (
        f"import json, sys; sys.path.insert(0, {str(TESTS)!r}); import test_training_loop as t; "
        f"print('SUMMARY', json.dumps(t.train({str(run)!r}, steps=14, workers=2, threads={threads})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=TESTS.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.split("SUMMARY", 1)[1])
    assert summary["resumed_from"] == str(run / "last.pt") and summary["steps_run"] == 8 and summary["steps"] == 14

    expected, resumed = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    for key in ("model", "optimizer", "rng", "epoch", "step", "batches_done"):
        assert_same(expected[key], resumed[key], key)
    assert resumed["epoch"] == 1 and resumed["batches_done"] == 4
    assert summary["final_loss"] == reference["final_loss"]

    again = train(str(run), steps=14)  # a finished run resumes to nothing
    assert again["steps_run"] == 0 and again["steps"] == 14


# -- DDP over gloo equals one process ---------------------------------------------------------------
def ddp_two_steps(rank: int, world_size: int, ckpt_dir: str) -> dict:
    trainer = make_trainer(n=16, batch_size=4, dropout=0.0, sgd=True, max_steps=2, ckpt_dir=ckpt_dir)
    summary = trainer.fit()
    rngs = len(load_checkpoint(Path(ckpt_dir) / "last.pt")["rng"]) if rank == 0 else 0
    return {"loss": summary["final_loss"], "state": trainer.method.state_dict(), "rngs": rngs}


def test_two_process_gloo_step_equals_single_process(tmp_path: Path):
    results = run_two_process(ddp_two_steps, str(tmp_path / "ddp"), timeout=120)
    single = make_trainer(n=16, batch_size=8, dropout=0.0, sgd=True, max_steps=2)
    loss = single.fit()["final_loss"]
    assert results[0]["rngs"] == 2  # rank 0 saved both ranks' RNG states
    for result in results:
        assert result["loss"] == pytest.approx(loss, rel=1e-6, abs=1e-7)
        for name, tensor in single.method.state_dict().items():  # params, momentum copy, queue
            torch.testing.assert_close(result["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_epoch_batches_shard_the_global_batch():
    single = epoch_batches(37, batch_size=8, seed=3, epoch=2)
    ranks = [epoch_batches(37, batch_size=4, seed=3, epoch=2, rank=r, world_size=2) for r in range(2)]
    assert len(single) == 4 and all(len(b) == 8 for b in single)
    assert [a + b for a, b in zip(*ranks)] == single  # all_gather in rank order = the one-process batch
    assert epoch_batches(37, batch_size=8, seed=3, epoch=3) != single


def test_seeded_dataset_is_order_independent_and_leaves_rngs_alone():
    data = SeededDataset(ToyClips(6), seed=1)
    data.set_epoch(4)
    torch.manual_seed(5)
    first = [data[i]["video"] for i in range(6)]
    after = torch.rand(1)
    torch.manual_seed(5)
    backwards = [data[i]["video"] for i in reversed(range(6))][::-1]
    assert torch.equal(torch.rand(1), after)  # the caller's RNG stream is untouched
    assert all(torch.equal(a, b) for a, b in zip(first, backwards))
    data.set_epoch(5)
    assert not torch.equal(data[0]["video"], first[0])  # a new epoch, new augmentations


# -- options, logging, errors ---------------------------------------------------------------------
def test_tensorboard_scalars_and_epoch_hook(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen = []
    trainer = make_trainer(
        n=8,
        epochs=2,
        max_steps=3,
        log_dir=tmp_path / "tb",
        log_every=1,
        grad_clip=1.0,
        on_epoch_end=lambda epoch: seen.append(epoch) or {"val_acc": 0.5},
    )
    summary = trainer.fit()
    assert summary["steps"] == 3 and seen == [0] and summary["clips_per_s"] > 0
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"train/loss", "train/lr", "train/clips_per_s", "train/pos_sim", "train/momentum", "train/grad_norm"}
    assert expected <= tags and "epoch/val_acc" in tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]


def test_bf16_channels_last_and_torch_scheduler(tmp_path: Path):
    torch.manual_seed(0)
    method = ToyMoCo()
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = Trainer(
        method=method,
        optimizer=optimizer,
        dataset=ToyClips(8),
        batch_size=4,
        lr_schedule=scheduler,
        schedules={"momentum": schedules.constant(0.99)},
        amp="bf16",
        channels_last=True,
        ckpt_dir=tmp_path,
        progress=False,
        keep_epoch_checkpoints=True,
    )
    assert method.encoder[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    summary = trainer.fit()
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
    state = load_checkpoint(tmp_path / "epoch_0001.pt")
    assert state["scheduler"]["last_epoch"] == 2 and optimizer.param_groups[0]["lr"] == pytest.approx(0.025)


def test_export_writes_pretrained_backbone(tmp_path: Path, monkeypatch):
    import videozoo.api

    calls = {}
    monkeypatch.setattr(
        videozoo.api,
        "save_pretrained",
        lambda model, directory, **kw: calls.update(model=model, directory=directory, **kw) or Path(directory),
    )
    trainer = make_trainer(n=8, max_steps=1, run_info={"command": "python recipes/toy.py --preset smoke"})
    trainer.fit()
    assert trainer.export(tmp_path / "out") == tmp_path / "out"
    assert calls["model"] is trainer.method.encoder
    assert calls["card"]["recipe_command"] == "python recipes/toy.py --preset smoke" and calls["card"]["steps"] == 1


@pytest.mark.parametrize("workers", [0, 1])
def test_dataset_error_surfaces_with_a_clear_message(workers: int):
    trainer = make_trainer(n=8, num_workers=workers)
    trainer.data.dataset.fail_at = 5
    where = " in DataLoader worker process 0" if workers else ""
    message = rf"loading batch \d of epoch 0 failed{where}: ValueError: sample 5 is broken"
    with pytest.raises(DataLoadingError, match=message):
        trainer.fit()


def test_checkpoint_schedule_by_time_and_explicit_resume(tmp_path: Path, monkeypatch):
    import videozoo.training.loop as loop

    saved = []
    real_save = loop.save_checkpoint
    monkeypatch.setattr(
        loop, "save_checkpoint", lambda path, state, **kw: saved.append(state["step"]) or real_save(path, state, **kw)
    )
    make_trainer(max_steps=3, ckpt_dir=tmp_path / "a", ckpt_every_minutes=0, log_every=1).fit()
    assert saved == [1, 2, 3]  # "due" at every time check; the last step is saved once
    saved.clear()
    make_trainer(max_steps=12, ckpt_dir=tmp_path / "b", ckpt_every_minutes=None).fit()
    assert saved == [10, 12]  # only the epoch end and the end of the run
    summary = make_trainer(max_steps=13, ckpt_dir=tmp_path / "c", resume=tmp_path / "b" / "last.pt").fit()
    assert summary["resumed_from"] == str(tmp_path / "b" / "last.pt") and summary["steps_run"] == 1


def test_summary_line_reports_a_resumed_finished_stage(tmp_path: Path):
    first = make_trainer(n=8, max_steps=1, ckpt_dir=tmp_path / "ckpt").fit()
    assert summary_line("toy", first) == f"[toy] 1 steps, loss {first['final_loss']:.4f}, {first['time_s']:.0f} s"
    again = make_trainer(n=8, max_steps=1, ckpt_dir=tmp_path / "ckpt").fit()  # nothing left to run
    assert again["steps_run"] == 0 and summary_line("toy", again).startswith("[toy] 1 steps, resumed finished, ")
