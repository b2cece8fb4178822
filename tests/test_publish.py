"""videozoo.hub.publish: what is refused, what is uploaded, and that the registry can pin the result.

olah (the loopback Hub server of tests/hub_server.py) is a read-only mirror: it serves git repos but accepts no
uploads. So ``publish`` runs against a fake ``HfApi`` passed as ``api=``, which records the calls and commits the
uploaded folder into an olah repo; the published revision and sha256 are then downloaded back through the real
``huggingface_hub`` client, as a registry entry pinning them would be.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import videozoo
from videozoo.hub import ChecksumError, download_registered, save_pretrained, sha256_file
from videozoo.hub.publish import (
    IncompleteCardError,
    Published,
    add_publish_arguments,
    check_publishable,
    publish,
    run_publish_command,
)
from videozoo.registry import Metric, ModelEntry, Weights

try:
    from .hub_server import HubServer
except ImportError:  # tests/ is not a package under pytest's default import mode
    from hub_server import HubServer

METRIC = Metric("UCF101 finetune (split 1)", "top-1", 12.5, "tiny smoke run", "tests")


class FakeHfApi:
    """Records create_repo / create_branch / upload_folder; an upload commits into ``repo`` when one is given."""

    def __init__(self, repo=None, **kwargs) -> None:
        self.repo, self.kwargs, self.calls = repo, kwargs, []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://hub.invalid/{kwargs['repo_id']}"

    def create_branch(self, **kwargs):
        self.calls.append(("create_branch", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        files = {
            p.name: p
            for p in folder.iterdir()
            if any(fnmatch.fnmatch(p.name, pattern) for pattern in kwargs["allow_patterns"])
        }
        oid = self.repo.commit(files, kwargs["commit_message"]) if self.repo else "0" * 40
        return SimpleNamespace(oid=oid, commit_url=f"https://hub.invalid/{kwargs['repo_id']}/commit/{oid}")


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return videozoo.create_model("r2plus1d_18_tiny")


def publishable(directory: Path) -> Path:
    return save_pretrained(
        tiny_model(), directory, metrics=[METRIC], card={"recipe_command": "python recipes/stica.py --preset smoke"}
    )


def test_a_card_without_metrics_licence_or_source_is_refused(tmp_path: Path) -> None:
    save_pretrained(tiny_model(), tmp_path / "bare")  # registered backbone: licence known, no metrics, no source
    with pytest.raises(IncompleteCardError) as err:
        publish(tmp_path / "bare", repo_id="org/bare", api=FakeHfApi())
    message = str(err.value)
    assert "metrics: no numbers measured" in message and "source: the card does not say" in message
    assert "licence" not in message

    class Unregistered(nn.Module):  # no registry entry: no licence either
        num_features = 2

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.zoo_name, self.zoo_arch, self.zoo_config = "my_net", "my_net", {}

    api = FakeHfApi()
    save_pretrained(Unregistered(), tmp_path / "mine", metrics=[METRIC], card={"recipe_command": "python train.py"})
    with pytest.raises(IncompleteCardError, match=r"lacks\n  - licence: the card has none"):
        publish(tmp_path / "mine", repo_id="org/mine", api=api)
    assert api.calls == []  # nothing reaches the Hub


def test_weights_changed_after_saving_are_refused(tmp_path: Path) -> None:
    directory = publishable(tmp_path / "w")
    with open(directory / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ChecksumError, match="the weights changed after saving"):
        check_publishable(directory)


def test_publish_makes_exactly_these_calls(tmp_path: Path) -> None:
    directory = publishable(tmp_path / "w")
    (directory / "notes.txt").write_text("not part of the weights")
    api = FakeHfApi()
    published = publish(directory, repo_id="videozoo/tiny", api=api, private=True, revision="v1")
    config = json.loads((directory / "config.json").read_text())
    assert api.calls == [
        ("create_repo", {"repo_id": "videozoo/tiny", "repo_type": "model", "private": True, "exist_ok": True}),
        ("create_branch", {"repo_id": "videozoo/tiny", "branch": "v1", "repo_type": "model", "exist_ok": True}),
        (
            "upload_folder",
            {
                "repo_id": "videozoo/tiny",
                "folder_path": str(directory),
                "repo_type": "model",
                "revision": "v1",
                "allow_patterns": ["model.safetensors", "config.json", "README.md"],
                "commit_message": "videozoo: r2plus1d_18_tiny (model.safetensors, config.json, README.md)",
            },
        ),
    ]
    assert published == Published(
        repo_id="videozoo/tiny",
        revision="0" * 40,
        sha256=config["sha256"],
        url=f"https://hub.invalid/videozoo/tiny/commit/{'0' * 40}",
    )
    assert published.sha256 == sha256_file(directory / "model.safetensors")
    assert published.registry_weights(official_file="gdt_K400.pth", converter="gdt") == (
        f"Weights(repo_id='videozoo/tiny', revision='{'0' * 40}', sha256='{config['sha256']}', "
        "official_file='gdt_K400.pth', converter='gdt')"
    )


def test_the_command_uses_the_token_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub

    made: list[FakeHfApi] = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: made.append(FakeHfApi(**kw)) or made[-1])
    directory = publishable(tmp_path / "w")
    parser = argparse.ArgumentParser()
    add_publish_arguments(parser)
    assert run_publish_command(parser.parse_args([str(directory), "--repo", "org/tiny"])) == 0
    assert made[0].kwargs == {"token": None, "library_name": "videozoo"}  # None: HF_TOKEN or the cached login
    assert [name for name, _ in made[0].calls] == ["create_repo", "upload_folder"]
    assert "Weights(repo_id='org/tiny', revision=" in capsys.readouterr().out


def test_the_published_revision_and_sha256_load_through_the_hub(tmp_path: Path) -> None:
    """What the registry pins after `videozoo publish` downloads and verifies with the real Hub client."""
    if importlib.util.find_spec("olah") is None:
        pytest.fail("the Hub tests need olah, a Hub-protocol server: pip install -e '.[dev]'")
    directory = publishable(tmp_path / "w")
    with HubServer(tmp_path / "server") as server:
        published = publish(
            directory, repo_id="videozoo-test/published", api=FakeHfApi(server.repo("videozoo-test/published"))
        )
        pinned = Weights(repo_id=published.repo_id, revision=published.revision, sha256=published.sha256)
        entry = ModelEntry(
            name="r2plus1d_18_tiny",
            kind="pretrained",
            arch="r2plus1d_18_tiny",
            config={"width": 8},
            builder="videozoo.backbones.resnet3d:r2plus1d_18",
            weights=pinned,
        )
        loaded = download_registered(entry, endpoint=server.endpoint, cache_dir=tmp_path / "cache")
    assert loaded.sha256 == published.sha256 and loaded.config["name"] == "r2plus1d_18_tiny"
    assert f"/snapshots/{published.revision}/" in str(loaded.path)
    model = tiny_model()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict[key], value), key
