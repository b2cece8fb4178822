"""``"auto"`` speed settings: resolved for the device and the method (pure function), CPU defaults unchanged,
the choice printed and recorded in the summary, the checkpoint and the run's config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from videozoo.training import Trainer, load_checkpoint, parse_config
from videozoo.training.speed import resolve_speed


class Verified(nn.Module):
    compile_verified = True


class Unverified(Verified):
    """Inherits the flag's attribute but not the test behind it."""


def test_auto_on_a_cuda_device_is_bf16_channels_last_and_compile_for_verified_methods():
    speed = resolve_speed(
        device="cuda:0", method=Verified(), bf16_supported=True, compiler_available=True, deterministic=False
    )
    assert (speed.amp, speed.channels_last, speed.compile, speed.cudnn_benchmark) == ("bf16", True, True, True)
    assert speed.asked == {"amp": "auto", "channels_last": "auto", "compile": "auto"} and speed.method == "Verified"
    assert "amp bf16 [auto]" in speed.describe() and "torch.compile on [auto]" in speed.describe()
    unverified = resolve_speed(device="cuda", method=Unverified(), bf16_supported=True, compiler_available=True)
    assert unverified.compile is False and unverified.amp == "bf16"  # a subclass is not verified by its parent
    older_gpu = resolve_speed(device="cuda", method=Verified(), bf16_supported=False, compiler_available=False)
    assert (older_gpu.amp, older_gpu.channels_last, older_gpu.compile) == (None, True, False)
    exact = resolve_speed(device="cuda", method=Verified(), bf16_supported=True, compiler_available=True,
                          deterministic=True)  # fmt: skip
    assert not exact.cudnn_benchmark  # autotuning picks kernels by timing: not with deterministic algorithms


def test_auto_on_the_cpu_keeps_float32_contiguous_eager_and_explicit_values_win():
    speed = resolve_speed(device="cpu", method=Verified())
    assert (speed.amp, speed.channels_last, speed.compile, speed.cudnn_benchmark) == (None, False, False, False)
    forced = resolve_speed(device="cpu", method=Unverified(), amp="bf16", channels_last=True, compile=True)
    assert (forced.amp, forced.channels_last, forced.compile) == ("bf16", True, True)
    off = resolve_speed(device="cuda", method=Verified(), amp=None, channels_last=False, compile=False,
                        bf16_supported=True, compiler_available=True)  # fmt: skip
    assert (off.amp, off.channels_last, off.compile) == (None, False, False)
    with pytest.raises(ValueError, match="amp must be"):
        resolve_speed(device="cpu", method=Verified(), amp="fp8")
    with pytest.raises(ValueError, match="compile must be"):
        resolve_speed(device="cpu", method=Verified(), compile="yes")


class Pairs(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return {"video": torch.full((3, 2, 4, 4), float(i)) + torch.rand(3, 2, 4, 4)}


class Regress(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)

    def forward(self, batch: dict) -> dict:
        return {"loss": self.conv(batch["video"]).square().mean(), "logs": {}}


@dataclass
class RunConfig:
    lr: float = 0.1
    amp: str | None = "auto"
    run_dir: str = "runs/x"


def test_cpu_defaults_unchanged_and_the_choice_is_recorded(tmp_path: Path, capsys):
    config, run_info = parse_config(RunConfig(), argv=["--run_dir", str(tmp_path)])
    method = Regress()
    trainer = Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=Pairs(),
                      batch_size=4, max_steps=2, progress=False, ckpt_dir=tmp_path / "checkpoints" / "stage",
                      config=config, run_info=run_info)  # fmt: skip
    assert (trainer.amp, trainer.channels_last, trainer.compile) == (None, False, False)
    assert method.conv.weight.is_contiguous() and not trainer.scaler.is_enabled()
    summary = trainer.fit()
    assert "speed (cpu, Regress): amp fp32 [auto], channels-last-3d off [auto], torch.compile off [auto]" in (
        capsys.readouterr().out
    )
    auto = {"amp": "auto", "channels_last": "auto", "compile": "auto"}
    expected = {"device": "cpu", "amp": None, "channels_last": False, "compile": False, "method": "Regress",
                "cudnn_benchmark": False, "asked": auto}  # fmt: skip
    assert summary["speed"] == expected
    assert load_checkpoint(tmp_path / "checkpoints" / "stage" / "last.pt")["speed"] == expected
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["resolved"] == {"Regress": expected} and saved["config"]["lr"] == 0.1  # parse_config's part kept


def test_resuming_under_other_settings_says_so(tmp_path: Path, caplog):
    def run(**speed) -> None:
        method = Regress()
        Trainer(method=method, optimizer=torch.optim.SGD(method.parameters(), lr=0.1), dataset=Pairs(), batch_size=4,
                epochs=2, progress=False, ckpt_dir=tmp_path, **speed).fit()  # fmt: skip

    run(max_steps=1)
    with caplog.at_level("WARNING", logger="videozoo.training"):
        run(amp="bf16")  # resumes at step 1 with bf16 autocast (on the CPU too)
    assert "resuming a run trained with {'amp': None" in caplog.text and "'amp': 'bf16'" in caplog.text
