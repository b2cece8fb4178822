"""Route S3D's strided temporal convolution around a oneDNN bug on AVX-512 CPUs.

oneDNN's JIT weight-gradient kernel for 3D convolutions (``jit:avx512_core`` backward_weights, oneDNN 3.10 as
bundled with torch 2.11; torch 2.14 too) corrupts the heap, or returns a garbage gradient, when a temporal kernel of 7
with stride 2 and padding 3 meets an input of 5, 6 or 7 frames (batch >= 2, 16 channels or more). S3D's ``Conv_1a``
is exactly that convolution, and any clip of up to 7 frames reaches it at that length (``pad_to_minimum`` lifts
shorter clips to 5), so a short clip took the whole process down. CPUs without AVX-512 take other kernels and never
showed it; the forward pass and the input gradient are unaffected.

Padding the time axis first and convolving with zero temporal padding computes the same function and its
gradients, and takes a kernel path without the bug. It is applied on the CPU whenever the weight gradient will be
computed for a strided, padded temporal convolution of a short input (fewer than twice the kernel's frames), on any
CPU: the copy is a few frames, and the same code path everywhere means CI exercises what AVX-512 users run.
``benchmarks/onednn_conv3d.py`` reproduces the bug on the bare op, shape by shape, in subprocesses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["needs_explicit_time_padding", "temporal_conv"]


def needs_explicit_time_padding(conv: nn.Conv3d, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` would reach the buggy oneDNN weight-gradient kernel (see the module docstring)."""
    (kernel_t, _, _), (stride_t, _, _), (pad_t, _, _) = conv.kernel_size, conv.stride, conv.padding
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and conv.weight.requires_grad
        and stride_t > 1
        and pad_t > 0
        and x.shape[2] < 2 * kernel_t
    )


def temporal_conv(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a temporal ``(k, 1, 1)`` convolution, with the time padding made explicit where needed."""
    if conv.padding_mode != "zeros" or not needs_explicit_time_padding(conv, x):
        return conv(x)
    pad_t = conv.padding[0]
    x = F.pad(x, (0, 0, 0, 0, pad_t, pad_t))  # (B, C, T + 2p, H, W), zeros as the convolution's own padding
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, (0, *conv.padding[1:]), conv.dilation, conv.groups)
