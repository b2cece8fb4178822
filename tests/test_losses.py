"""Each loss against a direct re-derivation from its formula, in plain Python loops over small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from videozoo.losses import (
    drop_self_positive,
    global_nce,
    info_nce,
    info_nce_logits,
    multi_positive_nce,
    per_positive_nce,
    symmetric_global_nce,
)

T = 0.2


def unit(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=-1)


def dot(u: torch.Tensor, v: torch.Tensor) -> float:
    return sum(a * b for a, b in zip(u.tolist(), v.tolist()))


def nce_row(positive: float, others: list[float]) -> float:
    """-log exp(positive) / (exp(positive) + Σ exp(others)), logits already divided by T."""
    return -positive + math.log(math.exp(positive) + sum(math.exp(o) for o in others))


def test_info_nce_with_queue_negatives_matches_formula() -> None:
    q, k, queue = unit(4, 3), unit(4, 3), unit(6, 3)
    expected = [nce_row(dot(q[i], k[i]) / T, [dot(q[i], n) / T for n in queue]) for i in range(4)]
    got = info_nce(q, k, queue, temperature=T)
    assert got.item() == pytest.approx(sum(expected) / 4, rel=1e-9)


def test_info_nce_in_batch_negatives_matches_formula() -> None:
    q, k = unit(5, 3), unit(5, 3)
    expected = [nce_row(dot(q[i], k[i]) / T, [dot(q[i], k[j]) / T for j in range(5) if j != i]) for i in range(5)]
    assert info_nce(q, k, temperature=T).item() == pytest.approx(sum(expected) / 5, rel=1e-9)


def test_info_nce_logits_put_the_positive_in_column_zero() -> None:
    q, k, queue = unit(2, 3), unit(2, 3), unit(4, 3)
    logits, targets = info_nce_logits(q, k, queue, temperature=T)
    assert logits.shape == (2, 5) and targets.tolist() == [0, 0]
    assert logits[1, 0].item() == pytest.approx(dot(q[1], k[1]) / T)
    assert logits[1, 3].item() == pytest.approx(dot(q[1], queue[2]) / T)


def test_symmetric_global_nce_in_one_process_matches_formula() -> None:
    a, b = unit(4, 3), unit(4, 3)

    def one_way(x: torch.Tensor, y: torch.Tensor) -> float:
        rows = [nce_row(dot(x[i], y[i]) / T, [dot(x[i], y[j]) / T for j in range(4) if j != i]) for i in range(4)]
        return sum(rows) / 4

    expected = 0.5 * (one_way(a, b) + one_way(b, a))
    for detach_keys in (True, False):
        got = symmetric_global_nce(a, b, temperature=T, detach_keys=detach_keys)
        assert got.item() == pytest.approx(expected, rel=1e-9)


def test_global_nce_detach_keys_stops_gradient_at_the_keys() -> None:
    q, k = unit(4, 3).requires_grad_(), unit(4, 3).requires_grad_()
    global_nce(q, k, temperature=T, detach_keys=True).backward()
    assert k.grad is None and q.grad is not None
    q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    global_nce(q2, k2, temperature=T, detach_keys=False).backward()
    q3, k3 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    info_nce(q3, k3, temperature=T).backward()  # the full-gradient form is plain in-batch InfoNCE here
    torch.testing.assert_close(k2.grad, k3.grad)
    torch.testing.assert_close(q2.grad, q3.grad)
    torch.testing.assert_close(q.grad, q3.grad)


def test_multi_positive_nce_matches_formula() -> None:
    logits = torch.randn(4, 6, dtype=torch.float64) * 3
    mask = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [0, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    expected = []
    for i in range(4):
        row = logits[i].tolist()
        z = sum(math.exp(v) for v in row)
        expected.append(-math.log(sum(math.exp(v) / z for v, m in zip(row, mask[i].tolist()) if m)))
    assert multi_positive_nce(logits, mask).item() == pytest.approx(sum(expected) / 4, rel=1e-9)
    assert multi_positive_nce(logits, mask[3:]).item() == pytest.approx(0.0, abs=1e-12)  # all positive: log 1


def test_multi_positive_nce_with_only_self_is_info_nce() -> None:
    logits = torch.randn(3, 5)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, 0] = True
    expected = F.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(multi_positive_nce(logits, mask), expected)


def test_multi_positive_nce_is_finite_where_the_official_form_underflows() -> None:
    logits = torch.tensor([[-200.0, 0.0, 0.0]])  # the only positive has softmax mass exp(-200) = 0 in float32
    mask = torch.tensor([[True, False, False]])
    official = -torch.log((F.softmax(logits, dim=1) * mask).sum(1)).mean()
    assert torch.isinf(official)
    assert multi_positive_nce(logits, mask).item() == pytest.approx(200 + math.log(2), rel=1e-5)


def test_multi_positive_nce_rejects_rows_without_positive() -> None:
    with pytest.raises(ValueError, match="at least one positive"):
        multi_positive_nce(torch.randn(2, 3), torch.tensor([[True, False, False], [False, False, False]]))


def test_drop_self_positive_drops_column_zero_only_where_others_exist() -> None:
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    before = mask.clone()
    dropped = drop_self_positive(mask, p=1.0)
    assert dropped.tolist() == [[True, False, False], [False, True, False], [False, False, True]]
    assert torch.equal(mask, before)  # input untouched
    assert torch.equal(drop_self_positive(mask, p=0.0), mask)


def test_drop_self_positive_is_one_flip_per_batch_with_probability_p() -> None:
    mask = torch.tensor([[1, 1], [1, 1]], dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    outcomes = [drop_self_positive(mask, p=0.9, generator=generator)[:, 0] for _ in range(2000)]
    assert all(bool(o[0]) == bool(o[1]) for o in outcomes)  # the whole batch drops, or none of it
    rate = sum(not bool(o[0]) for o in outcomes) / len(outcomes)
    assert abs(rate - 0.9) < 0.03
    again = torch.Generator().manual_seed(0)
    assert all(torch.equal(drop_self_positive(mask, p=0.9, generator=again)[:, 0], o) for o in outcomes[:50])


def test_per_positive_nce_matches_formula() -> None:
    pos, neg = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    rows = [nce_row(pos[i, p].item(), neg[i].tolist()) for i in range(3) for p in range(4)]
    assert per_positive_nce(pos, neg).item() == pytest.approx(sum(rows) / len(rows), rel=1e-9)


def test_per_positive_nce_with_one_positive_is_info_nce() -> None:
    q, k, queue = unit(4, 3), unit(4, 3), unit(6, 3)
    logits, _ = info_nce_logits(q, k, queue, temperature=T)
    torch.testing.assert_close(per_positive_nce(logits[:, :1], logits[:, 1:]), info_nce(q, k, queue, temperature=T))
