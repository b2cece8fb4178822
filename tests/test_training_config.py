"""parse_config: presets, typed overrides in three spellings, unknown keys, --help, config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from videozoo.training.config import ConfigError, parse_config
from videozoo.training.presets import src


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3  # learning rate
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Config:
    data: str = "data/ucf101"  # dataset root
    epochs: int = 300  # passes over the data
    batch_size: int = 32
    amp: Literal["bf16", "fp16"] | None = None  # autocast dtype
    compile: bool = False
    milestones: tuple[float, ...] = (250 / 300, 280 / 300)
    views: list[int] = field(default_factory=lambda: [2])
    max_steps: int | None = None
    run_dir: str = ""
    optim: Optim = Optim()


PRESETS = {"ucf101": {"epochs": 300, "batch_size": 64}, "smoke": {"epochs": 1, "max_steps": 2, "optim.lr": 0.1}}


def parse(*argv: str, **kwargs):
    return parse_config(Config(), PRESETS, list(argv), exit_on_error=False, **kwargs)


def test_defaults_and_presets_in_order():
    assert parse()[0] == Config()
    config, info = parse("--preset", "ucf101,smoke")
    assert (config.epochs, config.batch_size, config.max_steps, config.optim.lr) == (1, 64, 2, 0.1)
    assert info["preset"] == "ucf101,smoke"
    # overrides win over presets, wherever --preset is written
    assert parse("epochs=5", "--preset=smoke")[0].epochs == 5


def test_overrides_of_every_type_and_spelling():
    config, info = parse(
        "--epochs",
        "10",
        "--batch-size=1e3",
        "amp=bf16",
        "--compile",
        "--milestones",
        "0.5,0.75",
        "views=[1,2,3]",
        "--max_steps",
        "none",
        "--optim.betas",
        "(0.5, 0.9)",
        "--data",
        "/x",
        "--optim.lr=-1e-4",
    )
    assert config.epochs == 10 and config.batch_size == 1000 and config.amp == "bf16" and config.compile is True
    assert config.milestones == (0.5, 0.75) and config.views == [1, 2, 3] and config.max_steps is None
    assert config.optim == Optim(lr=-1e-4, betas=(0.5, 0.9)) and config.data == "/x"
    assert info["overrides"]["epochs"] == 10
    assert parse("--compile", "false")[0].compile is False
    assert parse("--compile", "--epochs", "3")[0].compile is True
    assert parse("--max-steps", "7")[0].max_steps == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lrr", "1"], "did you mean 'optim.lr'"),
        (["--epoch", "1"], "did you mean 'epochs'"),
        (["--preset", "ucf"], "did you mean 'ucf101'"),
        (["--epochs", "ten"], "cannot read 'ten' as int"),
        (["--batch_size", "1.5"], "as int"),
        (["--amp", "fp8"], "not one of bf16, fp16"),
        (["--optim.betas", "1,2,3"], "expected 2"),
        (["--epochs"], "needs a value"),
        (["stray"], "cannot read 'stray'"),
    ],
)
def test_errors_are_clear(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse(*argv)


def test_bad_preset_key_and_exit_status(capsys):
    with pytest.raises(ConfigError, match=r"preset 'bad' sets unknown key 'epohcs'.*'epochs'"):
        parse_config(Config(), {"bad": {"epohcs": 1}}, ["--preset", "bad"], exit_on_error=False)
    with pytest.raises(SystemExit) as e:
        parse_config(Config(), PRESETS, ["--nope", "1"])
    assert e.value.code == 2 and "unknown key 'nope'" in capsys.readouterr().err


def test_help_lists_keys_defaults_comments_and_presets(capsys):
    with pytest.raises(SystemExit) as e:
        parse("--epochs", "3", "--help")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--epochs int = 300    # passes over the data" in text
    assert "--optim.lr float = 0.001    # learning rate" in text
    assert "smoke" in text and "max-steps=2" in text
    # one spelling, dashed (as the videozoo command's options); underscores are accepted too
    assert "--batch-size int = 32" in text and "--batch_size" not in text and "--run-dir" in text
    assert "--print-config" in text


def test_dashes_and_underscores_are_one_key(tmp_path: Path):
    for spelling in (["--run-dir", "x"], ["--run_dir", "x"], ["run-dir=x"], ["--run-dir=x"]):
        assert parse(*spelling, save=False)[0].run_dir == "x"
    assert parse("--optim.lr", "0.5")[0].optim.lr == 0.5
    assert parse("--max-steps", "3", "--batch_size", "2")[0].max_steps == 3


def test_print_config_prints_the_resolved_json_and_writes_nothing(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    for flag in ("--print-config", "--print_config"):
        with pytest.raises(SystemExit) as e:
            parse("--preset", "smoke", "--epochs", "7", f"--run-dir={run_dir}", flag)
        assert e.value.code == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["epochs"] == 7 and printed["max_steps"] == 2
        assert printed["optim"] == {"lr": 0.1, "betas": [0.9, 0.999]}
        assert printed["run_dir"] == str(run_dir)
    assert not run_dir.exists()  # nothing written


def test_sourced_preset_values_are_used_as_values():
    presets = {"paper": {"epochs": src(151, "paper"), "optim.lr": src(0.64, "script.sh:117")}}
    config, _ = parse_config(Config(), presets, ["--preset", "paper"], save=False, exit_on_error=False)
    assert config.epochs == 151 and config.optim.lr == 0.64


def test_config_json_written_to_run_dir(tmp_path: Path):
    _, info = parse("--preset", "smoke", f"run_dir={tmp_path / 'run'}")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["optim"] == {"lr": 0.1, "betas": [0.9, 0.999]}
    assert saved["run"]["preset"] == "smoke" and saved["run"]["argv"] == info["argv"]
    assert "--preset smoke" in info["command"]


def test_flat_names_reach_nested_keys_when_asked(capsys):
    """flat=True: ``--lr`` for ``--optim.lr`` (in presets too); without it the nested key needs its dots."""
    config, info = parse("--lr", "0.5", "--epochs", "3", "--optim.betas", "0.1,0.2", flat=True)
    assert config.optim == Optim(lr=0.5, betas=(0.1, 0.2)) and info["overrides"]["optim.lr"] == 0.5
    preset = parse_config(Config(), {"p": {"lr": 0.2}}, ["--preset", "p"], exit_on_error=False, flat=True)[0]
    assert preset.optim.lr == 0.2
    with pytest.raises(ConfigError, match=r"unknown key 'lr' \(did you mean 'optim\.lr'"):
        parse("--lr", "0.5")
    with pytest.raises(SystemExit):
        parse("--help", flat=True)
    assert "--lr (--optim.lr) float = 0.001    # learning rate" in capsys.readouterr().out


@dataclass
class Speed:
    compile: bool | Literal["auto"] = "auto"
    steps: int = 1
    run_dir: str = ""


@pytest.mark.parametrize(
    ("argv", "compile_", "steps"),
    [(["--compile"], True, 1), (["--compile", "--steps", "3"], True, 3), (["--compile", "auto"], "auto", 1),
     (["--compile", "false"], False, 1), (["--compile=auto"], "auto", 1)],
)  # fmt: skip
def test_a_field_that_may_be_a_bool_is_a_bare_flag_too(argv, compile_, steps):
    config, _ = parse_config(Speed(), {}, argv, save=False)
    assert (config.compile, config.steps) == (compile_, steps)


@dataclass
class Outer:
    run: Speed = field(default_factory=Speed)
    workers: int = 0


def test_aliases_are_more_names_for_keys(capsys):
    aliases = {"out": "run.run_dir", "jobs": "workers"}
    config, _ = parse_config(Outer(), {}, ["--out", "x", "--jobs=3"], save=False, aliases=aliases)
    assert (config.run.run_dir, config.workers) == ("x", 3)
    with pytest.raises(SystemExit):
        parse_config(Outer(), {}, ["--help"], aliases=aliases)
    assert "--out    the same as --run.run-dir" in capsys.readouterr().out
    with pytest.raises(ValueError, match="aliases name keys the config does not have: nope"):
        parse_config(Outer(), {}, [], aliases={"x": "nope"})
