"""CACL (Guo et al., CVPR 2022): the four-pair loss and a whole step re-derived by hand, the queue, the shuffle-degree
head, joint vs released weighting, two processes vs one, and the export round trip.

Most tests run on :class:`TinyVideoNet` for both architectures (no BatchNorm: shuffle-BN changes nothing and every
step is reproducible by hand); the shape and export tests use the registered tiny C3D and frame transformer.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import videozoo
from videozoo.methods import InfoNCE, Method
from videozoo.methods.cacl import CACL, FrameNetwork, ShuffleDegree, ShuffleDegreeHead, cacl_loss
from videozoo.methods.shuffle import apply_order, edit_distance, label_of_distance

try:  # tests/ as a package (pytest rootdir on sys.path) or as a plain directory on sys.path
    from .dist_utils import run_two_process, sgd_steps
    from .test_method_infonce import DIM, T, TinyVideoNet, clips, embed
except ImportError:
    from dist_utils import run_two_process, sgd_steps
    from test_method_infonce import DIM, T, TinyVideoNet, clips, embed

FRAMES = 4  # clips(B) are (B, 2, 3, 4, 8, 8): distances 0, 2, 3, 4 -> 4 classes
ORDERS = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [3, 0, 1, 2], [3, 2, 1, 0]])  # distances 0, 2, 2, 4


def make(*, queue_size: int = 6, sdp_weight: float = 1.0, seed: int = 0, **kwargs) -> CACL:
    torch.manual_seed(seed)
    return CACL(
        backbone=TinyVideoNet(),
        transformer=TinyVideoNet(),
        dim=DIM,
        queue_size=queue_size,
        temperature=T,
        num_frames=FRAMES,
        sdp_weight=sdp_weight,
        sdp_dropout=0.0,
        **kwargs,
    )


def nce(positive: float, negatives: list[float]) -> float:
    return -positive + math.log(math.exp(positive) + sum(math.exp(n) for n in negatives))


def unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


# -- the loss -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tf_negatives", ["transformer", "cnn"])
def test_four_pair_loss_equals_direct_computation(tf_negatives: str) -> None:
    q, tf_q, k, tf_k = (unit(3, DIM, seed=s) for s in range(4))
    queue = unit(5, DIM, seed=9)
    loss, positives, negatives = cacl_loss(q, tf_q, k, tf_k, queue, temperature=T, tf_negatives=tf_negatives)
    terms = []
    for i in range(3):
        cnn_negs = [float(q[i] @ n) / T for n in queue]
        tf_negs = [float(tf_q[i] @ n) / T for n in queue] if tf_negatives == "transformer" else cnn_negs
        terms += [
            nce(float(q[i] @ k[i]) / T, cnn_negs),
            nce(float(q[i] @ tf_q[i]) / T, cnn_negs),
            nce(float(q[i] @ tf_k[i]) / T, cnn_negs),
            nce(float(tf_q[i] @ tf_k[i]) / T, tf_negs),
        ]
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)
    assert positives.shape == (3, 4) and negatives.shape == (3, 5)
    with pytest.raises(ValueError):
        cacl_loss(q, tf_q, k, tf_k, queue, temperature=T, tf_negatives="both")


@pytest.mark.parametrize("key_order", ["same", "swapped"])
def test_cacl_step_equals_direct_computation(key_order: str) -> None:
    method = make(key_order=key_order)
    assert isinstance(method, Method) and method.backbone.num_classes == 0
    x = clips(4)
    queue = method.queue.features.clone()
    out = method({"video": x, "order": ORDERS}, momentum=1.0)  # m = 1: the key encoders stay the initial copies
    x_q, x_k = x[:, 0], x[:, 1]
    pair_q = torch.stack([x_q, apply_order(x_q, ORDERS)], dim=1)
    key = [x_k, apply_order(x_k, ORDERS)]
    pair_k = torch.stack(key[::-1] if key_order == "swapped" else key, dim=1)
    cnn, tf, cnn_k, tf_k = method.cnn_q, method.tf_q, method.cnn_k.encoder, method.tf_k.encoder
    feats = torch.cat([embed(cnn.backbone, pair_q[:, 0]), embed(cnn.backbone, pair_q[:, 1])], dim=1)  # (B, 24)
    q = F.normalize(F.linear(feats, cnn.head.proj.weight, cnn.head.proj.bias), dim=1)
    tq = embed(tf, torch.cat([pair_q[:, 0], pair_q[:, 1]], dim=2))  # one 2T-frame sequence
    k = embed(cnn_k, pair_k)
    tk = embed(tf_k, torch.cat([pair_k[:, 0], pair_k[:, 1]], dim=2))
    contrast = cacl_loss(q.double(), tq.double(), k.double(), tk.double(), queue.double(), temperature=T)[0]
    labels = torch.tensor([label_of_distance(edit_distance(range(FRAMES), o)) for o in ORDERS.tolist()])
    assert labels.tolist() == [0, 1, 1, 3]
    sdp = F.cross_entropy(embed(method.sdp_head, feats), labels)
    torch.testing.assert_close(out["logs"]["loss_contrast"].double(), contrast, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["logs"]["loss_sdp"], sdp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"].detach(), (contrast + sdp).float(), rtol=1e-5, atol=1e-6)


def test_queue_gets_both_keys_cnn_then_transformer() -> None:
    method = make(queue_size=12)
    for step in range(2):
        x = clips(4, seed=step)
        method({"video": x, "order": ORDERS}, momentum=1.0)
    pair_k = torch.stack([x[:, 1], apply_order(x[:, 1], ORDERS)], dim=1)
    k, tk = embed(method.cnn_k.encoder, pair_k), embed(method.tf_k.encoder, torch.cat(list(pair_k.unbind(1)), dim=2))
    # step 0 wrote slots 0-7, step 1 wrote 8-11 and wrapped to 0-3: its CNN keys, then its transformer keys
    torch.testing.assert_close(method.queue.features[8:12], k)
    torch.testing.assert_close(method.queue.features[0:4], tk)
    assert int(method.queue.ptr) == 4 and method.queue.full and int(method.sampler.num_steps) == 2


# -- the shuffle-degree head and the weighting ----------------------------------------------------------------------
def test_shuffle_degree_head_shapes_on_the_registered_tiny_pair() -> None:
    head = ShuffleDegreeHead(in_dim=1024, num_classes=16)  # the paper's C3D: two 512-d clips
    assert (head.fc7.in_features, head.fc7.out_features, head.dropout.p, head.fc8.out_features) == (1024, 512, 0.5, 16)
    assert head(torch.randn(3, 1024)).shape == (3, 16)
    cnn, transformer = videozoo.create_model("c3d_tiny"), videozoo.create_model("frame_transformer_tiny")
    method = CACL(backbone=cnn, transformer=transformer, queue_size=16, num_frames=16)
    width = method.backbone.num_features
    assert method.sdp_head.fc7.in_features == 2 * width and method.sdp_head.fc8.out_features == 16
    assert method.cnn_q.head.proj.in_features == 2 * width and method.tf_q.head.proj.out_features == 128
    out = method({"video": torch.rand(2, 2, 3, 16, 32, 32)}, momentum=0.99)
    out["loss"].backward()
    trainable = {n: p for n, p in method.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for p in trainable.values())  # DDP without find_unused_parameters works
    assert not any(".frame_model." in n for n in trainable)  # the frame network stays frozen
    assert {"loss_contrast", "loss_sdp", "sdp_acc", "contrast_acc", "queue_fill"} <= set(out["logs"])
    with pytest.raises(ValueError, match="16-frame"):
        method({"video": torch.rand(2, 2, 3, 8, 32, 32)})


def test_joint_vs_released_weighting() -> None:
    x = clips(4)
    grads, outs = {}, {}
    for weight in (1.0, 0.0):
        method = make(sdp_weight=weight)
        outs[weight] = method({"video": x, "order": ORDERS}, momentum=0.9)
        outs[weight]["loss"].backward()
        grads[weight] = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    joint, released = outs[1.0]["logs"], outs[0.0]["logs"]
    torch.testing.assert_close(joint["loss"], joint["loss_contrast"] + joint["loss_sdp"])
    torch.testing.assert_close(released["loss"], released["loss_contrast"])
    torch.testing.assert_close(released["loss_sdp"], joint["loss_sdp"])  # still measured, not trained
    assert all(not g.any() for n, g in grads[0.0].items() if n.startswith("sdp_head."))
    assert all(g.any() for n, g in grads[1.0].items() if n.startswith("sdp_head."))
    assert not torch.allclose(grads[1.0]["cnn_q.backbone.conv1.weight"], grads[0.0]["cnn_q.backbone.conv1.weight"])
    torch.testing.assert_close(grads[1.0]["tf_q.head.proj.weight"], grads[0.0]["tf_q.head.proj.weight"])


def test_orders_come_from_seed_and_step_and_eval_changes_nothing() -> None:
    labels = []
    for _ in range(2):
        method = make(seed=0)
        orders, lab = method.sampler.orders({}, torch.zeros(6, 3, FRAMES, 1, 1))
        labels.append(lab)
        assert orders.shape == (6, FRAMES)
    assert torch.equal(labels[0], labels[1])
    method = make().eval()
    state = {k: v.clone() for k, v in method.state_dict().items()}
    with torch.no_grad():
        method({"video": clips(4)}, momentum=0.5)
    for key, value in method.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_shuffle_degree_alone_and_frame_moco() -> None:
    sdp = ShuffleDegree(backbone=TinyVideoNet(), num_frames=FRAMES, dropout=0.0)
    out = sdp({"video": clips(4)})  # (B, V, ...) of which view 0 is used
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and sdp.sdp_head.fc8.out_features == 4
    frames = FrameNetwork(model="test_resnet")
    moco = InfoNCE(backbone=frames, dim=DIM, queue_size=8)
    moco({"video": torch.rand(4, 2, 3, 1, 32, 32)}, momentum=0.99)["loss"].backward()
    transformer = videozoo.create_model("frame_transformer_tiny")
    transformer.frame_model.load_state_dict(moco.export_backbone().model.state_dict())  # what the recipe does


# -- distributed --------------------------------------------------------------------------------------------------
B_RANK = 2


def run_steps(state: dict, batches: list[dict], rows: slice) -> dict:
    """Two SGD steps on ``rows`` of each global batch, orders drawn by the method; DDP-style gradient averaging."""
    method = make(queue_size=4 * B_RANK)
    method.load_state_dict(state)
    return sgd_steps(method, batches, rows, momentum=0.9)


def two_process_steps(rank: int, world_size: int, state: dict, batches: list[dict]) -> dict:
    return run_steps(state, batches, slice(rank * B_RANK, (rank + 1) * B_RANK))


def test_two_process_step_equals_single_process_step() -> None:
    state = make(queue_size=4 * B_RANK).state_dict()
    batches = [{"video": clips(2 * B_RANK, seed=10 + s)} for s in range(2)]
    ranks = run_two_process(two_process_steps, state, batches)
    single = run_steps(state, batches, slice(None))
    for got in ranks:
        for step in range(2):
            torch.testing.assert_close(got[f"loss{step}"], single[f"loss{step}"], msg=f"loss of step {step}")
            assert got[f"grads{step}"].keys() == single[f"grads{step}"].keys()
            for name, grad in single[f"grads{step}"].items():
                torch.testing.assert_close(got[f"grads{step}"][name], grad, msg=f"{name} at step {step}")
        for name, value in single["state"].items():  # queue (both keys, in order), pointer, key encoders, steps
            torch.testing.assert_close(got["state"][name], value, msg=name)


# -- export -------------------------------------------------------------------------------------------------------
def test_export_backbone_round_trips_as_cacl_c3d_ucf101(tmp_path) -> None:
    assert "c3d_tiny" in videozoo.list_models(tiny=True)
    tiny = videozoo.model_info("c3d_tiny")["config"]  # the tiny config, built under the pretrained entry's arch
    backbone = videozoo.create_model("cacl_c3d_ucf101", **tiny)
    method = CACL(backbone=backbone, transformer=videozoo.create_model("frame_transformer_tiny"), queue_size=8,
                  num_frames=8)  # fmt: skip
    method({"video": torch.rand(2, 2, 3, 8, 32, 32)}, momentum=0.9)["loss"].backward()
    exported = method.export_backbone()
    assert exported is not method.backbone and not exported.training and exported.num_classes == 0
    x = torch.rand(2, 3, 8, 32, 32)
    videozoo.save_pretrained(exported, tmp_path / "export", card={"recipe_command": "pytest"})
    loaded = videozoo.load("cacl_c3d_ucf101", weights=tmp_path / "export")
    torch.testing.assert_close(loaded(x), exported(x))
    assert loaded.num_features == exported.num_features == 8 * tiny["width"]
