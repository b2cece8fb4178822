"""Converters of official checkpoints, tested on official checkpoints rebuilt from ``tests/fixtures/official_*.json``.

The fixtures record, per release format, every key and shape of the official state dict (measured once by running
the official repositories' model code, never committed) and the official model's outputs on a fixed clip when its
weights follow :func:`official_fill`. A test rebuilds such a checkpoint from the key list alone, converts it with
videozoo, and compares videozoo's outputs with the recorded official ones.

Key lists are stored compactly as *parts*: ``{prefix: part}``, where a part is ``{key: shape}``, ``{"same_as":
other_prefix}`` (a copy, e.g. the momentum encoder) or ``{"fixture": file, "path": [...], "strip": prefix,
"exclude": prefix}`` (keys already recorded in another fixture file).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import videozoo
from videozoo.heads import CoCLRHead, GDTHead
from videozoo.hub import ArchitectureMismatchError, LoadedWeights, WeightsFormatError, sha256_file
from videozoo.hub.converters import (
    ConversionError,
    UnsafeCheckpointError,
    add_convert_arguments,
    convert,
    convert_checkpoint,
    convert_if_official,
    detect_format,
    is_official_checkpoint,
    load_heads,
    load_official_checkpoint,
    run_convert_command,
)
from videozoo.hub.converters.coclr import BLOCK_ALIASES

FIXTURES = Path(__file__).parent / "fixtures"
INT64_LEAVES = ("num_batches_tracked", "queue_ptr", "queue_vname", "queue_label")
FILL_RULE = (
    "phase = crc32(key) / 2**32 * 2*pi; s = sin(arange(numel) + phase) in float64, reshaped; running_var <- 1 + "
    "0.25 (s + 1); running_mean, bias <- 0.1 s; weight with >= 2 dims <- 2 s / sqrt(fan_in); other weight <- "
    "1 + 0.1 s; anything else (queues, tokens) <- 0.1 s; integer buffers <- 0; cast to float32. Keys that are one "
    "tensor in the official model (CoCLR's blockN copies) take the fill of the first of them in sorted order. "
    "Input clip: sin(arange(numel) + phase('input')) in float64, cast to float32."
)


def official_fill(key: str, shape: list[int] | tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The deterministic value of one official tensor (``FILL_RULE``): needs no generator and no official code."""
    shape = tuple(shape)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    phase = zlib.crc32(key.encode()) / 2**32 * 2 * math.pi
    s = torch.sin(torch.arange(math.prod(shape), dtype=torch.float64) + phase).reshape(shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        value = 1 + 0.25 * (s + 1)
    elif leaf in ("running_mean", "bias"):
        value = 0.1 * s
    elif leaf == "weight" and len(shape) >= 2:
        value = s * 2 / math.sqrt(math.prod(shape[1:]))  # He-like scale: variance 2 / fan_in
    elif leaf == "weight":
        value = 1 + 0.1 * s
    else:
        value = 0.1 * s
    return value.to(dtype)


def official_input(shape: list[int] | tuple[int, ...]) -> torch.Tensor:
    phase = zlib.crc32(b"input") / 2**32 * 2 * math.pi
    return torch.sin(torch.arange(math.prod(shape), dtype=torch.float64) + phase).reshape(tuple(shape)).float()


def dtype_of(key: str) -> torch.dtype:
    return torch.int64 if key.rsplit(".", 1)[-1] in INT64_LEAVES else torch.float32


@cache
def fixture_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def expand_parts(parts: dict[str, Any]) -> dict[str, list[int]]:
    """The full ``{official key: shape}`` of a state dict described by parts (see the module docstring)."""
    out: dict[str, list[int]] = {}
    for prefix, part in parts.items():
        if "same_as" in part:
            source = part["same_as"]
            out |= {prefix + k[len(source) :]: v for k, v in list(out.items()) if k.startswith(source)}
        elif "fixture" in part:
            keys: Any = fixture_json(part["fixture"])
            for step in part["path"]:
                keys = keys[step]
            strip, exclude = part.get("strip", ""), part.get("exclude")
            out |= {
                prefix + k[len(strip) :]: v
                for k, v in keys.items()
                if k.startswith(strip) and not (exclude and k[len(strip) :].startswith(exclude))
            }
        else:
            out |= {prefix + k: v for k, v in part.items()}
    return out


def synthesize_state_dict(
    shapes: dict[str, list[int]],
    *,
    aliases: dict[str, str] | None = None,
    filled: tuple[str, ...] = ("",),
    module_prefix: str = "",
) -> dict[str, torch.Tensor]:
    """An official state dict with :func:`official_fill` values.

    Only keys starting with one of ``filled`` get real values; the others (parts every converter drops, such as
    momentum encoders and optimizer-sized copies) are zeros of the right shape that take no memory (expanded
    from one element, so the saved file stays small). ``aliases`` maps a key prefix to the prefix of the tensor
    it shares in the official model.
    """
    aliases = aliases or {}
    out: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape, dtype = shapes[key], dtype_of(key)
        primary = key
        for alias, target in aliases.items():  # at a key-component boundary: "x.block1.0.y" → "x.Conv_1a.y"
            if f".{alias}" in f".{key}":
                primary = f".{key}".replace(f".{alias}", f".{target}", 1)[1:]
        if any(key.startswith(p) for p in filled):
            out[module_prefix + key] = official_fill(primary, shape, dtype)
        else:
            out[module_prefix + key] = torch.zeros((), dtype=dtype).expand(shape)
    return out


# ================================================================================================
# Official checkpoints as the official scripts save them, rebuilt from the fixtures
# ================================================================================================
ATOL = 1e-4  # the references are official float32 outputs; videozoo matched them to <1e-6 when recorded


def variant_shapes(fmt: str, variant: str) -> dict[str, list[int]]:
    return expand_parts(fixture_json(f"official_{fmt}.json")["variants"][variant]["parts"])


def save_legacy(obj: object, path: Path) -> Path:
    """The pre-1.6 torch.save format the CoCLR (torch 1.4) and GDT (torch 1.3) releases were written in."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def coclr_checkpoint(variant: str, *, filled: bool = True, edit=None) -> dict:
    shapes = variant_shapes("coclr", variant)
    state = synthesize_state_dict(
        shapes, aliases=fixture_json("official_coclr.json")["aliases"], filled=("encoder_q.",) if filled else ()
    )
    if edit:
        edit(state)
    optimizer = {
        "state": {0: {"step": 10, "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
        "param_groups": [
            {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-5, "amsgrad": False, "params": [0]}
        ],
    }
    return {"epoch": 182, "state_dict": state, "best_acc": 0.61, "optimizer": optimizer, "iteration": 9999}


def gdt_checkpoint(variant: str = "audio-visual", *, filled: bool = True) -> dict:
    """``main_gdt.py``'s save: the scheduler state holds a pickled MultiStepLR (and its SGD), args a Namespace."""
    shapes = variant_shapes("gdt", variant)
    state = synthesize_state_dict(
        shapes, filled=("video_network.", "audio_network.", "mlp_v.", "mlp_a.") if filled else ()
    )
    param = nn.Parameter(torch.ones(2))
    sgd = torch.optim.SGD([param], lr=0.01, momentum=0.9)
    param.grad = torch.ones(2)
    sgd.step()  # a momentum buffer in a defaultdict, as after training
    after = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones=[241], gamma=0.1)
    scheduler = {
        "multiplier": 16,
        "total_epoch": 10,
        "after_scheduler": after,
        "finished": False,
        "base_lrs": [0.01],
        "last_epoch": 3,
        "_step_count": 4,
    }
    args = argparse.Namespace(
        model="av_gdt" if variant == "audio-visual" else "vid_text_gdt",
        vid_base_arch="r2plus1d_18",
        aud_base_arch="resnet9",
        use_mlp=True,
        dataset="kinetics",
    )
    return {"model": state, "optimizer": sgd.state_dict(), "lr_scheduler": scheduler, "epoch": 201, "args": args}


def stica_checkpoint(*, filled: bool = True, edit=None) -> dict:
    shapes = variant_shapes("stica", "transformer")
    state = synthesize_state_dict(shapes, filled=("module.",) if filled else ())
    if edit:
        edit(state)
    return {"epoch": 151, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def cacl_checkpoint(arch: str, *, filled: bool = True) -> dict:
    return synthesize_state_dict(variant_shapes("cacl", arch), filled=("module.encoder_q.",) if filled else ())


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per release format, named as released, with the fixtures' deterministic weights."""
    d = tmp_path_factory.mktemp("official")
    return {
        "coclr": save_legacy(coclr_checkpoint("coclr"), d / "CoCLR-ucf101-rgb-128-s3d-ep182.tar"),
        "gdt": save_legacy(gdt_checkpoint(), d / "gdt_K400.pth"),
        "stica": save_legacy(stica_checkpoint(), d / "checkpoint.pth.tar"),
    }


def assert_reference(got: torch.Tensor, ref: dict) -> None:
    got = got.detach().double().flatten()
    torch.testing.assert_close(got[:16], torch.tensor(ref["first16"], dtype=torch.float64), atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(got.sum().item(), ref["sum"], atol=ATOL * 10, rtol=1e-4)
    torch.testing.assert_close(got.norm().item(), ref["norm"], atol=ATOL * 10, rtol=1e-4)


# ================================================================================================
# Equal outputs with the official code
# ================================================================================================
def test_coclr_release_gives_the_official_features_and_embedding(official: dict[str, Path], tmp_path: Path) -> None:
    ref = fixture_json("official_coclr.json")["reference"]
    out = convert(official["coclr"], to="coclr_s3d_ucf101_rgb", out=tmp_path / "coclr")
    model = videozoo.load("coclr_s3d_ucf101_rgb", weights=str(out))
    projection = load_heads(out)["projection"]
    x = official_input(ref["input_shape"])
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.pool(features)
        embedding = projection(features)
    assert_reference(pooled[0], ref["feature"])
    assert_reference(pooled[1], ref["feature_1"])
    assert_reference(embedding[0], ref["embedding"])
    assert isinstance(projection, CoCLRHead)

    config = json.loads((out / "config.json").read_text())
    source = config["converted_from"]
    assert source["sha256"] == sha256_file(official["coclr"]) and source["file"] == official["coclr"].name
    assert source["format"] == "coclr" and source["variant"] == "coclr" and source["official_release"]
    assert source["heads_sha256"] == sha256_file(out / "heads.safetensors")
    assert set(source["dropped"]) == {
        "encoder_q.0.block1-5.* (462 tensors)",
        "encoder_k.* (928 tensors)",
        "queue, queue_ptr (2 tensors)",
        "sampler.* (928 tensors)",
        "queue_second, queue_vname, queue_label (3 tensors)",
        "top-level 'best_acc'",
        "top-level 'optimizer'",
        "top-level 'iteration'",
    }
    assert [m["value"] for m in config["metrics"]] == [51.8, 70.2, 81.4, 52.1]  # the release's published numbers
    card = (out / "README.md").read_text()
    assert source["sha256"] in card and "CoCLR-ucf101-rgb-128-s3d-ep182.tar" in card


def test_infonce_release_converts_with_its_own_buffers(tmp_path: Path) -> None:
    path = save_legacy(coclr_checkpoint("infonce", filled=False), tmp_path / "InfoNCE-ucf101-rgb-128-s3d-ep399.pth.tar")
    converted = convert_checkpoint(path, to="infonce_s3d_ucf101_rgb")
    assert (converted.format, converted.variant, converted.arch) == ("coclr", "infonce", "s3d")
    assert not any(k.startswith("block") for k in converted.state_dict)
    assert set(converted.dropped) == {
        "encoder_q.0.block1-5.* (462 tensors)",
        "encoder_k.* (928 tensors)",
        "queue, queue_ptr (2 tensors)",
        "top-level 'best_acc'",
        "top-level 'optimizer'",
        "top-level 'iteration'",
    }
    assert converted.info["epoch"] == 182
    queue = variant_shapes("coclr", "infonce")["queue"]  # (dim, K): read, not assumed
    assert (converted.info["dim"], converted.info["queue_size"]) == tuple(queue) == (128, 2048)


def test_s3dg_coclr_checkpoint_is_refused(tmp_path: Path) -> None:
    def gated(state):
        state["encoder_q.0.Mixed_3b.gating_b0.fc.weight"] = torch.zeros(64, 64, 1, 1, 1)

    path = save_legacy(coclr_checkpoint("infonce", filled=False, edit=gated), tmp_path / "s3dg.pth.tar")
    with pytest.raises(ConversionError, match="S3D-G"):
        convert_checkpoint(path, to="infonce_s3d_ucf101_rgb")


def test_gdt_release_gives_the_official_features_and_embeddings(official: dict[str, Path], tmp_path: Path) -> None:
    ref = fixture_json("official_gdt.json")["reference"]
    out = convert(official["gdt"], to="gdt_r2plus1d_k400", out=tmp_path / "gdt")
    model = videozoo.load("gdt_r2plus1d_k400", weights=str(out))
    heads = load_heads(out)
    assert set(heads) == {"video_head", "audio_backbone", "audio_head"} and isinstance(heads["video_head"], GDTHead)
    video, audio = official_input(ref["video_input_shape"]), official_input(ref["audio_input_shape"])
    with torch.no_grad():
        v, a = model(video), heads["audio_backbone"](audio)
        assert_reference(v[0], ref["video_feature"])
        assert_reference(a[0], ref["audio_feature"])
        assert_reference(heads["video_head"](v)[0], ref["video_embedding"])
        assert_reference(heads["audio_head"](a)[0], ref["audio_embedding"])
    source = json.loads((out / "config.json").read_text())["converted_from"]
    assert source["training_args"]["model"] == "av_gdt" and source["epoch"] == 201
    assert "top-level 'lr_scheduler'" in source["dropped"] and "top-level 'args'" in source["dropped"]


def test_gdt_video_text_release_keeps_the_video_side(tmp_path: Path) -> None:
    """``gdt_HT100M.pth`` comes from the video-text script: text tower and its head are dropped."""
    ref = fixture_json("official_gdt.json")["reference"]
    path = save_legacy(gdt_checkpoint("video-text"), tmp_path / "gdt_HT100M.pth")
    converted = convert_checkpoint(path, to="gdt_r2plus1d_ht100m")
    assert converted.variant == "video-text" and set(converted.heads) == {"video_head"}
    assert {"text_network.* (3 tensors)", "mlp_t.* (8 tensors)"} <= set(converted.dropped)
    model = videozoo.create_model("gdt_r2plus1d_ht100m").eval()
    model.load_state_dict(converted.state_dict)
    with torch.no_grad():  # the video network's fill is the same as in the audio-visual file
        assert_reference(model(official_input(ref["video_input_shape"]))[0], ref["video_feature"])


def test_stica_checkpoint_gives_the_official_pooled_embedding(official: dict[str, Path], tmp_path: Path) -> None:
    ref = fixture_json("official_stica.json")["reference"]
    out = convert(official["stica"], to="stica_r2plus1d_k400", out=tmp_path / "stica")
    model = videozoo.load("stica_r2plus1d_k400", weights=str(out))
    heads = load_heads(out)
    # no args in main_stica.py's file: attend over the map's own T (4 here, as --transformer_time_dim 4 for 30 frames)
    assert heads["pooling"].depth == 2 and heads["pooling"].time_steps is None
    assert heads["pooling"].transformer[0].mha.heads == 4
    video, audio = official_input(ref["video_input_shape"]), official_input(ref["audio_input_shape"])
    with torch.no_grad():
        pooled = heads["pooling"](model.forward_features(video))
        assert_reference(pooled[0], ref["pooled"])
        assert_reference(heads["video_head"](pooled)[0], ref["video_embedding"])
        assert_reference(heads["audio_head"](heads["audio_backbone"](audio))[0], ref["audio_embedding"])
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"] == []  # a training checkpoint, not a release: the paper's numbers are not its own
    assert config["converted_from"]["module_prefix"] is True
    assert config["converted_from"]["pooling"]["time_steps_from"].startswith("the map's own steps")


@pytest.mark.parametrize(("num_sec", "time_dim", "heads"), [(1, 4, 4), (2, 8, 8)])
def test_stica_pooling_shape_read_from_saved_args(tmp_path: Path, num_sec: int, time_dim: int, heads: int) -> None:
    """A 2-second model (--num_sec 2 --transformer_time_dim 8) keeps its 8 steps: nothing assumes 4 (issue 15)."""
    checkpoint = stica_checkpoint(filled=False)
    checkpoint["args"] = argparse.Namespace(num_sec=num_sec, transformer_time_dim=time_dim, num_head=heads)
    converted = convert_checkpoint(save_legacy(checkpoint, tmp_path / "c.pth.tar"), to="stica_r2plus1d_k400")
    pooling = converted.heads["pooling"].config
    assert (pooling["time_steps"], pooling["heads"], pooling["depth"], pooling["dim"]) == (time_dim, heads, 2, 512)
    assert converted.info["pooling"]["time_steps_from"] == "args.transformer_time_dim"
    assert converted.info["pooling"]["heads_from"] == "args.num_head"


def test_stica_args_whose_reshape_mixed_samples_are_refused(tmp_path: Path) -> None:
    checkpoint = stica_checkpoint(filled=False)
    checkpoint["args"] = argparse.Namespace(num_sec=2, transformer_time_dim=4, num_head=4)  # main_stica.py default 4
    with pytest.raises(ConversionError, match="transformer_time_dim 8"):
        convert_checkpoint(save_legacy(checkpoint, tmp_path / "c.pth.tar"), to="stica_r2plus1d_k400")


@pytest.mark.parametrize("arch", ["c3d", "r21d"])  # r3d (64 M parameters) was verified once, see the fixture
def test_cacl_checkpoint_gives_the_official_features_and_heads(arch: str, tmp_path: Path) -> None:
    variant = fixture_json("official_cacl.json")["variants"][arch]
    ref = variant["reference"]
    path = torch.save(cacl_checkpoint(arch), tmp_path / "model_300.pt") or tmp_path / "model_300.pt"
    converted = convert_checkpoint(path, to=f"cacl_{arch}_ucf101")
    assert (converted.format, converted.arch) == ("cacl", arch)
    assert (converted.info["dim"], converted.info["queue_size"]) == (128, 6400)  # from the `queue` buffer
    model = videozoo.create_model(f"cacl_{arch}_ucf101").eval()
    model.load_state_dict(converted.state_dict)
    heads = {k: h.build() for k, h in converted.heads.items()}
    pair = official_input(ref["input_shape"])  # (B, 2, C, T, H, W): a clip and its shuffled copy
    with torch.no_grad():
        f0, f1 = model(pair[:, 0]), model(pair[:, 1])
        both = torch.cat([f0, f1], dim=1)
        assert_reference(f0[0], ref["feature"])
        assert_reference(heads["contrast_head"](both)[0], ref["contrast_embedding"])
        assert_reference(heads["order_head"](both)[0], ref["order_logits"])
    assert {"module.encoder_transformer.* (392 tensors)", "module.queue, module.queue_ptr (2 tensors)"} <= set(
        converted.dropped
    )


# ================================================================================================
# Every key accounted for; clear errors
# ================================================================================================
@pytest.mark.parametrize(
    ("fmt", "variant", "name"),
    [
        ("coclr", "coclr", "coclr_s3d_k400_flow"),
        ("coclr", "infonce", "infonce_s3d_ucf101_flow"),
        ("gdt", "audio-visual", "gdt_r2plus1d_ig65m"),
        ("stica", "transformer", "stica_r2plus1d_k400"),
        ("cacl", "r3d", "cacl_r3d_ucf101"),
    ],
)
def test_every_official_key_is_kept_or_dropped_with_a_reason(fmt: str, variant: str, name: str, tmp_path: Path) -> None:
    make = {
        "coclr": lambda: coclr_checkpoint(variant, filled=False),
        "gdt": lambda: gdt_checkpoint(filled=False),
        "stica": lambda: stica_checkpoint(filled=False),
        "cacl": lambda: cacl_checkpoint(variant, filled=False),
    }
    path = save_legacy(make[fmt](), tmp_path / "official.pth")
    converted = convert_checkpoint(path, to=name)
    official = variant_shapes(fmt, variant)
    dropped = sum(int(k.rsplit("(", 1)[1].split()[0]) for k in converted.dropped if "tensors)" in k)
    kept = len(converted.state_dict) + sum(len(h.state_dict) for h in converted.heads.values())
    assert kept + dropped == len(official)
    assert set(converted.official_names.values()) <= set(official) | {"module." + k for k in official}
    model = videozoo.create_model(name)
    assert {k: list(v.shape) for k, v in converted.state_dict.items()} == {
        k: list(v.shape) for k, v in model.state_dict().items()
    }


def test_heads_match_the_heads_own_official_key_rules() -> None:
    """The converters' renames agree with CoCLRHead.official_keys and GDTHead.official_keys."""
    coclr = coclr_checkpoint("coclr", filled=False)
    from videozoo.hub.converters.coclr import convert_coclr
    from videozoo.hub.converters.gdt import convert_gdt

    head = convert_coclr(coclr, source="x").heads["projection"]
    assert head.state_dict.keys() == CoCLRHead.official_keys(coclr["state_dict"]).keys()
    gdt = gdt_checkpoint(filled=False)
    heads = convert_gdt(gdt, source="x").heads
    assert heads["video_head"].state_dict.keys() == GDTHead.official_keys(gdt["model"]).keys()
    assert heads["audio_head"].state_dict.keys() == GDTHead.official_keys(gdt["model"], prefix="mlp_a.").keys()


def test_an_unexpected_key_is_named(tmp_path: Path) -> None:
    bad = coclr_checkpoint("coclr", filled=False, edit=lambda s: s.update({"encoder_q.5.weight": torch.zeros(3)}))
    with pytest.raises(ConversionError, match=r"1 unexpected keys for a CoCLR/InfoNCE checkpoint: encoder_q\.5\.w"):
        convert_checkpoint(save_legacy(bad, tmp_path / "x.tar"), to="coclr_s3d_ucf101_rgb")
    extra_buffer = coclr_checkpoint("infonce", filled=False, edit=lambda s: s.update({"queue_extra": torch.zeros(3)}))
    with pytest.raises(ConversionError, match=r"unexpected: \['queue_extra'\]"):
        convert_checkpoint(save_legacy(extra_buffer, tmp_path / "y.tar"), to="coclr_s3d_ucf101_rgb")
    top = {**coclr_checkpoint("infonce", filled=False), "scheduler": {}}
    with pytest.raises(ConversionError, match=r"unexpected top-level entries \['scheduler'\]"):
        convert_checkpoint(save_legacy(top, tmp_path / "z.tar"), to="coclr_s3d_ucf101_rgb")


def test_a_wrong_shape_is_named_with_both_shapes(tmp_path: Path) -> None:
    def shrink(state: dict) -> None:
        for key in ("encoder_q.0.Conv_1a.conv1.weight", "encoder_q.0.block1.0.conv1.weight"):
            state[key] = torch.zeros(64, 3, 1, 5, 5)

    path = save_legacy(coclr_checkpoint("coclr", filled=False, edit=shrink), tmp_path / "x.tar")
    shapes = r"\(64, 3, 1, 5, 5\) \(videozoo Conv_1a\.conv1\.weight \(64, 3, 1, 7, 7\)"
    with pytest.raises(ConversionError, match=r"1 of wrong shape: encoder_q\.0\.Conv_1a\.conv1\.weight " + shapes):
        convert_checkpoint(path, to="coclr_s3d_ucf101_rgb")


def test_a_missing_key_and_differing_duplicates_are_errors(tmp_path: Path) -> None:
    gone = coclr_checkpoint(
        "coclr",
        filled=False,
        edit=lambda s: [
            s.pop("encoder_q.0.Mixed_5c.branch0.0.bn.bias"),
            s.pop("encoder_q.0.block5.2.branch0.0.bn.bias"),
        ],
    )
    with pytest.raises(ConversionError, match=r"1 missing: Mixed_5c\.branch0\.0\.bn\.bias"):
        convert_checkpoint(save_legacy(gone, tmp_path / "a.tar"), to="coclr_s3d_ucf101_rgb")
    one = {"encoder_q.0.block2.1.conv.weight": torch.ones(64, 64, 1, 1, 1)}
    edited = coclr_checkpoint("coclr", filled=False, edit=lambda s: s.update(one))
    with pytest.raises(ConversionError, match=r"block2\.1\.conv\.weight and encoder_q\.0\.Conv_2b\.conv\.weight"):
        convert_checkpoint(save_legacy(edited, tmp_path / "b.tar"), to="coclr_s3d_ucf101_rgb")
    assert fixture_json("official_coclr.json")["aliases"] == BLOCK_ALIASES  # measured from the official model


def test_a_checkpoint_of_another_architecture_or_method_is_refused(official: dict[str, Path]) -> None:
    with pytest.raises(
        ArchitectureMismatchError,
        match=r"gdt_K400\.pth is a GDT checkpoint .* but "
        r"'coclr_s3d_ucf101_rgb' is a 's3d' model.*gdt_r2plus1d_k400",
    ):
        convert_checkpoint(official["gdt"], to="coclr_s3d_ucf101_rgb")
    with pytest.raises(ArchitectureMismatchError, match=r"STiCA checkpoint .* holds weights converted from a GDT"):
        convert_checkpoint(official["stica"], to="gdt_r2plus1d_k400")
    assert convert_checkpoint(official["gdt"], to="r2plus1d_18").arch == "r2plus1d_18"  # the bare backbone fits


def test_the_command_reports_another_architecture(
    official: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_convert_arguments(parser)
    args = parser.parse_args([str(official["gdt"]), "--to", "coclr_s3d_ucf101_rgb", "--out", str(tmp_path / "o")])
    with pytest.raises(ArchitectureMismatchError):
        run_convert_command(args)
    assert not (tmp_path / "o").exists()
    args = parser.parse_args(
        [str(official["stica"]), "--to", "stica_r2plus1d_k400", "--out", str(tmp_path / "s"), "--no-heads"]
    )
    assert run_convert_command(args) == 0
    assert "dropped       : module.audio_network.base.fc.weight" in capsys.readouterr().out
    assert not (tmp_path / "s" / "heads.safetensors").exists()


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return os.makedirs, (str(self.target),)


def test_a_pickle_that_needs_code_is_refused_unrun(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Payload(tmp_path / "pwned")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"needs os\.makedirs, which is code, not weights.*weights_only"):
        load_official_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(UnsafeCheckpointError):
        convert_checkpoint(path, to="coclr_s3d_ucf101_rgb")


def test_training_state_loads_through_inert_stand_ins(official: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = load_official_checkpoint(official["gdt"])
    assert repr(checkpoint["args"]) == "<argparse.Namespace (not unpickled)>"
    assert checkpoint["args"].state["model"] == "av_gdt"
    scheduler = checkpoint["lr_scheduler"]["after_scheduler"]
    assert repr(scheduler) == "<torch.optim.lr_scheduler.MultiStepLR (not unpickled)>"
    assert repr(scheduler.state["optimizer"]) == "<torch.optim.sgd.SGD (not unpickled)>"
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the real GDT layout
        torch.load(official["gdt"], weights_only=True)
    numpy_acc = {**coclr_checkpoint("infonce", filled=False), "best_acc": np.float64(0.61)}  # saved by some forks
    assert convert_checkpoint(save_legacy(numpy_acc, tmp_path / "np.tar"), to="infonce_s3d_ucf101_rgb")


def test_not_a_checkpoint_and_unknown_layouts(tmp_path: Path) -> None:
    (tmp_path / "text.pth").write_text("<html>404</html>")
    with pytest.raises(
        WeightsFormatError,
        match=r"text\.pth is not a torch\.save checkpoint \(unpickling stops at: "
        r"Unsupported operand 60\)",
    ):
        load_official_checkpoint(tmp_path / "text.pth")
    with pytest.raises(ConversionError, match=r"none of the official formats.*top-level entries \['weights'\]"):
        detect_format({"weights": {"a.b": torch.zeros(1)}}, source="other.pth")
    assert detect_format(coclr_checkpoint("infonce", filled=False)) == "coclr"
    assert detect_format(gdt_checkpoint(filled=False)) == "gdt"
    assert detect_format(stica_checkpoint(filled=False)) == "stica"
    assert detect_format(cacl_checkpoint("c3d", filled=False)) == "cacl"
    positional = stica_checkpoint(
        filled=False, edit=lambda s: s.update({"module.video_pooling.2.pos_embs.0.weight": torch.zeros(64, 512)})
    )
    with pytest.raises(ConversionError, match="positional_emb"):
        convert_checkpoint(save_legacy(positional, tmp_path / "p.tar"), to="stica_r2plus1d_k400")


# ================================================================================================
# Loading: on the fly, heads
# ================================================================================================
def test_convert_if_official_gives_loadable_weights(official: dict[str, Path], tmp_path: Path) -> None:
    loaded = convert_if_official(str(official["gdt"]), "gdt_r2plus1d_k400")
    assert isinstance(loaded, LoadedWeights) and loaded.sha256 == sha256_file(official["gdt"])
    assert loaded.architecture == "r2plus1d_18" and loaded.config["num_classes"] == 0
    assert convert_if_official(str(tmp_path / "missing.pth"), "gdt_r2plus1d_k400") is None
    assert is_official_checkpoint(official["coclr"]) and is_official_checkpoint(official["stica"])
    renamed = tmp_path / "weights"  # no suffix: recognised by its first bytes
    renamed.write_bytes(official["gdt"].read_bytes()[:64])
    assert is_official_checkpoint(renamed)


def test_load_converts_an_official_file_on_the_fly(official: dict[str, Path]) -> None:
    ref = fixture_json("official_stica.json")["reference"]
    model = videozoo.load("stica_r2plus1d_k400", weights=str(official["stica"]))
    assert model.zoo_weights == str(official["stica"]) and not model.training
    pooling = load_heads(official["stica"], to="stica_r2plus1d_k400")["pooling"]
    with torch.no_grad():
        assert_reference(pooling(model.forward_features(official_input(ref["video_input_shape"])))[0], ref["pooled"])


def test_a_heads_file_names_only_known_builders(official: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file(
        {"x.weight": torch.zeros(1)},
        str(tmp_path / "heads.safetensors"),
        metadata={"videozoo_heads": json.dumps({"x": {"builder": "subprocess:run", "config": {"args": ["true"]}}})},
    )
    with pytest.raises(WeightsFormatError, match="unknown head builder 'subprocess:run'"):
        load_heads(tmp_path)
    (tmp_path / "no_heads").mkdir()
    with pytest.raises(WeightsFormatError, match=r"no heads\.safetensors"):
        load_heads(tmp_path / "no_heads")
