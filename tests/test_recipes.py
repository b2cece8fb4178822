"""The pretraining recipes end to end on tiny synthetic data, as a user runs them: every stage trains, a second run
of the same command resumes the finished stages instead of training again, retrieval is evaluated, and the exported
weights load with ``videozoo.load``. One recipe also runs under torchrun with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import videozoo

ROOT = Path(__file__).resolve().parents[1]

# A few steps on a handful of videos: what is checked here is the wiring, not the learning (docs/benchmarks.md).
TINY = {
    "coclr": ["--synthetic.videos-per-class", "4", "--synthetic.clips-per-group", "2", "--synthetic.frames", "10",
              "--infonce_epochs", "1", "--coclr_epochs", "1", "--batch_size", "4", "--queue_size", "8",
              "--max_steps", "2", "--eval_clips", "1"],
    "cacl": ["--synthetic.videos-per-class", "4", "--synthetic.clips-per-group", "2", "--frame_epochs", "1",
             "--frame_batch_size", "8", "--frame_queue_size", "16", "--epochs", "1", "--batch_size", "4",
             "--queue_size", "8", "--max_steps", "2"],
    "stica": ["--synthetic.videos-per-class", "4", "--synthetic.clips-per-group", "2", "--synthetic.frames", "20",
              "--epochs", "1", "--batch_size", "4", "--max_steps", "2"],
}  # fmt: skip
EXPORTS = {"coclr": ["rgb", "flow"], "cacl": ["cnn", "transformer"], "stica": ["video", "audio"]}


def run_recipe(name: str, run_dir: Path, *extra: str, torchrun: int = 0) -> str:
    """Run ``recipes/<name>.py --preset smoke`` with the tiny overrides; return its output, fail with its tail."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    command = [*(launcher if torchrun else [sys.executable]), str(ROOT / "recipes" / f"{name}.py"),
               "--preset", "smoke", *TINY[name], "--workers", "0", "--progress", "false", "--run_dir", str(run_dir),
               *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{output[-4000:]}"
    return output


def exported_state(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in videozoo.load(str(path)).state_dict().items()}


@pytest.mark.parametrize("name", ["coclr", "cacl", "stica"])
def test_smoke_recipe_trains_evaluates_exports_and_resumes(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_recipe(name, run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["command"].startswith("python ") and f"recipes/{name}.py --preset smoke" in results["command"]
    config = results["config"]  # the resolved configuration, the same as config.json's
    assert config == json.loads((run_dir / "config.json").read_text())["config"]
    assert config["synthetic"]["enabled"] is True and config["synthetic"]["videos_per_class"] == 4
    assert config["aug"]["crop_size"] == 32 and config["run_dir"] == str(run_dir)
    retrieval = results["retrieval"]
    streams = retrieval.values() if name == "coclr" else [retrieval]
    for stream in streams:  # every stream evaluated, pretrained and at random initialisation
        assert set(stream) >= {"pretrained", "random_init"}
        assert all(0.0 <= stream[k]["R@1"] <= stream[k]["R@5"] <= 1.0 for k in ("pretrained", "random_init"))
    assert "retrieval" in first and "R@1" in first

    exports = results["exported"]
    assert sorted(exports) == sorted(EXPORTS[name])
    states = {}
    for key, path in exports.items():
        path = Path(path)
        assert (path / "model.safetensors").is_file() and (path / "README.md").is_file()
        config = json.loads((path / "config.json").read_text())
        assert config["input_spec"]["channels"] in ("rgb", "flow", "audio")
        states[key] = exported_state(path)
    card = (Path(exports[EXPORTS[name][0]]) / "README.md").read_text()
    assert f"recipes/{name}.py" in card and "--preset smoke" in card

    again = run_recipe(name, run_dir)  # same command: every stage finds its last checkpoint and does not train
    assert "resumed finished" in again
    for key, path in json.loads((run_dir / "results.json").read_text())["exported"].items():
        assert all(torch.equal(v, states[key][k]) for k, v in exported_state(Path(path)).items())


@pytest.mark.parametrize(("name", "released"), [("coclr", "ucf101_released"), ("stica", "k400_released")])
def test_released_switches_run_on_the_smoke_data(name: str, released: str, tmp_path: Path) -> None:
    """The official pipelines' code paths (CoCLR's view regimes and colour on flow; STiCA's one spectrogram per
    clip, normalise-first augmentation, official crop placement) run end to end; the config records them."""
    run_dir = tmp_path / "run"
    run_recipe(name, run_dir, "--preset", released, "--evaluate", "false")
    config = json.loads((run_dir / "results.json").read_text())["config"]
    if name == "coclr":
        assert config["views"] == "official" and config["colour_on_flow"] is True
        assert config["aug"]["crop_fallback"] == "resize_full"
    else:
        assert config["audio_views"] == "shared" and config["crop_placement"] == "official"
        assert config["aug"]["normalise_first"] is True and config["synthetic"]["enabled"] is True


def test_smoke_recipe_rejects_unknown_keys(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(ROOT / "recipes" / "coclr.py"),
        "--preset",
        "smoke",
        "--queue_sise",
        "8",
        "--run_dir",
        str(tmp_path / "run"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert done.returncode != 0 and "queue_size" in done.stderr  # the nearest key is suggested
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_stica_recipe_under_torchrun_two_gloo_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    output = run_recipe("stica", run_dir, "--optimizer", "sgd", "--lr", "0.1", torchrun=2)  # the paper's optimiser
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train"]["steps"] == 2 and "retrieval" in results  # rank 0 evaluated and wrote once
    assert output.count("results: ") == 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["world_size"] == 2
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all("momentum_buffer" in s and "exp_avg" not in s for s in state.values())  # SGD, not the smoke's Adam
    assert exported_state(Path(results["exported"]["video"]))


def test_retrieval_recipe_smoke(tmp_path: Path) -> None:
    """recipes/retrieval.py --preset smoke: synthetic split-1 test videos query its train videos (8 each, 4 classes)."""
    command = [sys.executable, str(ROOT / "recipes" / "retrieval.py"), "--preset", "smoke", "--run_dir",
               str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["num_queries"] == 8 and results["num_gallery"] == 8 and results["dataset"]["classes"] == 4
    recalls = [results[f"R@{k}"] for k in (1, 5, 10, 20, 50)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0  # k clamps to the 8 gallery videos of all 4 classes
    assert (tmp_path / "run" / "features" / "query.safetensors").is_file()
