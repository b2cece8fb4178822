"""The trainer's data path: worker processes that persist across epochs yet draw each epoch's augmentations, and
the ``batch_transform`` hook (where GPU augmentation goes), applied before the method and exact on resume."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from videozoo.training import SeededDataset, Trainer, epoch_batches
from videozoo.training.data import EpochBatchSampler


class Noise(torch.utils.data.Dataset):
    """Each item: a random value (the "augmentation"), its index and the process that drew it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"value": torch.rand(()), "video": torch.rand(3, 2, 4, 4), "index": i, "pid": os.getpid()}


class Recorder(nn.Module):
    """Fits a weight to the values and remembers every batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))
        self.seen: list[dict] = []

    def forward(self, batch: dict) -> dict:
        self.seen.append({k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        loss = (self.weight * batch["value"] - batch["video"].mean()).square().mean()
        return {"loss": loss, "logs": {}}


def trainer(**kwargs) -> Trainer:
    torch.manual_seed(0)
    method = Recorder()
    options = {"batch_size": 4, "epochs": 3, "seed": 3, "progress": False, **kwargs}
    return Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=Noise(), **options)


def test_sampler_keys_carry_the_epoch():
    sampler = EpochBatchSampler()
    sampler.set_epoch(4, [[2, 0], [1, 3]])
    assert list(sampler) == [[(4, 2), (4, 0)], [(4, 1), (4, 3)]] and len(sampler) == 2
    data = SeededDataset(Noise(), seed=3)
    data.set_epoch(4)
    assert torch.equal(data[(4, 2)]["value"], data[2]["value"])  # a key and set_epoch + index draw alike
    assert not torch.equal(data[(5, 2)]["value"], data[(4, 2)]["value"])


def test_the_same_workers_serve_every_epoch_with_that_epochs_draws():
    run = trainer(epochs=2, num_workers=1)
    run.fit()
    pids = {pid for batch in run.method.seen for pid in batch["pid"].tolist()}
    assert len(pids) == 1 and pids != {os.getpid()}  # one worker process, alive across both epochs
    reference = SeededDataset(Noise(), seed=3)
    for step, batch in enumerate(run.method.seen):  # 2 steps per epoch
        epoch = step // 2
        assert batch["index"].tolist() == epoch_batches(8, batch_size=4, seed=3, epoch=epoch)[step % 2]
        for i, value in zip(batch["index"].tolist(), batch["value"]):
            assert value == reference[(epoch, i)]["value"]  # seeded by (seed, epoch, index), as before
    first = {i: v for b in run.method.seen[:2] for i, v in zip(b["index"].tolist(), b["value"].tolist())}
    second = {i: v for b in run.method.seen[2:] for i, v in zip(b["index"].tolist(), b["value"].tolist())}
    assert first.keys() == second.keys() and all(first[i] != second[i] for i in first)  # new epoch, new draws


def shift_and_jitter(batch: dict) -> dict:
    """A random batch transform drawing from the trainer's torch RNG, as GPU augmentation would."""
    assert not torch.is_grad_enabled()
    return {**batch, "video": batch["video"] + torch.randn_like(batch["video"]), "transformed": True}


def test_batch_transform_is_applied_and_resume_stays_exact(tmp_path: Path):
    whole = trainer(batch_transform=shift_and_jitter, ckpt_dir=tmp_path / "whole")
    whole.fit()  # 3 epochs x 2 steps
    assert len(whole.method.seen) == 6 and all(batch["transformed"] for batch in whole.method.seen)
    raw = SeededDataset(Noise(), seed=3)[(0, int(whole.method.seen[0]["index"][0]))]["video"]
    assert not torch.allclose(whole.method.seen[0]["video"][0], raw, atol=0.1)  # the method got the transformed clip
    first = trainer(batch_transform=shift_and_jitter, ckpt_dir=tmp_path / "split", max_steps=3)
    first.fit()  # stops mid-epoch 1
    rest = trainer(batch_transform=shift_and_jitter, ckpt_dir=tmp_path / "split", num_workers=1)
    summary = rest.fit()
    assert summary["resumed_from"] == str(tmp_path / "split" / "last.pt") and summary["steps_run"] == 3
    seen = first.method.seen + rest.method.seen
    for a, b in zip(whole.method.seen, seen, strict=True):  # the same batches, the same random transform draws
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
    assert torch.equal(whole.method.weight, rest.method.weight)
