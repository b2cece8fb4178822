"""The GPU scripts' plumbing on the CPU: benchmarks/gpu_check.sh (dry run: checks, pipeline, backbones, summary) and
benchmarks/pipeline.py reading a recipe's settings; the figures themselves come from a device session."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_pipeline():
    spec = importlib.util.spec_from_file_location("pipeline_benchmark", ROOT / "benchmarks" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_settings_are_the_recipes_own():
    pipeline = load_pipeline()
    gdt = pipeline.recipe_config("stica", "gdt_k400")  # the preset over the recipe's defaults
    assert (gdt["method"], gdt["views"], gdt["frames"]) == ("gdt", 1, 30) and len(gdt["aug"]["scale"]) == 2
    tiny = pipeline.recipe_config("stica", "smoke", ["aug.crop_size=24", "frames=8"])  # nested keys, as the recipe
    assert (tiny["aug"]["crop_size"], tiny["frames"]) == (24, 8)
    with pytest.raises(SystemExit, match="unknown preset 'nope'"):
        pipeline.recipe_config("stica", "nope")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_stops_at_once_without_cuda(tmp_path: Path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path)}, timeout=120)  # fmt: skip
    assert done.returncode == 3 and "CUDA is not available" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.log"]  # nothing measured, nothing pretended


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_record(tmp_path: Path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "RECIPES": "stica", "PYTHON": sys.executable}
    command = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    out = tmp_path / "out"
    assert done.returncode == 0, done.stdout + (out / "gpu_check.log").read_text()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and [s["stage"] for s in summary["stages"]] == ["checks", "pipeline_stica", "backbones"]
    checks = json.loads((out / "checks.json").read_text())["checks"]
    assert set(checks) == {"auto", "bf16", "augment", "prefetch"} and all(c["ok"] for c in checks.values())
    run = json.loads((out / "pipeline_stica.json").read_text())
    assert run["recipe"] == "stica" and run["preset"] == "smoke" and run["data"]["samples"] == 16
    assert run["bound"] in ("loader", "step") and run["speed"]["compile"] is False
    rates = [run[k] for k in ("loader_clips_per_s", "step_clips_per_s", "together_clips_per_s", "mfu_step")]
    assert all(math.isfinite(r) and r > 0 for r in rates) and run["flops_per_step"] > 0
    assert run["clip_shape"]["video"] == [2, 3, 8, 32, 32] and run["clip_shape"]["audio"][:2] == [2, 1]
    assert json.loads((out / "backbones.json").read_text())["results"][0]["name"] == "r3d_18"
