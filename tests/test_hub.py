"""videozoo.hub: the weights format on disk, strict loading, and verified downloads from a Hub server.

The Hub tests run the real ``huggingface_hub`` client (``hf_hub_download``, its cache and offline
mode) against olah, a Hub-protocol server, started offline on 127.0.0.1 (tests/hub_server.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import videozoo
from videozoo import hub
from videozoo.hub import (
    ArchitectureMismatchError,
    ChecksumError,
    WeightsDownloadError,
    WeightsError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsUnavailableError,
    check_architecture,
    download_registered,
    load_state_dict_strict,
    read_weights,
    save_pretrained,
    sha256_file,
)
from videozoo.registry import Metric, ModelEntry, Weights

try:
    from .hub_server import HubServer, free_loopback_port
except ImportError:  # tests/ is not a package under pytest's default import mode
    from hub_server import HubServer, free_loopback_port

ROOT = Path(videozoo.__file__).resolve().parents[1]
FILES = ("model.safetensors", "config.json", "README.md")
REPO_ID = "videozoo-test/tiny"


class TinyNet(nn.Module):
    """A stand-in for a zoo backbone, with the attributes ``ModelEntry.build`` sets.

    It carries what makes saving tricky: a module registered twice (aliased tensors), a
    non-contiguous buffer and a bfloat16 buffer.
    """

    num_features = 4

    def __init__(self, num_classes: int = 3, *, name: str = "r3d_18_tiny") -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.alias = self.conv
        self.fc = nn.Linear(4, num_classes) if num_classes else nn.Identity()
        self.num_classes = num_classes
        self.register_buffer("scale", torch.arange(6.0).reshape(2, 3).t())
        self.register_buffer("bf16", torch.randn(5).to(torch.bfloat16))
        self.zoo_name, self.zoo_arch, self.zoo_config = name, name, {"width": 8, "layers": (1, 1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).mean((2, 3, 4)))


def trained_tiny(seed: int, **kwargs) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet(**kwargs)
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.num_batches_tracked += seed
    return model


def assert_same_state(got: dict[str, torch.Tensor], model: nn.Module) -> None:
    want = model.state_dict()
    assert list(got) == list(want) or sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


# ------------------------------------------------------------------------------------------------
# the format on disk
# ------------------------------------------------------------------------------------------------
def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = trained_tiny(1)
    out = save_pretrained(model, tmp_path / "w", class_names=["a", "b", "c"])
    assert out == tmp_path / "w" and sorted(p.name for p in out.iterdir()) == sorted(FILES)
    for source in (out, str(out), out / "model.safetensors"):
        loaded = read_weights(source)
        assert_same_state(loaded.state_dict, model)
        assert loaded.path == out / "model.safetensors"
        assert loaded.config["class_names"] == ["a", "b", "c"]
    assert loaded.metadata == {"format": "pt", "videozoo_arch": "r3d_18_tiny", "videozoo_name": "r3d_18_tiny"}
    # aliased tensors are stored under both names, independently
    assert (
        loaded.state_dict["alias.weight"].untyped_storage().data_ptr()
        != loaded.state_dict["conv.weight"].untyped_storage().data_ptr()
    )

    fresh = TinyNet().eval()
    assert load_state_dict_strict(fresh, loaded.state_dict) == []
    x = torch.randn(2, 3, 4, 8, 8)
    assert torch.equal(fresh(x), model.eval()(x))


def test_registry_model_round_trip_and_card_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = videozoo.registry.get("r3d_18_tiny")
    model = entry.build(num_classes=5).eval()
    out = save_pretrained(model, tmp_path / "r3d_tiny_ft")
    loaded = read_weights(out)
    assert_same_state(loaded.state_dict, model)
    assert loaded.config["num_classes"] == 5 and loaded.config["builder_config"] == {"width": 8}
    fresh = entry.build(num_classes=5).eval()
    load_state_dict_strict(fresh, loaded.state_dict)
    x = torch.randn(1, 3, 4, 32, 32)
    assert torch.equal(fresh(x), model(x))

    snippet = (out / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # the card's snippet loads './r3d_tiny_ft'
    namespace: dict = {}
    exec(snippet, namespace)
    assert namespace["output"].shape == (1, 5)


def test_config_and_card(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    model = trained_tiny(2)
    metric = Metric("UCF101 finetune (split 1)", "top-1", 42.5, "SGD 10 epochs, centre crop", "this run")
    card = {
        "recipe_command": "python recipes/finetune.py --data ucf101",
        "data": "UCF101 split 1 train",
        "epochs": 10,
        "repo_id": "someone/tiny-ucf",
    }
    out = save_pretrained(
        model,
        tmp_path,
        metrics=[metric, {"task": "UCF101 split-1 retrieval", "metric": "R@1", "value": 12.0}],
        class_names=["x", "y", "z"],
        card=card,
    )
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == config["architecture"] == "r3d_18_tiny"
    assert config["builder_config"] == {"width": 8, "layers": [1, 1]}
    assert config["num_classes"] == 3 and config["num_features"] == 4 and config["class_names"] == ["x", "y", "z"]
    assert config["input_spec"]["crop_size"] == 112 and config["input_spec"]["mean"] == [0.45] * 3
    assert hub.input_spec_from_config(config) == videozoo.registry.get("r3d_18_tiny").input_spec
    assert config["metrics"][0] == {
        "task": metric.task,
        "metric": "top-1",
        "value": 42.5,
        "protocol": metric.protocol,
        "source": "this run",
    }
    assert config["sha256"] == sha256_file(out / "model.safetensors")
    assert config["videozoo_version"] == videozoo.__version__ and config["card"]["epochs"] == 10
    assert config["num_parameters"] == sum(p.numel() for p in model.parameters())

    parsed = ModelCard.load(out / "README.md")
    assert parsed.data.library_name == "videozoo" and parsed.data.license == "apache-2.0"
    assert {"videozoo", "video", "self-supervised-learning", "r3d_18_tiny"} <= set(parsed.data.tags)
    assert parsed.data.datasets == ["ucf101"] and parsed.data.pipeline_tag == "video-classification"
    results = parsed.data.eval_results
    assert [(r.dataset_name, r.metric_type, r.metric_value) for r in results] == [
        ("UCF101", "top-1", 42.5),
        ("UCF101", "r-at-1", 12.0),
    ]
    body = parsed.text
    for needle in (
        "# r3d_18_tiny",
        "Tran et al.",
        "UCF101 split 1 train",
        card["recipe_command"],
        "SGD 10 epochs, centre crop",
        "Apache-2.0",
        "- epochs: 10",
        config["sha256"],
        "model = videozoo.load('r3d_18_tiny', weights='someone/tiny-ucf').eval()",
        "torch.randn(1, 3, 16, 112, 112)",
        "(1, 3) logits",
    ):
        assert needle in body, needle
    usage = body.split("```python\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(usage) == 5


def test_card_of_unregistered_model_and_official_conversion(tmp_path: Path) -> None:
    plain = save_pretrained(TinyNet(0, name="my_net"), tmp_path / "plain")
    config = json.loads((plain / "config.json").read_text())
    assert config["input_spec"] is None and config["num_classes"] == 0
    assert "Not recorded." in (plain / "README.md").read_text()

    entry = videozoo.registry.get("coclr_s3d_k400_rgb")
    converted = TinyNet(0, name="s3d")
    converted.zoo_name = entry.name  # as entry.build() names it
    out = save_pretrained(converted, tmp_path / "coclr", metrics=entry.metrics)
    text = (out / "README.md").read_text()
    assert "CoCLR-k400-rgb-128-s3d.pth.tar" in text and "Kinetics-400" in text and "kinetics-400" in text
    assert "R@1 | 45.6" in text and "- coclr" in text


def test_save_needs_a_zoo_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="zoo_name"):
        save_pretrained(nn.Linear(2, 2), tmp_path)
    with pytest.raises(ValueError, match="2 class_names"):
        save_pretrained(TinyNet(3), tmp_path, class_names=["a", "b"])


@pytest.mark.parametrize("stage", ["weights", "card"])
def test_interrupted_save_leaves_old_files_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    import safetensors.torch

    out = save_pretrained(trained_tiny(1), tmp_path)
    before = {name: (out / name).read_bytes() for name in FILES}

    def full_disk(tensors, filename, metadata=None):  # writes half a file, then fails like a full disk
        Path(filename).write_bytes(b"\x00" * 100)
        raise OSError(28, "No space left on device")

    def broken_card(*args, **kwargs):
        raise RuntimeError("card rendering failed")

    if stage == "weights":
        monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    else:
        monkeypatch.setattr("videozoo.hub.card.render_card", broken_card)
    with pytest.raises((OSError, RuntimeError)):
        save_pretrained(trained_tiny(2), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # no temporary file left behind
    assert {name: (out / name).read_bytes() for name in FILES} == before
    with pytest.raises((OSError, RuntimeError)):
        save_pretrained(trained_tiny(2), tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []


def test_saved_files_are_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = save_pretrained(TinyNet(), tmp_path)
    finally:
        os.umask(old)
    assert all((out / name).stat().st_mode & 0o044 == 0o044 for name in FILES)


def _torch_save_with_side_effect(path: Path, marker: Path) -> None:
    class Trap:  # unpickling this would create `marker`
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": {"w": torch.zeros(2)}, "trap": Trap()}, path)


@pytest.mark.parametrize("damage", ["truncated", "cut_header", "empty", "pickle", "text", "lfs_pointer"])
def test_damaged_or_foreign_files_raise_format_error(tmp_path: Path, damage: str) -> None:
    out = save_pretrained(TinyNet(), tmp_path / "w")
    file = out / "model.safetensors"
    data = file.read_bytes()
    marker = tmp_path / "unpickled"
    expected = {
        "truncated": "truncated",
        "cut_header": "truncated",
        "empty": "too short",
        "pickle": "torch.save",
        "text": "text file",
        "lfs_pointer": "Git LFS pointer",
    }[damage]
    if damage == "truncated":
        file.write_bytes(data[:-100])
    elif damage == "cut_header":
        file.write_bytes(data[:50])
    elif damage == "empty":
        file.write_bytes(b"")
    elif damage == "pickle":
        _torch_save_with_side_effect(file, marker)
    elif damage == "text":
        file.write_text("<!DOCTYPE html><html>Sign in to continue</html>")
    else:
        file.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 10\n")
    with pytest.raises(WeightsFormatError, match=expected) as err:
        read_weights(out)
    assert str(file) in str(err.value)
    assert not marker.exists()  # nothing was unpickled


def test_missing_files_raise_format_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsFormatError, match="does not exist"):
        read_weights(tmp_path / "nowhere.safetensors")
    (tmp_path / "ckpt.pth.tar").write_bytes(b"x")
    with pytest.raises(WeightsFormatError, match=r"no model.safetensors in .*ckpt.pth.tar.*videozoo convert"):
        read_weights(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    save = save_pretrained(TinyNet(), tmp_path / "ok")
    (save / "config.json").write_text("{not json")
    with pytest.raises(WeightsFormatError, match=r"config\.json is not valid JSON"):
        read_weights(save)


def test_local_checksum(tmp_path: Path) -> None:
    out = save_pretrained(TinyNet(), tmp_path)
    digest = sha256_file(out / "model.safetensors")
    assert read_weights(out, expected_sha256=digest.upper()).sha256 == digest
    with pytest.raises(ChecksumError) as err:
        read_weights(out, expected_sha256="ab" * 32)
    assert "ab" * 32 in str(err.value) and digest in str(err.value)
    assert (err.value.expected, err.value.actual) == ("ab" * 32, digest)
    assert isinstance(err.value, WeightsError) and isinstance(err.value, RuntimeError)


def flip_middle(file: Path, n: int = 1000) -> None:
    """Invert ``n`` bytes in the middle of ``file`` (inside the tensor data), keeping its size."""
    data = bytearray(file.read_bytes())
    start = len(data) // 2
    data[start : start + n] = bytes(b ^ 0xFF for b in data[start : start + n])
    file.write_bytes(bytes(data))


def test_save_records_size_and_sha256(tmp_path: Path) -> None:
    out = save_pretrained(TinyNet(), tmp_path)
    config = json.loads((out / "config.json").read_text())
    file = out / "model.safetensors"
    assert config["size"] == file.stat().st_size and config["sha256"] == sha256_file(file)


@pytest.mark.parametrize("source", ["directory", "file"])
def test_corrupted_local_weights_are_caught(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: 1,000 flipped bytes, same size, sha256 in the config.json beside the file."""
    model = videozoo.create_model("r3d_18_tiny").eval()
    out = save_pretrained(model, tmp_path / "w")
    file = out / "model.safetensors"
    recorded = json.loads((out / "config.json").read_text())["sha256"]
    flip_middle(file)
    where = out if source == "directory" else file
    with pytest.raises(ChecksumError) as err:
        read_weights(where)
    assert (err.value.expected, err.value.actual) == (recorded, sha256_file(file))
    assert str(file) in str(err.value) and recorded in str(err.value) and err.value.actual in str(err.value)
    with pytest.raises(ChecksumError, match=r"config\.json records"):
        videozoo.load(str(where))

    # the opt-outs skip the hash (the size still matches, so the damaged file is loaded, as asked)
    assert read_weights(where, verify="size").sha256 is None
    assert videozoo.load("r3d_18_tiny", weights=where, verify="size").zoo_weights == str(file)
    monkeypatch.setenv("VIDEOZOO_VERIFY", "size")
    assert read_weights(where).sha256 is None
    with pytest.raises(ChecksumError):  # an explicit argument wins over the environment
        read_weights(where, verify="sha256")
    monkeypatch.setenv("VIDEOZOO_VERIFY", "no")
    with pytest.raises(ValueError, match="VIDEOZOO_VERIFY='no'"):
        read_weights(where)
    with pytest.raises(ValueError, match=r"verify=False: expected one of 'sha256', 'size'"):
        read_weights(where, verify=False)


def test_size_is_checked_even_without_hashing(tmp_path: Path) -> None:
    out = save_pretrained(videozoo.create_model("r3d_18_tiny"), tmp_path / "w")
    file = out / "model.safetensors"
    size = file.stat().st_size
    data = file.read_bytes()
    file.write_bytes(data[:-100])  # truncated: the safetensors framing says so, whatever verify says
    for verify in ("sha256", "size"):
        with pytest.raises(WeightsFormatError, match=rf"truncated or padded: .*describes {size} bytes"):
            read_weights(out, verify=verify)
    # a well-formed file of another size (another model's weights copied over) fails on the recorded size
    shutil.copyfile(save_pretrained(TinyNet(), tmp_path / "other") / "model.safetensors", file)
    for verify in ("sha256", "size"):
        expected = f"size mismatch for {file}: its config.json records {size} bytes, the file has {file.stat().st_size}"
        with pytest.raises(ChecksumError, match=re.escape(expected)) as err:
            read_weights(out, verify=verify)
        assert err.value.expected == f"{size} bytes"


def test_an_unchanged_file_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = save_pretrained(TinyNet(), tmp_path / "w")
    file = out / "model.safetensors"
    weights_module = sys.modules["videozoo.hub.weights"]
    calls: list[str] = []
    real = weights_module.sha256_file
    monkeypatch.setattr(weights_module, "sha256_file", lambda path: calls.append(path) or real(path))
    read_weights(out)
    read_weights(out)
    assert len(calls) == 2  # just written: too recent to be remembered (its stat could survive a rewrite)

    monkeypatch.setattr(weights_module, "_RACY_SECONDS", 0.0)
    calls.clear()
    for _ in range(3):
        read_weights(out)
        read_weights(file)
    assert len(calls) == 1
    flip_middle(file, n=8)
    stat = file.stat()  # on a coarse-timestamp file system the rewrite may keep mtime: move it on for sure
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError):
        read_weights(out)
    assert len(calls) == 2


def test_missing_paths_say_they_do_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for source in ("missing/", "missing.safetensors", "./missing", tmp_path / "missing"):
        with pytest.raises(WeightsNotFoundError, match=r"weights path .*missing.* does not exist") as err:
            read_weights(source)
        assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, WeightsFormatError)


def test_repo_ids_and_paths_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub.parse_repo_id("org/name") == ("org/name", None)
    assert hub.parse_repo_id("org/name@v1.0") == ("org/name", "v1.0")
    for local in ("./org/name", "/abs/path", "~/w", "org/name.safetensors", "a/b/c", "name"):
        assert hub.parse_repo_id(local) is None, local
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert hub.parse_repo_id("org/name") is None  # an existing directory wins
    with pytest.raises(ValueError, match="two revisions"):
        read_weights("org/other@a", revision="b")


# ------------------------------------------------------------------------------------------------
# loading into a model
# ------------------------------------------------------------------------------------------------
def test_architecture_mismatch_names_both() -> None:
    with pytest.raises(ArchitectureMismatchError, match=r"'r3d_18'.*into 's3d'.*architecture is 's3d'"):
        check_architecture({"name": "r3d_18", "architecture": "r3d_18"}, "s3d")
    with pytest.raises(ArchitectureMismatchError, match="r3d_18_tiny"):
        check_architecture({"name": "r3d_18_tiny", "architecture": "r3d_18_tiny"}, TinyNet(name="s3d"))
    check_architecture({"name": "coclr_s3d_k400_rgb", "architecture": "s3d"}, "coclr_s3d_ucf101_flow")
    check_architecture({"architecture": "s3d"}, videozoo.registry.get("s3d"))
    check_architecture(None, "s3d")
    check_architecture({}, "s3d")


def test_strict_loading_lists_exactly_what_differs() -> None:
    model = TinyNet()
    state = dict(TinyNet().state_dict())
    del state["bn.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["conv.weight"] = torch.zeros(4, 3, 1, 1, 1)
    with pytest.raises(WeightsFormatError) as err:
        load_state_dict_strict(model, state)
    msg = str(err.value)
    assert "1 missing: bn.weight" in msg and "1 unexpected: extra.weight" in msg
    assert "1 of wrong shape: conv.weight (4, 3, 1, 1, 1) vs model (4, 3, 3, 3, 3)" in msg

    deep = nn.Sequential(*[nn.Linear(2, 2) for _ in range(15)])
    with pytest.raises(WeightsFormatError, match=r"30 missing: 0.weight, 0.bias, .*, 4.bias, ... and 20 more"):
        load_state_dict_strict(deep, {})
    with pytest.raises(WeightsFormatError, match="DDP"):
        load_state_dict_strict(model, {f"module.{k}": v for k, v in model.state_dict().items()})


def test_head_mismatch_is_skipped_only_when_allowed() -> None:
    source = trained_tiny(3, num_classes=3)
    target = TinyNet(num_classes=5)
    head = target.fc.weight.detach().clone()
    with pytest.raises(WeightsFormatError, match="only the classifier"):
        load_state_dict_strict(target, source.state_dict())
    skipped = load_state_dict_strict(target, source.state_dict(), allow_head_mismatch=True)
    assert sorted(skipped) == ["fc.bias", "fc.weight"]
    assert torch.equal(target.fc.weight, head) and torch.equal(target.conv.weight, source.conv.weight)
    assert sorted(load_state_dict_strict(TinyNet(0), source.state_dict(), allow_head_mismatch=True)) == [
        "fc.bias",
        "fc.weight",
    ]
    assert sorted(load_state_dict_strict(TinyNet(4), TinyNet(0).state_dict(), allow_head_mismatch=True)) == [
        "fc.bias",
        "fc.weight",
    ]
    trunk = {k: v for k, v in source.state_dict().items() if k != "bn.bias"}
    with pytest.raises(WeightsFormatError, match=r"1 missing: bn\.bias"):
        load_state_dict_strict(target, trunk, allow_head_mismatch=True)


# ------------------------------------------------------------------------------------------------
# the Hub, through huggingface_hub and a Hub-protocol server on loopback
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub_repo(tmp_path_factory: pytest.TempPathFactory):
    """olah serving REPO_ID with two commits: v1 (pinned by the test registry entries), then v2 on main."""
    from huggingface_hub import constants

    if importlib.util.find_spec("olah") is None:
        pytest.fail("the Hub tests need olah, a Hub-protocol server: pip install -e '.[dev]'")
    if shutil.which("git") is None:
        pytest.fail("the Hub tests need git (olah serves git repositories)")
    if constants.HF_HUB_OFFLINE:
        pytest.fail("HF_HUB_OFFLINE is set for the whole test run; the Hub tests need the loopback server")
    root = tmp_path_factory.mktemp("hub")
    models = [trained_tiny(seed) for seed in (11, 12)]
    dirs = [save_pretrained(m, root / f"v{i}", card={"repo_id": REPO_ID}) for i, m in enumerate(models, 1)]
    with HubServer(root / "server") as server:
        repo = server.repo(REPO_ID)
        commits = [repo.commit({name: d / name for name in FILES}, f"v{i}") for i, d in enumerate(dirs, 1)]
        yield SimpleNamespace(
            endpoint=server.endpoint,
            commits=commits,
            models=models,
            sha=[sha256_file(d / "model.safetensors") for d in dirs],
        )


def hub_entry(
    hub_repo: SimpleNamespace, *, revision: str | None = None, sha256: str | None = None, repo_id: str = REPO_ID
) -> ModelEntry:
    return ModelEntry(
        name="hubtest_tiny",
        kind="pretrained",
        builder="tests:none",
        arch="r3d_18_tiny",
        weights=Weights(repo_id=repo_id, revision=revision or hub_repo.commits[0], sha256=sha256 or hub_repo.sha[0]),
    )


def test_download_is_verified_and_pinned(hub_repo: SimpleNamespace, tmp_path: Path) -> None:
    kw = {"cache_dir": tmp_path, "endpoint": hub_repo.endpoint}
    loaded = download_registered(hub_entry(hub_repo), **kw)
    assert_same_state(loaded.state_dict, hub_repo.models[0])  # the pinned commit, although main moved on
    assert loaded.sha256 == hub_repo.sha[0] and loaded.config["sha256"] == hub_repo.sha[0]
    assert loaded.path.is_relative_to(tmp_path) and hub_repo.commits[0] in loaded.path.parts
    assert loaded.architecture == "r3d_18_tiny"
    latest = hub.download.fetch(REPO_ID, revision="main", expected_sha256=hub_repo.sha[1], **kw)
    assert_same_state(latest.state_dict, hub_repo.models[1])
    assert latest.config["sha256"] == hub_repo.sha[1]  # config.json from the same commit as the weights


@pytest.mark.parametrize("damage", ["flip_byte", "truncate"])
def test_damaged_cache_is_an_error_not_used(hub_repo: SimpleNamespace, tmp_path: Path, damage: str) -> None:
    kw = {"cache_dir": tmp_path, "endpoint": hub_repo.endpoint}
    entry = hub_entry(hub_repo)
    blob = Path(os.path.realpath(download_registered(entry, **kw).path))
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if damage == "flip_byte" else data[:-10])
    error = ChecksumError if damage == "flip_byte" else WeightsFormatError
    with pytest.raises(error) as err:
        download_registered(entry, **kw)
    assert "hf cache rm model/videozoo-test/tiny" in str(err.value) and "force_download=True" in str(err.value)
    if damage == "flip_byte":
        assert hub_repo.sha[0] in str(err.value) and sha256_file(blob) in str(err.value)
    repaired = download_registered(entry, force_download=True, **kw)
    assert_same_state(repaired.state_dict, hub_repo.models[0])


def test_unpinned_hub_weights_are_checked_against_their_config(hub_repo: SimpleNamespace, tmp_path: Path) -> None:
    kw = {"cache_dir": tmp_path, "endpoint": hub_repo.endpoint, "revision": hub_repo.commits[0]}
    loaded = hub.download.fetch(REPO_ID, **kw)  # no expected sha256: config.json from the same commit has one
    assert loaded.sha256 == hub_repo.sha[0]
    blob = Path(os.path.realpath(loaded.path))
    flip_middle(blob, n=8)
    with pytest.raises(ChecksumError, match=rf"its config\.json records {hub_repo.sha[0]}") as err:
        hub.download.fetch(REPO_ID, **kw)
    assert "hf cache rm model/videozoo-test/tiny" in str(err.value)
    assert hub.download.fetch(REPO_ID, verify="size", **kw).sha256 is None


def test_registry_sha256_is_enforced(hub_repo: SimpleNamespace, tmp_path: Path) -> None:
    kw = {"cache_dir": tmp_path, "endpoint": hub_repo.endpoint}
    with pytest.raises(ChecksumError, match="just downloaded"):
        download_registered(hub_entry(hub_repo, sha256=hub_repo.sha[1]), **kw)  # v2's hash pinned to v1
    with pytest.raises(WeightsDownloadError, match="videozoo-test/absent"):
        download_registered(hub_entry(hub_repo, repo_id="videozoo-test/absent"), **kw)
    unpublished = ModelEntry(
        name="x",
        kind="pretrained",
        builder="a:b",
        arch="s3d",
        weights=Weights(recipe="python recipes/x.py", how_to_get="Run the recipe."),
    )
    with pytest.raises(WeightsUnavailableError, match="Run the recipe"):
        download_registered(unpublished)
    unhashed = ModelEntry(name="x", kind="pretrained", builder="a:b", arch="s3d", weights=Weights(repo_id="o/n"))
    with pytest.raises(WeightsError, match="without a sha256"):
        download_registered(unhashed)


SCRIPT = textwrap.dedent("""
    import json, sys
    from videozoo.hub import WeightsDownloadError, download_registered, read_weights
    from videozoo.registry import ModelEntry, Weights

    repo, commit, sha, sha_main = sys.argv[1:5]
    def entry(repo_id):
        return ModelEntry(name="t", kind="pretrained", builder="a:b", arch="r3d_18_tiny",
                          weights=Weights(repo_id=repo_id, revision=commit, sha256=sha))
    w = download_registered(entry(repo))
    out = {"path": str(w.path), "sha": w.sha256, "arch": w.architecture, "config": w.config["sha256"]}
    out["main"] = read_weights(repo + "@main", expected_sha256=sha_main).config["sha256"]
    out["pinned"] = read_weights(repo, revision=commit, expected_sha256=sha).config["sha256"]
    try:
        download_registered(entry("videozoo-test/absent"))
    except WeightsDownloadError as err:
        out["error"] = str(err)
    print(json.dumps(out))
""")


@pytest.mark.slow  # two fresh interpreters importing torch: a few seconds
def test_environment_variables_and_offline_mode(hub_repo: SimpleNamespace, tmp_path: Path) -> None:
    """HF_ENDPOINT and HF_HUB_CACHE steer the download; with HF_HUB_OFFLINE=1 it comes from the cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        HF_HOME=str(tmp_path / "home"),
        HF_HUB_CACHE=str(tmp_path / "cache"),
        HF_ENDPOINT=hub_repo.endpoint,
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    args = [sys.executable, "-c", SCRIPT, REPO_ID, hub_repo.commits[0], hub_repo.sha[0], hub_repo.sha[1]]

    def run(**extra: str) -> dict:
        done = subprocess.run(args, env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    online = run()
    assert Path(online["path"]).is_relative_to(tmp_path / "cache")
    assert online["sha"] == online["config"] == online["pinned"] == hub_repo.sha[0]
    assert online["main"] == hub_repo.sha[1] and online["arch"] == "r3d_18_tiny"
    assert "videozoo-test/absent" in online["error"]

    # offline, with an endpoint where nothing listens: everything must come from the cache
    offline = run(HF_HUB_OFFLINE="1", HF_ENDPOINT=f"http://127.0.0.1:{free_loopback_port()}")
    assert offline["path"] == online["path"] and offline["sha"] == hub_repo.sha[0]
    assert offline["main"] == hub_repo.sha[1] and offline["pinned"] == hub_repo.sha[0]
    assert "HF_HUB_OFFLINE is set" in offline["error"]
