"""A compiled training step lands where the eager one does, for every method that compiles by default on a GPU.

``compile_verified = True`` on a method class makes ``Trainer(compile="auto")`` compile it on CUDA; this file is the
evidence behind each flag. Each method trains three SGD steps through the Trainer, eagerly and under torch.compile
(inductor, CPU), on tiny contract backbones without BatchNorm or dropout, and the parameters and buffers (queues
included) must agree. The queue methods are the reason: in-place queue writes once made inductor silently use the
updated queue in backward (git log d9b9a54). The steps must also compile to few graphs that never recompile: the
host-side randomness of CoCLR, CACL and STiCA is drawn in one place per step, outside the graph.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videozoo.backbones.base import VideoBackbone
from videozoo.eval.finetune import Classifier
from videozoo.heads.projection import CoCLRHead
from videozoo.methods import CACL, GDT, CoCLR, InfoNCE, Method, STiCA
from videozoo.training import Trainer
from videozoo.training.speed import compile_verified

try:  # tests/ as a package or as a plain directory on sys.path
    from .dist_utils import run_two_process
except ImportError:
    from dist_utils import run_two_process

B, T, S = 4, 4, 8  # batch, frames, pixels


class TinyVideoNet(VideoBackbone):
    """conv 3→8 (stride 2) → ReLU → conv 8→12 → ReLU: a (B, 12, T/2, H/2, W/2) map; no BatchNorm."""

    num_features, in_channels, min_input = 12, 3, (1, 1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.conv1 = nn.Conv3d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv3d(8, 12, 3, padding=1)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class TinyAudioNet(VideoBackbone):
    num_features, in_channels, input_layout, min_input = 6, 1, "b c f t", (1, 1)

    def __init__(self, *, num_classes: int = 0, dropout: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, dropout=dropout)
        self.conv = nn.Conv2d(1, 6, 3, stride=2, padding=1)
        self._init_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Clips(torch.utils.data.Dataset):
    """Two views, flow, audio, source ids and labels: every method takes the entries it reads."""

    def __len__(self) -> int:
        return 4 * B

    def __getitem__(self, i: int) -> dict:
        video, flow, audio = torch.randn(2, 3, T, S, S), torch.randn(2, 3, T, S, S), torch.randn(1, 12, 10)
        return {"video": video, "flow": flow, "audio": audio, "source_id": i // 2, "label": i % 3}


class OneView(Clips):
    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        return {**item, "video": item["video"][0]}


def build(name: str) -> tuple[nn.Module, torch.utils.data.Dataset]:
    if name == "InfoNCE":
        return InfoNCE(backbone=TinyVideoNet(), dim=8, queue_size=2 * B), Clips()
    if name == "CoCLR":  # a queue as long as the batch: the second step mines, both coin sides come up (p 0.5)
        return CoCLR(backbone=TinyVideoNet(), other_backbone=TinyVideoNet(), dim=8, queue_size=B, topk=2,
                     other_head=CoCLRHead(in_dim=12, hidden_dim=12, out_dim=8), drop_self_p=0.5), Clips()  # fmt: skip
    if name == "CACL":
        return CACL(backbone=TinyVideoNet(), transformer=TinyVideoNet(), dim=8, queue_size=4 * B, num_frames=T,
                    sdp_hidden=8, sdp_dropout=0.0), Clips()  # fmt: skip
    if name == "STiCA":  # spatial crops only: temporal ones take the same path (gather_crops) with other sizes
        return STiCA(video_backbone=TinyVideoNet(), audio_backbone=TinyAudioNet(), pooling=1, dim=8,
                     head_dropout=0.0, num_small_crops=1, num_large_tcrops=0, num_small_tcrops=0), Clips()  # fmt: skip
    if name == "GDT":
        return GDT(video_backbone=TinyVideoNet(), audio_backbone=TinyAudioNet(), dim=8, head_dropout=0.0), OneView()
    if name == "Classifier":
        return Classifier(backbone=TinyVideoNet(), num_classes=3), OneView()
    raise KeyError(name)


METHODS = ["InfoNCE", "CoCLR", "CACL", "STiCA", "GDT", "Classifier"]
HOST_DRAWS = {"CoCLR", "CACL", "STiCA"}  # a coin, frame orders, crop boxes: drawn between two graphs


def train(name: str, *, compile: bool) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    method, data = build(name)
    trainer = Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=data,
                      batch_size=B, max_steps=3, compile=compile, progress=False, seed=1)  # fmt: skip
    return method, trainer.fit()


def test_the_flags_match_the_tests():
    flagged = {cls.__name__ for cls in _subclasses(Method) if compile_verified(cls.__new__(cls))}
    assert flagged == set(METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_compiled_training_equals_eager(name: str):
    torch._dynamo.reset()
    eager, eager_summary = train(name, compile=False)
    torch._dynamo.utils.counters.clear()
    compiled, summary = train(name, compile=True)
    frames = torch._dynamo.utils.counters["frames"]
    assert summary["speed"]["compile"] and summary["final_loss"] == pytest.approx(eager_summary["final_loss"], rel=1e-4)
    # float32 reordered by inductor, through BatchNorm on 4 rows and 3 steps at lr 0.1: ~1e-5 apart (a wrong
    # gradient, as the queue bug gave, moves parameters by ~lr x grad, orders of magnitude more)
    for (key, a), (_, b) in zip(eager.state_dict().items(), compiled.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=key)
    # one frame (two where host randomness splits the step), compiled once for all three steps: no recompiles
    assert frames["ok"] == 1 + (name in HOST_DRAWS), dict(frames)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(c) for c in found)) if found else found


@pytest.mark.parametrize("name", sorted(HOST_DRAWS))
def test_host_step_count_follows_the_state_dict(name: str):
    """The host copy of the step count (read instead of the buffer) is restored by load_state_dict: a resumed
    method draws what the uninterrupted one draws next."""
    torch.manual_seed(0)
    trained, data = build(name)
    batch = torch.utils.data.default_collate([data[i] for i in range(B)])
    for _ in range(2):
        trained(batch)
    torch.manual_seed(0)
    resumed, _ = build(name)
    resumed.load_state_dict(trained.state_dict())
    owner = resumed.sampler if name == "CACL" else resumed  # CACL counts in its frame-order sampler
    assert owner._host_steps == int(owner.num_steps) == 2
    trained.eval(), resumed.eval()  # the same draws, and BatchNorm-free nets: the same loss
    torch.testing.assert_close(resumed(batch)["loss"], trained(batch)["loss"])


def ddp_eager_and_compiled(rank: int, world_size: int, name: str) -> dict:
    """In each of two gloo processes: the Trainer's DDP step eager, then compiled (dynamo + AOT autograd, no
    codegen: the collectives of shuffle-BN, the queue and the global-batch NCE are what is under test)."""
    import functools

    torch.compile = functools.partial(torch.compile, backend="aot_eager")  # this worker process only
    states = []
    for compile in (False, True):
        torch.manual_seed(0)
        method, data = build(name)
        Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=data,
                batch_size=B // 2, max_steps=2, compile=compile, progress=False, seed=1).fit()  # fmt: skip
        states.append(method.state_dict())
    return {"eager": states[0], "compiled": states[1], "frames": torch._dynamo.utils.counters["frames"]["ok"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["InfoNCE", "STiCA"])
def test_compiled_ddp_step_equals_eager(name: str):
    for rank in run_two_process(ddp_eager_and_compiled, name, timeout=300):
        assert rank["frames"] > 0  # the compiled run went through dynamo
        for key, value in rank["eager"].items():
            torch.testing.assert_close(rank["compiled"][key], value, rtol=1e-5, atol=1e-6, msg=key)
