"""hubconf.py, the generated model table and ruff all follow the registry and the style rules."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys

import pytest
import torch

import videozoo
from videozoo import docs
from videozoo.hub import WeightsUnavailableError

from .conftest import ROOT


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_entrypoints_equal_list_models() -> None:
    hubconf = _hubconf()
    # torch.hub.list's own rule for what counts as an entrypoint (it only takes GitHub repos, not folders)
    entrypoints = [f for f in dir(hubconf) if callable(getattr(hubconf, f)) and not f.startswith("_")]
    assert sorted(entrypoints) == videozoo.list_models()
    assert "CoCLR" in hubconf.coclr_s3d_k400_rgb.__doc__


def test_torch_hub_load_builds_and_refuses_random_weights() -> None:
    model = torch.hub.load(str(ROOT), "r3d_18", source="local", pretrained=False, num_classes=4)
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 4)
    with pytest.raises(WeightsUnavailableError, match="convert"):
        torch.hub.load(str(ROOT), "coclr_s3d_k400_rgb", source="local")


def test_torch_hub_bare_architectures_default_to_random_weights() -> None:
    """As torchvision: torch.hub.load(repo, "r3d_18") is an architecture; pretrained models keep pretrained=True."""
    model = torch.hub.load(str(ROOT), "r3d_18", source="local")
    assert model.zoo_name == "r3d_18" and not hasattr(model, "zoo_weights")  # built, no weights loaded
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 512)
    with pytest.raises(WeightsUnavailableError, match="architecture without pretrained weights"):
        torch.hub.load(str(ROOT), "r3d_18", source="local", pretrained=True)
    hubconf = _hubconf()
    for name in videozoo.list_models():
        default = inspect.signature(getattr(hubconf, name)).parameters["pretrained"].default
        assert default is (videozoo.registry.get(name).kind == "pretrained"), name


def test_models_md_is_generated_from_the_registry() -> None:
    on_disk = (ROOT / "docs" / "models.md").read_text()
    assert on_disk == docs.render(), "docs/models.md is stale: run `python -m videozoo.docs`"
    for name in videozoo.list_models():
        assert f"`{name}`" in on_disk


def test_ruff_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_list_and_info() -> None:
    run = [sys.executable, "-m", "videozoo.cli"]
    out = subprocess.run([*run, "list", "coclr_*"], capture_output=True, text=True, check=True).stdout
    assert "coclr_s3d_k400_rgb" in out and "4 models" in out
    out = subprocess.run([*run, "info", "stica_r2plus1d_k400"], capture_output=True, text=True, check=True).stdout
    assert "recipes/stica.py --preset k400" in out and "93.1" in out
    bad = subprocess.run([*run, "info", "stica_r2plus1d"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Did you mean" in bad.stderr
