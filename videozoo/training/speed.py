"""Speed settings that depend on the device and the method: ``"auto"`` resolved once, before training.

On a CUDA GPU the defaults are bf16 autocast, channels-last-3d and ``torch.compile``; on the CPU they are float32,
contiguous and eager (channels-last slowed CPU training, docs/benchmarks.md). ``torch.compile`` is chosen only for a
method whose class declares ``compile_verified = True``: that flag means a test trains the method compiled and eager
and finds the same parameters (tests/test_compile.py). It is read from the class itself, not inherited, so a
subclass that changes ``forward`` is not compiled until its own test exists.

    speed = resolve_speed(device="cuda", method=method)          # amp, channels_last, compile all "auto"
    speed.amp, speed.channels_last, speed.compile                # "bf16", True, True (for a verified method)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch

__all__ = ["AUTO", "SpeedSettings", "compile_verified", "resolve_speed"]

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class SpeedSettings:
    """What a run uses (``amp``, ``channels_last``, ``compile``, ``cudnn_benchmark``) and what it asked for (``asked``).

    ``cudnn_benchmark``: let cuDNN time its convolution algorithms once per input shape and keep the fastest (the
    trainer's batches all have one shape); on CUDA unless deterministic algorithms were asked for.
    """

    device: str
    amp: Literal["bf16", "fp16"] | None
    channels_last: bool
    compile: bool
    asked: dict[str, Any]
    method: str = ""
    cudnn_benchmark: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line: ``speed (cuda, CoCLR): amp bf16 [auto], channels-last-3d on [auto], torch.compile on [auto]``."""

        def part(name: str, text: str) -> str:
            return f"{text} [auto]" if self.asked.get(name) == AUTO else text

        on = {True: "on", False: "off"}
        return (f"speed ({self.device}, {self.method}): " + ", ".join([
            part("amp", f"amp {self.amp or 'fp32'}"),
            part("channels_last", f"channels-last-3d {on[self.channels_last]}"),
            part("compile", f"torch.compile {on[self.compile]}"),
        ]))  # fmt: skip


def compile_verified(method: Any) -> bool:
    """Whether the method's own class (not a parent) declares ``compile_verified = True``."""
    return bool(vars(type(method)).get("compile_verified", False))


def resolve_speed(
    *,
    device: str | torch.device,
    method: Any,
    amp: Literal["auto", "bf16", "fp16"] | None = AUTO,
    channels_last: bool | Literal["auto"] = AUTO,
    compile: bool | Literal["auto"] = AUTO,
    bf16_supported: bool | None = None,
    compiler_available: bool | None = None,
    deterministic: bool | None = None,
) -> SpeedSettings:
    """Resolve ``"auto"`` settings for ``method`` on ``device``; explicit values are kept as given.

    ``"auto"``: on ``cuda``, ``amp="bf16"`` where the GPU supports it (Ampere and later; else float32: fp16 and
    its gradient scaler stay a choice made by hand), ``channels_last=True``, and ``compile=True`` when
    :func:`compile_verified` and a compiler backend is present (Triton); on any other device float32, contiguous,
    eager. ``bf16_supported`` / ``compiler_available`` / ``deterministic`` default to asking torch; tests pass them.
    """
    device = torch.device(device)
    asked = {"amp": amp, "channels_last": channels_last, "compile": compile}
    if amp not in (AUTO, None, "bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or None, got {amp!r}")
    for name, value in (("channels_last", channels_last), ("compile", compile)):
        if value != AUTO and not isinstance(value, bool):
            raise ValueError(f"{name} must be 'auto', True or False, got {value!r}")
    cuda = device.type == "cuda"
    if amp == AUTO:
        if cuda and bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        amp = "bf16" if cuda and bf16_supported else None
    if channels_last == AUTO:
        channels_last = cuda
    if compile == AUTO:
        if cuda and compiler_available is None:
            compiler_available = _has_triton()
        compile = cuda and bool(compiler_available) and compile_verified(method)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return SpeedSettings(
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        asked=asked,
        method=type(method).__name__,
        cudnn_benchmark=cuda and not deterministic,
    )


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton

        return bool(has_triton())
    except ImportError:  # a torch without the helper: let torch.compile say what is missing
        return True
