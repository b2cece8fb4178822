"""The install resolves to one coherent torch / torchvision / torchaudio release (issue: pip once paired torch 2.14.1
with torchaudio 2.11.1, whose library does not load beside it)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; CI runs 3.11

ROOT = Path(__file__).resolve().parents[1]
TRIO = ("torch", "torchvision", "torchaudio")


def declared() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {req.name: req for req in map(Requirement, deps)}


def test_the_trio_is_pinned_to_one_release() -> None:
    reqs = declared()
    for name in TRIO:
        spec = reqs[name].specifier
        assert spec and all(s.operator == "==" for s in spec), f"{name} {spec}: a range lets pip mix releases"
    torch, vision, audio = (Version(next(iter(reqs[name].specifier)).version.rstrip(".*")) for name in TRIO)
    # One release: torchaudio shares torch's minor version, torchvision's minor is torch's plus 15 (2.11 / 0.26).
    assert (audio.major, audio.minor) == (torch.major, torch.minor)
    assert (vision.major, vision.minor) == (0, torch.minor + 15)


def test_the_installed_and_the_ci_pinned_trio_satisfy_the_declaration() -> None:
    reqs = declared()
    pinned = dict(line.split("==") for line in (ROOT / ".ci" / "constraints.txt").read_text().split() if "==" in line)
    for name in TRIO:
        assert reqs[name].specifier.contains(Version(pinned[name])), (name, pinned[name])
        installed = Version(importlib.metadata.version(name)).public  # drop the "+cu130" build label
        assert reqs[name].specifier.contains(installed), f"installed {name} {installed} is not {reqs[name]}"
