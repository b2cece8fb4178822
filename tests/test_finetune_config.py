"""One definition per fine-tuning setting: FinetuneConfig's defaults are what the API, the recipe and the command
use, every keyword finetune() ever took still works, and the papers' protocols are one table with sources."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

import videozoo
from videozoo.cli import main
from videozoo.data.transforms.presets import Sourced
from videozoo.eval.finetune_config import (
    FINETUNE_PROTOCOLS,
    FLAT_NAMES,
    KEYS,
    FinetuneConfig,
    Optimisation,
    resolve_config,
)
from videozoo.training.config import ConfigError, config_to_dict, flat_names

ROOT = Path(__file__).resolve().parents[1]
FINETUNE_MODULE = importlib.import_module("videozoo.eval.finetune")  # videozoo.eval.finetune is the function


def flat(config: dict, prefix: str = "") -> dict:
    """``{"optim.lr": 0.001, ...}`` from a nested config dict, to compare field by field."""
    out = {}
    for key, value in config.items():
        out.update(
            flat(value, f"{prefix}{key}.") if isinstance(value, dict) and key in NESTED else {prefix + key: value}
        )
    return out


NESTED = {name for name, tp in typing.get_type_hints(FinetuneConfig).items() if dataclasses.is_dataclass(tp)}
DEFAULTS = flat(config_to_dict(FinetuneConfig()))


class Stop(Exception):
    """Raised by a stand-in for the first stage: the config finetune() resolved, before any model is loaded."""


# -- the three entry points agree --------------------------------------------------------------------------------
def api_defaults(monkeypatch) -> dict:
    def first_stage(model, config):
        raise Stop(config)

    monkeypatch.setattr(FINETUNE_MODULE, "_load_model", first_stage)
    with pytest.raises(Stop) as stopped:
        videozoo.finetune("r3d_18_tiny", "train/")
    return flat(config_to_dict(stopped.value.args[0]))


def recipe_defaults() -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "finetune.py"), "--print-config"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    return {k: v for k, v in flat(printed).items() if k in DEFAULTS}  # the recipe's own keys (dataset, root) aside


def cli_defaults(monkeypatch) -> dict:
    seen = {}

    def fake_finetune(model, train, val, *, config):
        seen["config"] = config
        return None, SimpleNamespace(metrics={}, bad_videos={}, padded_videos={}, model_dir=None, out_dir=".")

    monkeypatch.setattr(videozoo, "finetune", fake_finetune)
    assert main(["finetune", "train/", "--model", "r3d_18_tiny"]) == 0
    return flat(config_to_dict(seen["config"]))


def test_every_default_is_the_same_in_the_api_the_recipe_and_the_command(monkeypatch) -> None:
    found = {"videozoo.finetune": api_defaults(monkeypatch), "recipes/finetune.py": recipe_defaults(),
             "videozoo finetune": cli_defaults(monkeypatch)}  # fmt: skip
    for where, values in found.items():
        differ = {k: (values.get(k), DEFAULTS[k]) for k in DEFAULTS if values.get(k, "<missing>") != DEFAULTS[k]}
        assert not differ, f"{where}: defaults that are not FinetuneConfig's (theirs, FinetuneConfig's): {differ}"


def test_finetune_declares_no_setting_of_its_own() -> None:
    """Settings live in FinetuneConfig only: a keyword with its own default in the signature would be a second copy."""
    parameters = inspect.signature(videozoo.finetune).parameters
    assert list(parameters) == ["model", "train", "val", "config", "protocol", "train_transform", "overrides"]
    assert not set(parameters) & (set(FLAT_NAMES) | set(KEYS))


# -- every keyword finetune() took before the config --------------------------------------------------------------
# The 39 setting keywords of the old signature (model, train, val and train_transform stay parameters), a value
# for each, and the field it must land in.
OLD_KEYWORDS = {
    "epochs": (3, "optim.epochs"), "lr": (0.01, "optim.lr"), "backbone_lr": (0.002, "optim.backbone_lr"),
    "backbone_lr_mult": (0.5, "optim.backbone_lr_mult"), "optimizer": ("sgd", "optim.optimizer"),
    "momentum": (0.8, "optim.momentum"), "weight_decay": (0.0, "optim.weight_decay"),
    "schedule": ("multistep", "optim.schedule"), "milestones": ((1, 2), "optim.milestones"),
    "gamma": (0.5, "optim.gamma"), "warmup_epochs": (1.0, "optim.warmup_epochs"), "batch_size": (4, "optim.batch_size"),
    "freeze": ("backbone", "freeze"), "dropout": (0.1, "dropout"), "label_smoothing": (0.1, "optim.label_smoothing"),
    "clips_per_video": (2, "data.clips_per_video"), "select": ("last", "evaluation.select"),
    "input_spec": ({"frames": 8, "crop_size": 32}, "data.frames"), "weights": ("w/", "weights"),
    "pretrained": (False, "pretrained"), "class_names": (["a", "b"], "data.class_names"),
    "test": ("cacl", "evaluation.test"), "video_eval": (False, "evaluation.video_eval"),
    "eval_every": (2, "evaluation.eval_every"), "out_dir": ("x/", "run.out_dir"), "save": (False, "run.save"),
    "task": ("t", "run.task"), "card": ({"a": 1}, "run.card"), "amp": ("bf16", "run.amp"),
    "channels_last": (True, "run.channels_last"), "compile": (True, "run.compile"),
    "grad_clip": (1.0, "optim.grad_clip"),
    "num_workers": (0, "data.num_workers"), "device": ("cpu", "run.device"), "seed": (3, "run.seed"),
    "resume": (False, "run.resume"), "max_steps": (5, "run.max_steps"), "progress": (False, "run.progress"),
    "tensorboard": (False, "run.tensorboard"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OLD_KEYWORDS))
def test_every_old_keyword_is_an_override(name: str) -> None:
    value, key = OLD_KEYWORDS[name]
    resolved = flat(config_to_dict(resolve_config(**{name: value})))
    expected = 8 if name == "input_spec" else value
    assert resolved[key] == json.loads(json.dumps(expected)), (name, key)
    also = {"data.crop_size"} if name == "input_spec" else set()
    assert {k for k in resolved if resolved[k] != DEFAULTS[k]} == {key, *also}, "it set another field too"


def test_mapping_keywords_set_the_fields_they_name() -> None:
    config = resolve_config(protocol="stica", test={"clips": 1, "crops": 1}, input_spec={"stride": 2})
    assert (config.evaluation.test, config.evaluation.test_clips, config.evaluation.test_crops) == ("stica", 1, 1)
    assert config.data.stride == 2 and config.data.frames is None
    with pytest.raises(TypeError, match="clips, crops, sampling, step, average"):
        resolve_config(test={"clip": 1})


def test_unknown_keywords_and_values_fail_before_anything_runs() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'batchsize' \(did you mean 'batch_size'\?\)"):
        videozoo.finetune("no_such_model", "no/such/folder", batchsize=4)
    with pytest.raises(ValueError, match="optimizer must be one of 'adam', 'adamw', 'sgd', got 'lamb'"):
        resolve_config(optimizer="lamb")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        resolve_config(epochs=0)
    with pytest.raises(ValueError, match="test must be one of"):
        resolve_config(test="mine")
    with pytest.raises(ValueError, match="protocol must be one of"):
        resolve_config(protocol="simclr")


# -- flat names --------------------------------------------------------------------------------------------------
def test_every_nested_key_has_its_flat_name() -> None:
    nested = [k for k in KEYS if "." in k]
    assert sorted(FLAT_NAMES.values()) == sorted(nested)
    assert all(key.rpartition(".")[2] == name for name, key in FLAT_NAMES.items())


@dataclass(kw_only=True)
class Logging:
    seed: int = 0  # also Run.seed


@dataclass(kw_only=True)
class Clashing(FinetuneConfig):
    logging: Logging = field(default_factory=Logging)


def test_a_flat_name_that_would_be_ambiguous_is_an_error_where_the_config_is_defined() -> None:
    with pytest.raises(ConfigError, match=r"seed: run\.seed, logging\.seed"):
        flat_names(Clashing)


# -- the protocols -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FINETUNE_PROTOCOLS))
def test_every_protocol_value_has_a_source_and_a_field(name: str) -> None:
    for key, entry in FINETUNE_PROTOCOLS[name].items():
        assert isinstance(entry, Sourced) and entry.source, f"{name}: {key} has no source"
        assert FLAT_NAMES.get(key, key) in KEYS, f"{name}: {key} is no FinetuneConfig field"


def test_protocol_then_overrides_and_the_old_spread_spelling() -> None:
    config = resolve_config(protocol="stica", epochs=20)
    assert (config.optim.epochs, config.optim.lr, config.data.clips_per_video) == (20, 0.0025, 10)
    base = FinetuneConfig(optim=Optimisation(epochs=3, lr=0.5))
    assert resolve_config(base, protocol="coclr").optim.epochs == 500  # the protocol over the config given
    assert resolve_config(base, protocol="coclr", lr=0.2).optim.lr == 0.2  # keywords over both
    assert resolve_config(**FINETUNE_PROTOCOLS["coclr"]) == resolve_config(protocol="coclr")


def test_the_command_maps_its_flags_onto_the_config(monkeypatch, capsys) -> None:
    seen = {}

    def fake_finetune(model, train, val, *, config):
        seen.update(model=model, train=train, val=val, config=config)
        return None, SimpleNamespace(metrics={}, bad_videos={}, padded_videos={}, model_dir=None, out_dir=".")

    monkeypatch.setattr(videozoo, "finetune", fake_finetune)
    argv = ["finetune", "t/", "--val", "v/", "--model", "m", "--protocol", "cacl", "--lr", "0.05", "--no-save",
            "--out", "o/", "--workers", "2", "--random-init", "--freeze-backbone", "--milestones", "3,4", "--quiet",
            "--test-crops", "3", "--card", '{"a": 1}']  # fmt: skip
    assert main(argv) == 0
    config = seen["config"]
    assert (seen["model"], seen["train"], seen["val"]) == ("m", "t/", "v/")
    assert (config.optim.optimizer, config.optim.epochs, config.optim.lr) == ("sgd", 150, 0.05)  # protocol, flag
    assert (config.run.save, config.run.out_dir, config.data.num_workers, config.run.progress) == (
        False,
        "o/",
        2,
        False,
    )
    assert (config.pretrained, config.freeze, config.optim.milestones) == (False, "backbone", (3.0, 4.0))
    assert (config.evaluation.test, config.evaluation.test_crops, config.run.card) == ("cacl", 3, {"a": 1})
    assert main(["finetune", "t/", "--model", "m", "--epochs", "0"]) == 2
    assert "epochs must be at least 1" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter, a tiny run: ~10 s
def test_recipe_passes_its_config_through(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "recipes" / "finetune.py"), "--preset", "smoke", "--epochs", "1",
               "--test-crops", "1", "--progress", "false", "--out-dir", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    saved = json.loads((out / "config.json").read_text())  # the recipe's: FinetuneConfig's keys and its own
    results = json.loads((out / "results.json").read_text())
    assert saved["config"]["optim"]["epochs"] == results["config"]["optim"]["epochs"] == 1
    assert results["protocol"]["crops"] == 1 and results["config"]["evaluation"]["test_crops"] == 1
    assert "--preset smoke" in results["config"]["run"]["card"]["recipe_command"]
    assert set(results["config"]) == {f.name for f in dataclasses.fields(FinetuneConfig)}  # the recipe's keys left out
