"""CoCLR's co-training stage: mining on constructed queues, the loss re-derived by hand, the frozen sampler,
and a two-process gloo step equal to the single-process step on the same global batch (InfoNCE and CoCLR)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videozoo.heads.projection import CoCLRHead
from videozoo.methods import CoCLR, InfoNCE, mine_topk

try:  # tests/ as a package (pytest rootdir on sys.path) or as a plain directory on sys.path
    from .dist_utils import run_two_process, sgd_steps
    from .test_method_infonce import DIM, T, TinyVideoNet, clips, embed
except ImportError:
    from dist_utils import run_two_process, sgd_steps
    from test_method_infonce import DIM, T, TinyVideoNet, clips, embed

K = 6  # queue size of the constructed cases


def make_coclr(*, queue_size: int = K, topk: int = 2, drop_self_p: float = 0.9, sampler_norm: bool = False) -> CoCLR:
    other_head = CoCLRHead(in_dim=12, hidden_dim=12, out_dim=DIM)
    return CoCLR(
        backbone=TinyVideoNet(),
        other_backbone=TinyVideoNet(norm=sampler_norm),
        other_head=other_head,
        dim=DIM,
        queue_size=queue_size,
        temperature=T,
        topk=topk,
        drop_self_p=drop_self_p,
    )


def fill(method: CoCLR, *, vname: list[int], second: torch.Tensor | None = None, filled: int = K) -> None:
    """Put a constructed state into the queues (as if ``filled`` entries had been written)."""
    method.queue.field("vname").copy_(torch.tensor(vname))
    if second is not None:
        method.queue_second.features.copy_(second)
    for queue in (method.queue, method.queue_second):
        queue.num_filled.fill_(filled)


def basis(*weights: float) -> torch.Tensor:
    """A unit vector of width DIM with the given leading weights."""
    v = torch.zeros(DIM)
    v[: len(weights)] = torch.tensor(weights)
    return F.normalize(v, dim=0)


# -- mining on constructed cases --------------------------------------------------------------------------
def test_mine_topk_known_answer() -> None:
    similarity = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert mine_topk(similarity, k=2).nonzero().tolist() == [[0, 0], [0, 1], [1, 3], [1, 4]]
    exclude = torch.tensor([[True, False, False, False, False], [False, False, False, False, True]])
    assert mine_topk(similarity, k=2, exclude=exclude).nonzero().tolist() == [[0, 1], [0, 2], [1, 2], [1, 3]]
    # more than the columns left: every column that is not excluded, never an excluded one
    assert mine_topk(similarity, k=9, exclude=exclude).sum(1).tolist() == [4, 4]
    assert not mine_topk(similarity, k=0).any()


def test_coclr_positive_mask_on_a_constructed_queue() -> None:
    method = make_coclr(topk=2)
    second = torch.stack([basis(*[0.0] * j, 1.0) for j in range(K)])  # entry j = e_j
    fill(method, vname=[10, 11, 12, -1, 14, 10], second=second)
    other = torch.stack([basis(3, 2, 1), basis(0, 0, 0, 1, 2, 3), basis(0, 0, 1, 2)])  # (3, DIM)
    source = torch.tensor([10, 99, -1])
    mask, mined = method.positive_mask(other, source)
    # row 0: same source {0, 5}; nearest others {1, 2} (0 is nearest but already a same-source positive)
    # row 1: no same source; nearest {5, 4}.  row 2: unknown source (-1) matches nothing, not even slot 3's -1
    assert mined.nonzero().tolist() == [[0, 1], [0, 2], [1, 4], [1, 5], [2, 2], [2, 3]]
    expected = [[0, 1, 2, 3, 6], [0, 5, 6], [0, 3, 4]]  # columns of (B, 1 + K); column 0 is the own key
    assert [row.nonzero().flatten().tolist() for row in mask] == expected


def test_coclr_mines_only_once_the_second_queue_is_full() -> None:
    method = make_coclr(topk=2)
    fill(method, vname=[10, 11, 12, -1, 14, 10], filled=K - 1)
    mask, mined = method.positive_mask(torch.stack([basis(3, 2, 1)]), torch.tensor([10]))
    assert not mined.any()
    assert mask[0].nonzero().flatten().tolist() == [0, 1, 6]  # own key + same source only


# -- the loss, re-derived --------------------------------------------------------------------------------
def direct_loss(q, k, queue, second, vname, kf, source, *, topk: int, drop_self: bool) -> float:
    """Multi-instance NCE from its definition, positives chosen by sorting in plain Python."""
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / T] + [float(q[i] @ n) / T for n in queue]
        same = {j for j in range(len(vname)) if source[i] >= 0 and vname[j] == source[i]}
        ranked = sorted((j for j in range(len(vname)) if j not in same), key=lambda j: -float(kf[i] @ second[j]))
        positives = {0} | {1 + j for j in same | set(ranked[:topk])}
        if drop_self and len(positives) > 1:
            positives.discard(0)
        log_z = math.log(sum(math.exp(v) for v in logits))
        total += log_z - math.log(sum(math.exp(logits[j]) for j in positives))
    return total / q.shape[0]


@pytest.mark.parametrize("drop_self_p", [0.0, 1.0])
def test_coclr_loss_equals_direct_computation(drop_self_p: float) -> None:
    method = make_coclr(topk=2, drop_self_p=drop_self_p)
    fill(method, vname=[10, 11, 12, 13, 14, 10], second=F.normalize(torch.randn(K, DIM), dim=1))
    # keys of other clips as negatives: logits of one scale, so that the loss is O(1), not a rounding error
    method.queue.features.copy_(embed(method.encoder_k, clips(K, 1, seed=2)[:, 0]))
    x, flow = clips(3), clips(3, seed=1)
    source = torch.tensor([10, 99, 12])  # rows 0 and 2 have same-source positives, row 1 only mined ones
    queue, second = method.queue.features.clone(), method.queue_second.features.clone()
    vname = method.queue.field("vname").tolist()
    out = method({"video": x, "flow": flow, "source_id": source, "label": torch.tensor([0, 1, 2])}, momentum=1.0)
    q = embed(method.encoder_q, x[:, 0])
    k = embed(method.encoder_k, x[:, 1])
    kf = embed(method.sampler, flow[:, 1])  # the other modality of the *key* clip
    expected = direct_loss(q, k, queue, second, vname, kf, source.tolist(), topk=2, drop_self=drop_self_p == 1.0)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["logs"]["mining"].item() == 1.0 and "mined_precision" in out["logs"]


def test_coclr_self_positive_kept_for_rows_without_other_positives() -> None:
    method = make_coclr(topk=0, drop_self_p=1.0)  # no mining: only same-source positives
    fill(method, vname=[10, 11, 12, 13, 14, 15], filled=0)
    method.queue.features.copy_(embed(method.encoder_k, clips(K, 1, seed=2)[:, 0]))
    x, flow = clips(2), clips(2, seed=1)
    queue, vname = method.queue.features.clone(), method.queue.field("vname").tolist()
    out = method({"video": x, "flow": flow, "source_id": torch.tensor([11, 99])}, momentum=1.0)
    q, k = embed(method.encoder_q, x[:, 0]), embed(method.encoder_k, x[:, 1])
    second = torch.zeros(K, DIM)
    expected = direct_loss(q, k, queue, second, vname, torch.zeros(2, DIM), [11, 99], topk=0, drop_self=True)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    # row 1's only positive is its own key: dropping it would leave no positive (the loss would raise)
    assert torch.isfinite(out["loss"])


def test_coclr_enqueues_keys_sources_labels_and_other_modality() -> None:
    method = make_coclr()
    x, flow = clips(4), clips(4, seed=1)
    source, label = torch.tensor([3, 4, 5, 3]), torch.tensor([0, 1, 0, 1])
    method({"video": x, "flow": flow[:, 1], "source_id": source, "label": label}, momentum=1.0)  # (B, C, T, H, W)
    torch.testing.assert_close(method.queue.features[:4], embed(method.encoder_k, x[:, 1]))
    torch.testing.assert_close(method.queue_second.features[:4], embed(method.sampler, flow[:, 1]))
    assert method.queue.field("vname")[:4].tolist() == source.tolist()
    assert method.queue.field("label")[:4].tolist() == label.tolist()
    assert int(method.num_steps) == 1 and int(method.queue_second.num_filled) == 4


def test_coclr_sampler_stays_frozen_in_eval_mode() -> None:
    method = make_coclr(sampler_norm=True)
    method.train()
    assert method.training and not method.sampler.training and method.encoder_q.training
    sampler_state = {k: v.clone() for k, v in method.sampler.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    out = method({"video": clips(4), "flow": clips(4, seed=1), "source_id": torch.arange(4)})
    out["loss"].backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in method.sampler.parameters())
    for key, value in method.sampler.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, sampler_state[key]), key
    exported = method.export_backbone()  # the trained network leaves, not the sampler
    for (name, a), (_, b) in zip(exported.state_dict().items(), method.encoder_q.backbone.state_dict().items()):
        assert torch.equal(a, b), name


def test_coclr_self_positive_coin_is_reproducible_from_the_state() -> None:
    a, b = make_coclr(drop_self_p=0.5), make_coclr(drop_self_p=0.5)
    b.load_state_dict(a.state_dict())
    batch = {"video": clips(4), "flow": clips(4, seed=1), "source_id": torch.tensor([0, 0, 1, 1])}
    losses = [(a(batch)["loss"].item(), b(batch)["loss"].item()) for _ in range(4)]
    assert all(x == pytest.approx(y) for x, y in losses)


def test_coclr_under_bf16_autocast_keeps_the_loss_in_float32() -> None:
    method = make_coclr()
    fill(method, vname=[10, 11, 12, 13, 14, 10], second=F.normalize(torch.randn(K, DIM), dim=1))
    batch = {"video": clips(4), "flow": clips(4, seed=1), "source_id": torch.tensor([10, 11, 1, 2])}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(batch, momentum=0.99)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert out["logs"]["mining"].item() == 1.0


# -- two processes (gloo) == one process on the global batch ----------------------------------------------
B_RANK = 4  # per rank; global batch 8 = queue size, so the second step mines from a full queue


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(7)
    if kind == "infonce":
        return InfoNCE(backbone=TinyVideoNet(), dim=DIM, queue_size=2 * B_RANK, temperature=T)
    return CoCLR(
        backbone=TinyVideoNet(),
        other_backbone=TinyVideoNet(),
        other_head=CoCLRHead(in_dim=12, hidden_dim=12, out_dim=DIM),
        dim=DIM,
        queue_size=2 * B_RANK,
        temperature=T,
        topk=2,
        drop_self_p=0.5,
    )


def global_batches() -> list[dict]:
    return [
        {
            "video": clips(2 * B_RANK, seed=10 + s),
            "flow": clips(2 * B_RANK, seed=20 + s),
            "source_id": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]) + s,
            "label": torch.arange(8) % 3,
        }
        for s in range(2)
    ]


def run_steps(kind: str, state: dict, batches: list[dict], rows: slice) -> dict:
    """Two training steps (SGD between them) on ``rows`` of each global batch; DDP-style gradient averaging."""
    method = build(kind)
    method.load_state_dict(state)
    return sgd_steps(method, batches, rows, momentum=0.9)


def two_process_steps(rank: int, world_size: int, states: dict, batches: list[dict]) -> dict:
    rows = slice(rank * B_RANK, (rank + 1) * B_RANK)
    return {kind: run_steps(kind, states[kind], batches, rows) for kind in ("infonce", "coclr")}


@pytest.fixture(scope="module")
def gloo_runs() -> tuple[dict, list[dict], list[dict]]:
    states = {kind: build(kind).state_dict() for kind in ("infonce", "coclr")}
    batches = global_batches()
    return states, batches, run_two_process(two_process_steps, states, batches)


@pytest.mark.parametrize("kind", ["infonce", "coclr"])
def test_two_process_step_equals_single_process_step(gloo_runs, kind: str) -> None:
    states, batches, ranks = gloo_runs
    single = run_steps(kind, states[kind], batches, slice(None))
    if kind == "coclr":  # the second step really mined from the full queue
        assert int(single["state"]["queue_second.num_filled"]) == 2 * B_RANK
    for r in ranks:
        got = r[kind]
        for step in range(2):
            torch.testing.assert_close(got[f"loss{step}"], single[f"loss{step}"], msg=f"loss of step {step}")
            assert got[f"grads{step}"].keys() == single[f"grads{step}"].keys()
            for name, grad in single[f"grads{step}"].items():
                torch.testing.assert_close(got[f"grads{step}"][name], grad, msg=f"{name} at step {step}")
        for name, value in single["state"].items():  # queues, pointers, momentum encoder, step counter
            torch.testing.assert_close(got["state"][name], value, msg=name)
