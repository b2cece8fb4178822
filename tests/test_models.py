"""Every registered model honours the backbone contract; load() semantics of the public API."""

from __future__ import annotations

import pytest
import torch

import videozoo
from videozoo import registry
from videozoo.backbones import InputShapeError


def tiny_input(name: str, batch: int = 2) -> torch.Tensor:
    spec = registry.get(name).input_spec
    if spec.channels == "audio":
        return torch.randn(batch, 1, 40, 50)  # (B, 1, F, T) log-filterbank, shortened
    return torch.randn(batch, 3, 4, 32, 32)  # (B, C, T, H, W)


@pytest.mark.parametrize("name", registry.list_models(tiny=None))
def test_forward_backward_on_a_tiny_clip(name: str) -> None:
    model = videozoo.create_model(name)
    x = tiny_input(name)
    emb = model(x)
    assert emb.shape == (2, model.num_features)
    feats = model.forward_features(model.check_input(x))
    assert feats.shape[:2] == (2, model.num_features) or feats.shape[-1] == model.num_features
    emb.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", registry.list_models(tiny=True))
def test_head_contract(name: str) -> None:
    model = videozoo.create_model(name, num_classes=5)
    x = tiny_input(name)
    assert model(x).shape == (2, 5)
    model.reset_head(7)
    assert model(x).shape == (2, 7)
    model.reset_head(0)
    assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ["r3d_18_tiny", "s3d_tiny", "resnet9_audio_tiny"])
def test_wrong_input_shape_says_what_was_expected(name: str) -> None:
    model = videozoo.create_model(name)
    x = tiny_input(name)
    with pytest.raises(InputShapeError, match=r"expects a float tensor \(B, C, ") as err:
        model(x[0])  # batch axis forgotten
    assert f"C={model.in_channels}" in str(err.value)
    with pytest.raises(InputShapeError, match="got"):
        model(torch.randn(*x.shape[:1], model.in_channels + 2, *x.shape[2:]))
    with pytest.raises(InputShapeError, match="uint8"):
        model((x * 100).to(torch.uint8))


@pytest.mark.parametrize("name", ["stica_r2plus1d_k400", "coclr_s3d_ucf101_rgb", "cacl_c3d_ucf101"])
def test_unpublished_weights_fail_with_how_to_get_them(name: str) -> None:
    from videozoo.hub import WeightsUnavailableError

    entry = registry.get(name)
    with pytest.raises(WeightsUnavailableError) as err:
        videozoo.load(name)
    message = str(err.value)
    assert entry.weights.how_to_get in message
    assert (entry.weights.official_file or entry.weights.recipe) in message


def test_bare_backbone_has_no_pretrained_weights() -> None:
    from videozoo.hub import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="pretrained=False"):
        videozoo.load("r2plus1d_18")
    assert videozoo.load("r2plus1d_18_tiny", pretrained=False).num_features == 64


def test_save_load_round_trip_and_new_head(tmp_path) -> None:
    model = videozoo.create_model("r3d_18_tiny", num_classes=3).eval()
    x = tiny_input("r3d_18_tiny")
    videozoo.save_pretrained(model, tmp_path / "m", class_names=["a", "b", "c"])

    same = videozoo.load("r3d_18_tiny", weights=tmp_path / "m")
    assert not same.training and same.class_names == ["a", "b", "c"]
    torch.testing.assert_close(same(x), model(x), rtol=0, atol=0)
    by_path = videozoo.load(str(tmp_path / "m"))  # the directory names its architecture
    torch.testing.assert_close(by_path(x), model(x), rtol=0, atol=0)

    fresh_head = videozoo.load("r3d_18_tiny", weights=tmp_path / "m", num_classes=10)
    assert fresh_head(x).shape == (2, 10) and fresh_head.class_names is None
    # the backbone is kept: identical embeddings once the heads are removed
    fresh_head.reset_head(0)
    model.reset_head(0)
    torch.testing.assert_close(fresh_head(x), model(x), rtol=0, atol=0)


def test_weights_of_another_architecture_are_refused(tmp_path) -> None:
    from videozoo.hub import ArchitectureMismatchError

    videozoo.save_pretrained(videozoo.create_model("r3d_18_tiny"), tmp_path / "r3d")
    with pytest.raises(ArchitectureMismatchError, match="r3d_18_tiny"):
        videozoo.load("mc3_18_tiny", weights=tmp_path / "r3d")


@pytest.mark.parametrize(
    "path",
    ["no_such_dir/", "./no_such_dir", "~/no_such_dir_videozoo", "no_such.safetensors", "no_such.pth", "org/no_such"],
)
def test_a_missing_path_is_reported_as_missing_not_as_a_model_name(path: str) -> None:
    from videozoo.hub import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match=rf"the path '{path}' does not exist") as err:
        videozoo.load(path)
    assert isinstance(err.value, FileNotFoundError) and "Did you mean" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        videozoo.load("r3d_18_tiny", weights=path if path != "org/no_such" else "no_such/")


def test_an_unknown_name_still_gets_suggestions() -> None:
    with pytest.raises(registry.UnknownModelError, match="Did you mean 'coclr_s3d_k400_rgb'"):
        videozoo.load("coclr_s3d_k40_rgb")


@pytest.mark.parametrize("arch", ["r2plus1d_18", "r3d_18", "mc3_18"])
def test_torchvision_state_dicts_load_as_they_are(arch: str, tmp_path) -> None:
    """The issue's case: torch.save(torchvision.models.video.<arch>().state_dict()) into videozoo.load."""
    import torchvision

    reference = getattr(torchvision.models.video, arch)().eval()  # random init: no download
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    model = videozoo.load(arch, weights=str(tmp_path / "tv.pth"))
    assert model.class_names is None and model.zoo_weights == str(tmp_path / "tv.pth")
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)  # all 400 Kinetics logits
    assert videozoo.load(arch, weights=tmp_path / "tv.pth", num_classes=0)(x).shape == (1, 512)


@pytest.mark.parametrize(("name", "num_classes"), [("s3d_tiny", 0), ("r3d_18_tiny", 5), ("mc3_18_tiny", 0)])
def test_plain_state_dicts_of_videozoo_models_load(name: str, num_classes: int, tmp_path) -> None:
    model = videozoo.create_model(name, num_classes=num_classes).eval()
    torch.save(model.state_dict(), tmp_path / "plain.pth")
    loaded = videozoo.load(name, weights=tmp_path / "plain.pth")
    x = tiny_input(name)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_a_plain_state_dict_of_another_architecture_is_refused_key_by_key(tmp_path) -> None:
    from videozoo.hub import WeightsFormatError

    torch.save(videozoo.create_model("s3d_tiny").state_dict(), tmp_path / "s3d.pth")
    with pytest.raises(WeightsFormatError) as err:
        videozoo.load("r3d_18_tiny", weights=tmp_path / "s3d.pth")
    message = str(err.value)
    assert str(tmp_path / "s3d.pth") in message and "another architecture" in message
    assert "120 missing: stem.0.weight" in message and "462 unexpected: Conv_1a.conv1.weight" in message


def test_a_pth_is_read_without_running_its_code(tmp_path) -> None:
    from pathlib import Path

    from videozoo.hub.converters import UnsafeCheckpointError

    class Trap:  # unpickling this would create `marker`
        def __reduce__(self):
            return (Path.touch, (marker,))

    marker = tmp_path / "unpickled"
    state = dict(videozoo.create_model("r3d_18_tiny").state_dict())
    torch.save({**state, "trap": Trap()}, tmp_path / "trap.pth")
    with pytest.raises(UnsafeCheckpointError, match="weights_only=True"):
        videozoo.load("r3d_18_tiny", weights=tmp_path / "trap.pth")
    assert not marker.exists()


def test_transforms_for_matches_the_input_spec(media) -> None:
    from videozoo.data import read_clip

    model = videozoo.create_model("r2plus1d_18_tiny")
    spec = registry.get("r2plus1d_18_tiny").input_spec
    frames = read_clip(media["mp4"], num_frames=spec.frames)  # (T, C, H, W) uint8
    clip = videozoo.transforms_for(model)(frames)
    assert clip.shape == (3, spec.frames, spec.crop_size, spec.crop_size) and clip.dtype == torch.float32
    assert model(clip.unsqueeze(0)).shape == (1, model.num_features)
    train_clip = videozoo.transforms_for("stica_r2plus1d_k400", train=True)(frames)
    assert train_clip.shape == (3, spec.frames, 112, 112)
