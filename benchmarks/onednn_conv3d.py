"""Minimal reproduction of the oneDNN Conv3d weight-gradient bug that S3D meets on short clips (AVX-512 CPUs).

Each case runs in its own process, because the bug corrupts the heap: forward + backward of
``nn.Conv3d(C, C, (k, 1, 1), stride=(2, 1, 1), padding=(k // 2, 0, 0), bias=False)`` on ``(B, C, T, 16, 16)``,
three times, then the weight gradient is compared with the one computed without oneDNN. ``raw`` is the bare op,
``guarded`` is :func:`videozoo.backbones.onednn_guard.temporal_conv`, the route S3D takes.

    python benchmarks/onednn_conv3d.py                   # the issue's shapes: C 32/64/128, T 4..8, B 1/2, k 7
    python benchmarks/onednn_conv3d.py --kernels 3 5 7 --frames 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16

Seen on a 2-core AMD EPYC with AVX-512 (torch 2.11.0, oneDNN 3.10.2): raw crashes at T 5 and gives a weight
gradient of 1e28..1e35 at T 6 and 7 for B >= 2 and C >= 16, with k 7 only (a crashing case sometimes hangs
instead: reported as hung after ``--timeout`` seconds); guarded is right everywhere.
A CPU without AVX-512 shows ``ok`` in every row.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys

import torch


def run_case(channels: int, frames: int, batch: int, kernel: int, guarded: bool) -> int:
    """Child process: 0 when the weight gradient matches the reference, 3 when it does not (a crash kills us)."""
    from videozoo.backbones.onednn_guard import temporal_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv3d(channels, channels, (kernel, 1, 1), stride=(2, 1, 1), padding=(kernel // 2, 0, 0),
                           bias=False)  # fmt: skip
    x = torch.randn(batch, channels, frames, 16, 16)
    forward = (lambda: temporal_conv(conv, x)) if guarded else (lambda: conv(x))
    grad_out = torch.randn_like(forward())
    for _ in range(3):
        conv.weight.grad = None
        forward().backward(grad_out)
    got = conv.weight.grad.clone()
    conv.weight.grad = None
    with torch.backends.mkldnn.flags(enabled=False):
        conv(x).backward(grad_out)
    return 0 if torch.allclose(got, conv.weight.grad, rtol=1e-3, atol=1e-3) else 3


def verdict(returncode: int | None, timeout: float) -> str:
    if returncode is None:  # a corrupted heap can deadlock malloc instead of crashing
        return f"hung (killed after {timeout:g} s)"
    if returncode == 0:
        return "ok"
    if returncode == 3:
        return "wrong gradient"
    return f"crashed (signal {-returncode})" if returncode < 0 else f"failed (exit {returncode})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 5, 6, 7, 8])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kernels", type=int, nargs="+", default=[7])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as hung")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(run_case(**json.loads(args.child)))

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'C':>4} {'T':>3} {'B':>2} {'k':>2}  {'raw':<22} guarded")
    rows = []
    for channels, frames, batch, kernel in itertools.product(args.channels, args.frames, args.batch, args.kernels):
        shape = {"channels": channels, "frames": frames, "batch": batch, "kernel": kernel}
        row = dict(shape)
        for guarded in (False, True):
            case = json.dumps({**shape, "guarded": guarded})
            try:
                returncode = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True,
                                            timeout=args.timeout, env={**os.environ, "PYTHONFAULTHANDLER": "0"},
                                            ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                returncode = None
            row["guarded" if guarded else "raw"] = verdict(returncode, args.timeout)
        rows.append(row)
        print(f"{channels:>4} {frames:>3} {batch:>2} {kernel:>2}  {row['raw']:<22} {row['guarded']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
