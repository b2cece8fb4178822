"""FeatureQueue (wrap-around, full flag, aligned fields, checkpointing) and MomentumEncoder (EMA formula)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videozoo.losses import FeatureQueue, MomentumEncoder, info_nce


def entries(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose both coordinates are the entry id, and the ids as a field."""
    t = torch.tensor(ids)
    return torch.stack([t, -t], dim=1).float(), t


def reference_ring(size: int, batches: list[list[int]]) -> tuple[list[int | None], int]:
    """The definition: entries are written one by one at ptr, which wraps modulo size."""
    ring: list[int | None] = [None] * size
    ptr = 0
    for batch in batches:
        for e in batch:
            ring[ptr] = e
            ptr = (ptr + 1) % size
    return ring, ptr


def test_wrap_around_when_size_is_not_a_multiple_of_the_batch() -> None:
    queue = FeatureQueue(size=5, dim=2, extra={"vname": -1})
    feats, ids = entries([10, 11, 12])
    queue.enqueue(feats, vname=ids)
    assert queue.vname.tolist() == [10, 11, 12, -1, -1] and int(queue.ptr) == 3 and not queue.full
    feats, ids = entries([13, 14, 15])
    queue.enqueue(feats, vname=ids)
    assert queue.vname.tolist() == [15, 11, 12, 13, 14] and int(queue.ptr) == 1 and queue.full
    assert queue.features[:, 0].tolist() == [15, 11, 12, 13, 14]


@pytest.mark.parametrize("sizes", [[3, 3, 3, 3], [2, 4, 1, 7, 5], [12], [5, 5, 1]])
def test_queue_equals_entry_by_entry_ring(sizes: list[int]) -> None:
    size = 5
    batches, start = [], 0
    for n in sizes:
        batches.append(list(range(start, start + n)))
        start += n
    queue = FeatureQueue(size=size, dim=2, extra={"vname": -1, "label": -7})
    for batch in batches:
        feats, ids = entries(batch)
        queue.enqueue(feats, vname=ids, label=ids * 2)
    ring, ptr = reference_ring(size, batches)
    expected = [-1 if e is None else e for e in ring]
    assert queue.vname.tolist() == expected
    assert queue.label.tolist() == [-7 if e is None else 2 * e for e in ring]
    filled = [i for i, e in enumerate(ring) if e is not None]
    assert queue.features[filled, 0].tolist() == [ring[i] for i in filled]  # features aligned with fields
    assert queue.features[filled, 1].tolist() == [-ring[i] for i in filled]
    assert int(queue.ptr) == ptr
    assert int(queue.num_filled) == min(sum(sizes), size) and queue.full == (sum(sizes) >= size)


def test_full_flag_and_initial_state() -> None:
    queue = FeatureQueue(size=4, dim=3)
    torch.testing.assert_close(queue.features.norm(dim=1), torch.ones(4))  # random unit vectors, as MoCo
    for step in range(4):
        assert queue.full == (step >= 2)
        queue.enqueue(torch.randn(2, 3))


def test_enqueue_checks_fields_and_shapes() -> None:
    queue = FeatureQueue(size=4, dim=3, extra={"vname": -1})
    with pytest.raises(ValueError, match="fields"):
        queue.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match="fields"):
        queue.enqueue(torch.randn(2, 3), vname=torch.zeros(2), label=torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        queue.enqueue(torch.randn(2, 4), vname=torch.zeros(2))
    with pytest.raises(ValueError, match="already an attribute"):
        FeatureQueue(size=4, dim=3, extra={"features": 0})
    assert torch.equal(queue.field("vname"), queue.vname)


def test_state_dict_round_trip_resumes_the_same_queue() -> None:
    queue = FeatureQueue(size=5, dim=2, extra={"vname": -1})
    for batch in ([0, 1, 2], [3, 4, 5]):
        feats, ids = entries(batch)
        queue.enqueue(feats, vname=ids)
    state = queue.state_dict()
    assert set(state) == {"features", "ptr", "num_filled", "vname"}
    restored = FeatureQueue(size=5, dim=2, extra={"vname": -1})
    restored.load_state_dict(state)
    assert restored.full and int(restored.ptr) == int(queue.ptr)
    for q in (queue, restored):
        q.enqueue(entries([6, 7])[0], vname=torch.tensor([6, 7]))
    assert torch.equal(queue.features, restored.features) and torch.equal(queue.vname, restored.vname)


def test_negatives_read_before_an_enqueue_keep_their_values() -> None:
    """Writes replace the buffers: backward after an enqueue uses the negatives the loss saw, no clone needed."""
    queue = FeatureQueue(size=4, dim=3, extra={"label": -1})
    q, k = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3)
    snapshot, labels = queue.features.clone(), queue.field("label")
    (expected,) = torch.autograd.grad(info_nce(q, k, snapshot, temperature=0.1), q)
    negatives = queue.features
    loss = info_nce(q, k, negatives, temperature=0.1)
    queue.enqueue(torch.randn(2, 3), label=torch.tensor([5, 6]))
    (grad,) = torch.autograd.grad(loss, q)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    assert torch.equal(negatives, snapshot) and not torch.equal(queue.features, snapshot)
    assert (labels == -1).all() and queue.field("label")[:2].tolist() == [5, 6]
    assert dict(queue.named_buffers())["features"] is queue.features  # still a buffer: saved, moved, broadcast
    assert torch.equal(queue.state_dict()["label"], queue.field("label"))


def small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_momentum_encoder_starts_as_a_frozen_copy() -> None:
    online = small_net()
    key = MomentumEncoder(online)
    for (name, p), (_, pk) in zip(online.named_parameters(), key.named_parameters()):
        assert torch.equal(p, pk) and p.data_ptr() != pk.data_ptr(), name
        assert not pk.requires_grad
    assert not key(torch.randn(5, 3)).requires_grad


def test_momentum_update_equals_the_formula() -> None:
    online = small_net()
    key = MomentumEncoder(online)
    with torch.no_grad():
        for p in key.parameters():  # make the two differ so the formula is tested, not a fixed point
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in key.parameters()]
    m = 0.9
    key.update(online, momentum=m)
    for old, new, q in zip(before, key.parameters(), online.parameters()):
        torch.testing.assert_close(new, m * old + (1 - m) * q)
    key.update(online, momentum=0.0)  # m = 0 copies the online weights
    for new, q in zip(key.parameters(), online.parameters()):
        torch.testing.assert_close(new, q)


def test_momentum_update_leaves_buffers_alone_as_moco() -> None:
    online = small_net()
    key = MomentumEncoder(online)
    online(torch.randn(8, 3) + 5)  # train-mode forward moves the online BN running mean
    key.update(online, momentum=0.5)
    assert torch.equal(key.encoder[1].running_mean, torch.zeros(4))
    assert not torch.equal(online[1].running_mean, torch.zeros(4))


def test_momentum_update_refuses_a_different_network() -> None:
    key = MomentumEncoder(small_net())
    with pytest.raises(ValueError):
        key.update(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), momentum=0.9)
