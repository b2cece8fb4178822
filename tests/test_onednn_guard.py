"""S3D's strided temporal conv routed around the oneDNN weight-gradient bug (videozoo/backbones/onednn_guard.py).

The bug only shows on AVX-512 CPUs, so the tests check two things that hold on any CPU: the guarded path is taken
for exactly the risky shapes, and it computes the same outputs and gradients as the plain convolution without
oneDNN. The last test runs S3D's backward on the clip lengths that crashed, in a subprocess so that a crash fails
the test instead of killing pytest: on an AVX-512 machine it fails without the guard.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import videozoo
from videozoo.backbones.onednn_guard import needs_explicit_time_padding, temporal_conv

# torch.backends.mkldnn.flags() warns about Intel-GPU TF32 on every use; the reference needs it off, nothing else.
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")


def conv_1a_temporal(channels: int = 16) -> nn.Conv3d:
    return nn.Conv3d(channels, channels, (7, 1, 1), stride=(2, 1, 1), padding=(3, 0, 0), bias=False)


@pytest.mark.parametrize("frames", [1, 4, 5, 6, 7, 13])
def test_short_inputs_of_a_strided_padded_temporal_conv_are_guarded(frames: int) -> None:
    x = torch.zeros(2, 16, frames, 4, 4)
    assert needs_explicit_time_padding(conv_1a_temporal(), x)


def test_what_is_not_guarded() -> None:
    conv, short = conv_1a_temporal(), torch.zeros(2, 16, 5, 4, 4)
    assert not needs_explicit_time_padding(conv, torch.zeros(2, 16, 14, 4, 4))  # long enough
    assert not needs_explicit_time_padding(nn.Conv3d(16, 16, (3, 1, 1), padding=(1, 0, 0)), short)  # stride 1
    assert not needs_explicit_time_padding(nn.Conv3d(16, 16, (7, 1, 1), stride=(2, 1, 1)), short)  # no padding
    with torch.no_grad():
        assert not needs_explicit_time_padding(conv, short)  # no weight gradient will be computed
    conv.weight.requires_grad_(False)
    assert not needs_explicit_time_padding(conv, short)  # frozen


@pytest.mark.parametrize("frames", range(1, 15))
def test_guarded_conv_equals_the_plain_conv_without_onednn(frames: int) -> None:
    torch.manual_seed(frames)
    conv, x = conv_1a_temporal(), torch.randn(2, 16, frames, 3, 5, requires_grad=True)
    out = temporal_conv(conv, x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    got = out.detach(), x.grad.clone(), conv.weight.grad.clone()
    x.grad, conv.weight.grad = None, None
    with torch.backends.mkldnn.flags(enabled=False):  # the reference: ATen's own kernels
        ref = conv(x)
        ref.backward(grad_out)
    for a, b in zip(got, (ref.detach(), x.grad, conv.weight.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("frames", "grad", "guarded"), [(5, True, True), (7, True, True), (16, True, False),
                                                          (5, False, False)])  # fmt: skip
def test_s3d_takes_the_guarded_path_for_short_training_clips(frames: int, grad: bool, guarded: bool) -> None:
    model = videozoo.create_model("s3d_tiny")
    calls = []
    model.Conv_1a.conv2.register_forward_hook(lambda *_: calls.append(1))  # the module is bypassed when guarded
    with torch.set_grad_enabled(grad):
        model(torch.randn(2, 3, frames, 32, 32))
    assert (not calls) == guarded


def test_s3d_backward_on_the_clip_lengths_that_crashed() -> None:
    # Full-width S3D, as the reproduction: T 4 and 5 crashed, 6 and 7 gave garbage weight gradients. Eval
    # mode, because BatchNorm's batch statistics over two clips of a one-step map make gradients ill-conditioned.
    script = textwrap.dedent("""
        import torch, videozoo
        for frames in (4, 5, 6, 7):
            torch.manual_seed(frames)
            model = videozoo.create_model("s3d").eval()
            x = torch.randn(2, 3, frames, 32, 32)
            model(x).square().mean().backward()
            got = model.Conv_1a.conv2.weight.grad.clone()
            model.zero_grad()
            with torch.backends.mkldnn.flags(enabled=False):
                model(x).square().mean().backward()
            ref = model.Conv_1a.conv2.weight.grad
            assert torch.allclose(got, ref, rtol=1e-3, atol=1e-6), (frames, (got - ref).abs().max().item())
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])
