"""``videozoo demo`` and the weights it ships: retrieval by motion, trained against random initialisation."""

from __future__ import annotations

import fnmatch
import importlib.resources
import json
import shutil
from pathlib import Path

import pytest
import torch

import videozoo
from videozoo import cli, registry
from videozoo.demo import DEMO_MODEL, run_demo
from videozoo.hub import ChecksumError, WeightsFormatError, sha256_file

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "videozoo" / "assets" / DEMO_MODEL


def test_demo_retrieves_by_motion_better_than_random_init(tmp_path, capsys) -> None:
    # 12 videos per class, the fewest that keep a gallery group on the queries' scene (demo.make_videos): 3-4 s.
    # At seed 1 the packaged weights find a same-class nearest video for 23 of 32 queries, random init for 14.
    assert run_demo(out_dir=tmp_path, seed=1, videos_per_class=12) == 0
    printed = capsys.readouterr().out
    png, out = tmp_path / "retrieval.png", tmp_path / "results.json"
    assert f"figure: {png}" in printed and f"results: {out}" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes left nothing behind

    summary = json.loads(out.read_text())
    assert summary["model"] == DEMO_MODEL and summary["seed"] == 1
    assert summary["data"]["num_queries"] == 32 and summary["data"]["num_gallery"] == 64
    trained, random_init = summary["results"]["pretrained"], summary["results"]["random init"]
    # the real check of the shipped weights: clearly better than the same network untrained, not by a query or two
    assert trained["R@1"] >= random_init["R@1"] + 0.15, (trained["R@1"], random_init["R@1"])
    assert trained["R@5"] >= trained["R@1"]
    for r in (trained, random_init):  # the figure's matrices and bars say what R@1 says
        hits = sum(r["nearest_class"][i][i] for i in range(len(r["nearest_class"])))
        assert hits / summary["data"]["num_queries"] == pytest.approx(r["R@1"])
        assert sum(r["per_class_R@1"].values()) / len(r["per_class_R@1"]) == pytest.approx(r["R@1"])
    assert f"{trained['R@1']:.3f}" in printed and f"{random_init['R@1']:.3f}" in printed


def test_demo_refuses_a_gallery_without_the_queries_scene(tmp_path) -> None:
    with pytest.raises(ValueError, match="at least 12"):
        run_demo(out_dir=tmp_path, videos_per_class=8)


def test_cli_demo_passes_its_options(monkeypatch, tmp_path) -> None:
    seen = {}
    monkeypatch.setattr("videozoo.demo.run_demo", lambda **kwargs: seen.update(kwargs) or 0)
    assert cli.main(["demo", "--out", str(tmp_path), "--seed", "3"]) == 0
    assert seen == {"out_dir": tmp_path, "device": "cpu", "seed": 3}


# -- the packaged weights ---------------------------------------------------------------------------
def test_packaged_weights_are_registered_pinned_and_hidden() -> None:
    entry = registry.get(DEMO_MODEL)
    assert entry.kind == "pretrained" and entry.arch == "r3d_tiny" and entry.tiny
    assert entry.weights.package == f"assets/{DEMO_MODEL}" and entry.weights.published
    assert entry.weights.status == "packaged with videozoo"
    # the registry pins the file that ships, and the file's own config.json agrees
    config = json.loads((ASSET / "config.json").read_text())
    assert sha256_file(ASSET / "model.safetensors") == entry.weights.sha256 == config["sha256"]
    assert config["name"] == DEMO_MODEL and config["architecture"] == entry.arch
    assert (ASSET / "model.safetensors").stat().st_size < 1_000_000  # small enough to ship in the wheel
    # a demo asset, not an encoder for real videos: hidden like the tiny backbones, found when asked for
    assert DEMO_MODEL not in videozoo.list_models() and DEMO_MODEL in videozoo.list_models(tiny=None)


def test_pyproject_ships_every_asset_file() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["videozoo"]
    shipped = {p.relative_to(ROOT / "videozoo").as_posix() for p in (ROOT / "videozoo" / "assets").rglob("*")}
    files = {p for p in shipped if (ROOT / "videozoo" / p).is_file()}
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files


@pytest.fixture
def packaged_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the assets that ``videozoo.load`` reads instead of the package's own (to damage it)."""
    root = tmp_path / "videozoo"
    shutil.copytree(ASSET, root / "assets" / DEMO_MODEL)
    real_files = importlib.resources.files
    monkeypatch.setattr(importlib.resources, "files", lambda p: root if p == "videozoo" else real_files(p))
    return root / "assets" / DEMO_MODEL


def test_an_intact_copy_loads(packaged_copy) -> None:
    model = videozoo.load(DEMO_MODEL)
    assert Path(model.zoo_weights) == packaged_copy / "model.safetensors"  # the copy was read, not the package
    clip = torch.randn(1, 3, 8, 32, 32)
    assert model(clip).shape == (1, 64)


def test_a_corrupted_copy_fails_its_checksum(packaged_copy) -> None:
    file = packaged_copy / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight: the file still parses, only the sha256 can tell
    file.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="reinstall videozoo") as err:
        videozoo.load(DEMO_MODEL)
    assert err.value.expected == registry.get(DEMO_MODEL).weights.sha256 != err.value.actual


@pytest.mark.parametrize(("damage", "message"), [("truncate", "is truncated"), ("delete", "is missing")])
def test_a_truncated_or_missing_copy_says_to_reinstall(packaged_copy, damage, message) -> None:
    file = packaged_copy / "model.safetensors"
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[:-1000])
    else:
        file.unlink()
    with pytest.raises(WeightsFormatError, match=message) as err:
        videozoo.load(DEMO_MODEL)
    assert "reinstall videozoo" in str(err.value)
