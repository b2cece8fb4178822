"""videozoo.distributed in one process (identities) and in a real two-process gloo group.

The two-process checks run in one spawn (a few seconds of start-up) from a module-scoped fixture; each
test then compares one part of the result with what one process computes on the global batch. The
method step at the end is the pattern the methods reuse: half the global batch per rank, gradients
averaged over ranks as DDP does.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videozoo.distributed import (
    all_gather_with_grad,
    all_reduce_mean,
    batch_shuffle,
    batch_unshuffle,
    concat_all_gather,
    convert_sync_batchnorm,
    get_rank,
    get_world_size,
    init_from_env,
    is_distributed,
)
from videozoo.losses import FeatureQueue, symmetric_global_nce

try:  # tests/ as a package (pytest rootdir on sys.path) or as a plain directory on sys.path
    from .dist_utils import average_gradients, run_two_process
except ImportError:
    from dist_utils import average_gradients, run_two_process

B = 4  # per rank; the global batch is 2 * B
T = 0.1


class TwoTower(nn.Module):
    """A tiny stand-in for a video and an audio encoder with their heads."""

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Linear(5, 3)
        self.audio = nn.Linear(6, 3)

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.video(v), dim=1), F.normalize(self.audio(a), dim=1)


def make_data() -> dict:
    g = torch.Generator().manual_seed(1234)
    torch.manual_seed(1234)
    return {
        "x": torch.randn(2 * B, 3, generator=g),
        "w": torch.randn(2 * B, 3, generator=g),
        "v": torch.randn(2 * B, 5, generator=g),
        "a": torch.randn(2 * B, 6, generator=g),
        "ids": torch.arange(2 * B) + 100,
        "model": TwoTower().state_dict(),
    }


def method_step(model: nn.Module, v: torch.Tensor, a: torch.Tensor, *, detach_keys: bool) -> tuple:
    """One InfoNCE-with-global-negatives step: the loss, and the gradients averaged over ranks as DDP does."""
    model.zero_grad()
    fv, fa = model(v, a)  # (B, 3) each, L2-normalised
    loss = symmetric_global_nce(fv, fa, temperature=T, detach_keys=detach_keys)
    loss.backward()
    if get_world_size() > 1:
        average_gradients(model)
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def two_process_checks(rank: int, world_size: int, data: dict) -> dict:
    """Everything the two-process tests look at, computed on this rank's half of the global batch."""
    mine = slice(rank * B, (rank + 1) * B)
    out: dict = {"rank": get_rank(), "world_size": get_world_size()}

    # all_gather_with_grad: rank r's loss weighs the gathered rows by (r + 1) * w
    x = data["x"][mine].clone().requires_grad_()
    gathered = all_gather_with_grad(x)
    (gathered * data["w"] * (rank + 1)).sum().backward()
    out["gathered"], out["x_grad"] = gathered.detach(), x.grad

    out["concat"] = concat_all_gather(data["x"][mine] * (rank + 1))
    out["concat_requires_grad"] = concat_all_gather(x * 1).requires_grad

    shuffled, idx_unshuffle = batch_shuffle(data["x"][mine])
    out["shuffled"], out["idx_unshuffle"] = shuffled, idx_unshuffle
    out["unshuffled"] = batch_unshuffle(shuffled, idx_unshuffle)

    queue = FeatureQueue(size=6, dim=3, extra={"vname": -1})
    queue.enqueue(data["x"][mine], vname=data["ids"][mine])
    out["queue"] = queue.state_dict()

    out["mean"] = all_reduce_mean(torch.tensor(float(rank)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bn_model = nn.Sequential(nn.BatchNorm1d(3))
        out["syncbn_same"] = convert_sync_batchnorm(bn_model) is bn_model
        out["syncbn_warned"] = any("SyncBatchNorm" in str(w.message) for w in caught)

    model = TwoTower()
    model.load_state_dict(data["model"])
    for detach_keys in (True, False):
        loss, grads = method_step(model, data["v"][mine], data["a"][mine], detach_keys=detach_keys)
        out[f"loss_{detach_keys}"] = all_reduce_mean(loss)
        out[f"grads_{detach_keys}"] = grads
    return out


@pytest.fixture(scope="module")
def data() -> dict:
    return make_data()


@pytest.fixture(scope="module")
def ranks(data: dict) -> list[dict]:
    return run_two_process(two_process_checks, data)


# -- one process ------------------------------------------------------------------------------------
def test_single_process_helpers_are_identities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    env = init_from_env()
    assert (env.rank, env.world_size, env.local_rank) == (0, 1, 0) and not is_distributed()
    assert (get_rank(), get_world_size()) == (0, 1)
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    gathered = concat_all_gather(x)
    assert torch.equal(gathered, x) and not gathered.requires_grad
    torch.testing.assert_close(all_reduce_mean(torch.tensor(2.0)), torch.tensor(2.0))
    bn_model = nn.Sequential(nn.BatchNorm1d(3))
    assert convert_sync_batchnorm(bn_model) is bn_model


def test_single_process_shuffle_is_a_permutation_that_unshuffles() -> None:
    x = torch.arange(6.0)[:, None].repeat(1, 2)
    shuffled, idx = batch_shuffle(x, generator=torch.Generator().manual_seed(3))
    assert sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()
    assert torch.equal(batch_unshuffle(shuffled, idx), x)


# -- two processes ----------------------------------------------------------------------------------
def test_group_started_from_torchrun_env(ranks: list[dict]) -> None:
    assert [(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)]


def test_all_gather_with_grad_values_and_gradients(ranks: list[dict], data: dict) -> None:
    for rank, r in enumerate(ranks):
        torch.testing.assert_close(r["gathered"], data["x"])
        # d/dx of Σ_r (r+1) <gathered, w>: each rank's rows get (1 + 2) * w, summed over both losses
        torch.testing.assert_close(r["x_grad"], 3 * data["w"][rank * B : (rank + 1) * B])


def test_concat_all_gather(ranks: list[dict], data: dict) -> None:
    expected = torch.cat([data["x"][:B], 2 * data["x"][B:]])
    for r in ranks:
        torch.testing.assert_close(r["concat"], expected)
        assert not r["concat_requires_grad"]


def test_batch_shuffle_round_trip_across_ranks(ranks: list[dict], data: dict) -> None:
    assert torch.equal(ranks[0]["idx_unshuffle"], ranks[1]["idx_unshuffle"])  # one permutation, broadcast
    shuffled = torch.cat([r["shuffled"] for r in ranks])
    idx_shuffle = torch.argsort(ranks[0]["idx_unshuffle"])
    torch.testing.assert_close(shuffled, data["x"][idx_shuffle])  # a global permutation, split by rank
    for rank, r in enumerate(ranks):
        torch.testing.assert_close(r["unshuffled"], data["x"][rank * B : (rank + 1) * B])


def test_queue_enqueue_gathers_the_global_batch(ranks: list[dict], data: dict) -> None:
    single = FeatureQueue(size=6, dim=3, extra={"vname": -1})
    single.enqueue(data["x"], vname=data["ids"])  # 8 entries into 6 slots: wraps
    for r in ranks:
        for name in ("ptr", "num_filled", "vname"):
            assert torch.equal(r["queue"][name], single.state_dict()[name]), name
        torch.testing.assert_close(r["queue"]["features"], single.features)


def test_all_reduce_mean_and_syncbn_on_cpu(ranks: list[dict]) -> None:
    for r in ranks:
        assert r["mean"].item() == pytest.approx(0.5)
        assert r["syncbn_same"] and r["syncbn_warned"]  # gloo on CPU keeps plain BatchNorm


@pytest.mark.parametrize("detach_keys", [True, False])
def test_global_nce_step_equals_single_process_step(ranks: list[dict], data: dict, detach_keys: bool) -> None:
    model = TwoTower()
    model.load_state_dict(data["model"])
    loss, grads = method_step(model, data["v"], data["a"], detach_keys=detach_keys)
    for r in ranks:
        torch.testing.assert_close(r[f"loss_{detach_keys}"], loss)
        for name, grad in grads.items():
            torch.testing.assert_close(r[f"grads_{detach_keys}"][name], grad, msg=name)
