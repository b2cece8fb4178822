"""The benchmark scripts whose figures docs/benchmarks.md quotes run end to end on tiny inputs (the wiring only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from videozoo.data.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]


def test_synthetic_supervised_trains_and_reports_the_retrieval_curve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_synthetic_dataset(data, videos_per_class=4, clips_per_group=2, scenes=2, frames=12, size=(32, 32),
                           colour_cast=0.6, progress=False)  # fmt: skip
    out = tmp_path / "out.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "synthetic_supervised.py"), "--data", str(data),
               "--models", "r3d_tiny,r3d_18_tiny", "--steps", "3", "--every", "2", "--batch", "4", "--workers", "0",
               "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["model"] for run in runs] == ["r3d_tiny", "r3d_18_tiny"]
    for run in runs:
        assert [point["step"] for point in run["curve"]] == [0, 2, 3]  # every 2 steps and the last one
        assert all(0.0 <= point["R@1"] <= 1.0 for point in run["curve"])
        assert all(math.isfinite(point["loss"]) for point in run["curve"][1:])
    assert "| r3d_18_tiny |" in done.stdout  # the table for the docs


def test_smoke_seeds_runs_each_seed_and_tabulates(tmp_path: Path) -> None:
    """Two seeds of the STiCA smoke run, cut to two steps: one row per seed, both read back from the run dirs."""
    tiny = ["--synthetic.videos-per-class", "4", "--synthetic.clips-per-group", "2", "--synthetic.frames", "20",
            "--epochs", "1", "--batch_size", "4", "--max_steps", "2"]  # fmt: skip
    out = tmp_path / "seeds.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "smoke_seeds.py"), "--recipe", "stica", "--seeds", "0,1",
               "--runs", str(tmp_path / "runs"), "--json", str(out), "--", *tiny]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = json.loads(out.read_text())["table"]
    assert [row["seed"] for row in table] == [0, 1]
    run_dirs = {int(d.name.split("_")[1].removeprefix("seed")): d for d in (tmp_path / "runs").iterdir()}
    assert sorted(run_dirs) == [0, 1]
    for row in table:
        results = json.loads((run_dirs[row["seed"]] / "results.json").read_text())
        assert row["pretrained"] == results["retrieval"]["pretrained"]  # the table is the runs' own figures
        assert f"--seed {row['seed']}" in results["command"] and "--max_steps 2" in results["command"]
    assert "| mean | video |" in done.stdout and "of 2 seeds |" in done.stdout
    written = {seed: (d / "results.json").stat().st_mtime_ns for seed, d in run_dirs.items()}
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # finished runs are read back
    assert again.returncode == 0 and "| mean | video |" in again.stdout
    assert {seed: (d / "results.json").stat().st_mtime_ns for seed, d in run_dirs.items()} == written


def test_onednn_reproduction_runs_each_case_in_its_own_process(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "onednn_conv3d.py"), "--channels", "16", "--frames", "5",
               "--batch", "2", "--timeout", "20", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(out.read_text())
    assert row["guarded"] == "ok"  # the route S3D takes is right on every CPU; "raw" crashes only on AVX-512 ones
    assert row["raw"] in {"ok", "wrong gradient"} or row["raw"].startswith(("crashed", "hung"))
