"""The recipes' presets: every value has a source, the generated table is current, the released presets hold the
official code's switches, and ``--print-config`` resolves a preset without writing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videozoo.data.transforms import TRAIN_PRESETS
from videozoo.data.transforms.presets import plain
from videozoo.training.presets import RECIPES, RUN_KEYS, Augment, load_recipe, provenance, render

ROOT = Path(__file__).resolve().parents[1]
MODULES = {name: load_recipe(ROOT / "recipes" / f"{name}.py") for name in RECIPES}
PAPER_AND_RELEASED = [(name, preset) for name, m in MODULES.items() for preset in m.PRESETS if preset != "smoke"]


def resolved(recipe: str, preset: str) -> dict:
    module = MODULES[recipe]
    return {k: v for k, (v, _) in provenance(module.Config, module.PRESETS, preset).items()}


def test_presets_md_is_generated_from_the_presets() -> None:
    on_disk = (ROOT / "docs" / "methods" / "presets.md").read_text()
    assert on_disk == render(MODULES), "docs/methods/presets.md is stale: run `python -m videozoo.training.presets`"


@pytest.mark.parametrize(("recipe", "preset"), PAPER_AND_RELEASED)
def test_every_method_key_of_a_paper_or_released_preset_has_a_source(recipe: str, preset: str) -> None:
    module = MODULES[recipe]
    for key, (_, source) in provenance(module.Config, module.PRESETS, preset).items():
        assert source, f"{recipe} --preset {preset}: {key} has no source"
        if source.startswith("run setting"):
            assert key in RUN_KEYS or key.startswith("synthetic."), f"{recipe}: method key {key} has no source"
    assert any(p.endswith("_released") for p in module.PRESETS), f"{recipe} has no released preset"


@pytest.mark.parametrize("recipe", RECIPES)
def test_aug_defaults_are_the_augmentation_preset(recipe: str) -> None:
    """One definition: a recipe's aug defaults are TRAIN_PRESETS[recipe] (mean/std stay the preset's)."""
    aug = MODULES[recipe].Config().aug
    expected = {k: v for k, v in plain(TRAIN_PRESETS[recipe]).items() if k not in ("mean", "std")}
    assert {k: getattr(aug, k) for k in expected} == expected
    assert set(expected) == {f for f in Augment.__dataclass_fields__}, "a VideoTrain keyword lacks a sourced value"


def test_released_presets_hold_the_official_switches() -> None:
    """Rows 1-10 of issue 15: what each released preset must switch (hand-written expectation)."""
    coclr = resolved("coclr", "ucf101_released")
    assert coclr["views"] == "official" and coclr["colour_on_flow"] is True
    assert coclr["aug.crop_fallback"] == "resize_full"
    assert resolved("coclr", "ucf101")["views"] == "two_clips"  # the paper's text
    assert resolved("coclr", "k400_released")["queue_size"] == 16384
    assert resolved("coclr", "k400_released")["views"] == "official"

    readme, defaults = resolved("cacl", "ucf101_released"), resolved("cacl", "ucf101_released_defaults")
    assert (readme["stride"], readme["batch_size"], readme["lr_schedule"]) == (2, 64, "cosine")  # README.md:30-34
    assert (defaults["stride"], defaults["batch_size"], defaults["lr_schedule"]) == (8, 8, "step")  # argparse
    assert defaults["milestones"] == (149, 249) and readme["sdp_weight"] == 0.0  # 150, 250 counted from epoch 1

    stica = resolved("stica", "k400_released")
    assert stica["aug.normalise_first"] and stica["aug.grey_weights"] == "bgr" and stica["aug.blur_fixed_xy"]
    assert stica["aug.antialias"] is False and stica["crop_placement"] == "official"
    assert stica["audio_views"] == "shared"
    gdt, gdt_defaults = resolved("stica", "gdt_k400_released"), resolved("stica", "gdt_k400_released_defaults")
    assert gdt["warmup_per"] == "epoch" and gdt["milestones"] == () and gdt["epochs"] == 201
    assert gdt_defaults["milestones"] == (151, 176) and gdt_defaults["epochs"] == 200  # 150, 175 after the warm-up


def test_values_in_no_official_file_say_so() -> None:
    module = MODULES["stica"]
    for preset, keys in (("k400", ("large_crops", "small_crops", "large_tcrops", "small_tcrops", "frames")),
                         ("gdt_k400", ("lr",))):  # fmt: skip
        rows = provenance(module.Config, module.PRESETS, preset)
        for key in keys:
            assert rows[key][1].startswith("in no official file"), (preset, key, rows[key][1])


def test_print_config_resolves_a_preset_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "recipes" / "stica.py"), "--preset", "k400_released", "--aug.flip-p", "0",
               "--run-dir", str(run_dir), "--print-config"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["aug"]["flip_p"] == 0.0 and config["aug"]["grey_weights"] == "bgr"
    assert config["crop_placement"] == "official" and config["run_dir"] == str(run_dir)
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []
