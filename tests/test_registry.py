"""The registry is the one table every other part reads; check its contents and lookups."""

from __future__ import annotations

import json
import re

import pytest

import videozoo
from videozoo import registry

PRETRAINED = [
    *(f"coclr_s3d_{d}_{m}" for d in ("ucf101", "k400") for m in ("rgb", "flow")),
    "infonce_s3d_ucf101_rgb",
    "infonce_s3d_ucf101_flow",
    *(f"gdt_r2plus1d_{d}" for d in ("k400", "ht100m", "ig65m")),
    "stica_r2plus1d_k400",
    *(f"cacl_{a}_ucf101" for a in ("c3d", "r3d", "r21d")),
]
BACKBONES = ["c3d", "frame_transformer", "mc3_18", "r21d", "r2plus1d_18", "r3d", "r3d_18", "resnet9_audio", "s3d"]


def test_every_model_of_the_product_card_is_registered() -> None:
    assert sorted(PRETRAINED) == videozoo.list_models(pretrained=True)
    assert videozoo.list_models(pretrained=False) == BACKBONES
    assert videozoo.list_models() == sorted(PRETRAINED + BACKBONES)


def test_list_models_filters() -> None:
    assert videozoo.list_models("coclr_*") == sorted(n for n in PRETRAINED if n.startswith("coclr_"))
    assert videozoo.list_models("*_flow", pretrained=True) == sorted(n for n in PRETRAINED if n.endswith("_flow"))
    tiny = videozoo.list_models(tiny=True)
    # tiny backbones are named *_tiny; the packaged demo weights are a pretrained model of one of them
    assert tiny and all(n.endswith("_tiny") for n in videozoo.list_models(pretrained=False, tiny=True))
    assert all(registry.get(registry.get(n).arch).tiny for n in videozoo.list_models(pretrained=True, tiny=True))
    assert set(tiny).isdisjoint(videozoo.list_models())
    assert len(videozoo.list_models(tiny=None)) == len(tiny) + len(videozoo.list_models())


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_entries_are_complete(name: str) -> None:
    entry = registry.get(name)
    # names follow {method}_{backbone}_{data}[_{modality}] and point at a registered backbone
    method, arch_part, *_ = name.split("_")
    assert method in {"coclr", "infonce", "gdt", "stica", "cacl"}
    assert registry.get(entry.arch).kind == "backbone" and arch_part in entry.arch.replace("_", "")
    assert entry.paper and entry.licence and entry.source and entry.description
    assert entry.weights is not None and not entry.weights.published
    assert entry.weights.how_to_get and (entry.weights.official_file or entry.weights.recipe)
    spec = entry.input_spec
    assert spec.frames > 0 and spec.crop_size > 0 and len(spec.mean) == len(spec.std) == 3
    assert spec.channels == ("flow" if name.endswith("_flow") else "rgb")
    for metric in entry.metrics:
        assert metric.protocol and metric.source and 0 < metric.value <= 100


def test_published_numbers_match_reference() -> None:
    def value(name: str, task_prefix: str, metric: str = "top-1") -> float:
        return next(
            m.value for m in registry.get(name).metrics if m.task.startswith(task_prefix) and m.metric == metric
        )

    assert value("coclr_s3d_ucf101_rgb", "UCF101 split-1 retrieval", "R@1") == 51.8
    assert value("infonce_s3d_ucf101_flow", "UCF101 split-1 retrieval", "R@1") == 45.2
    assert value("coclr_s3d_k400_rgb", "UCF101 finetune") == 87.9
    assert value("stica_r2plus1d_k400", "HMDB51") == 67.0
    assert value("gdt_r2plus1d_ig65m", "UCF101") == 95.2


def test_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(KeyError, match=r"Did you mean 'stica_r2plus1d_k400'"):
        videozoo.load("stica_r2plus1d_kinetics")
    with pytest.raises(registry.UnknownModelError, match="r2plus1d_18"):
        videozoo.create_model("r2plus1d18")
    with pytest.raises(KeyError, match="list_models"):
        videozoo.model_info("zzzzzzzz")


@pytest.mark.parametrize("name", ["coclr_s3d_k400_flow", "r3d_18", "cacl_c3d_ucf101"])
def test_model_info_is_json(name: str) -> None:
    info = videozoo.model_info(name)
    assert json.loads(json.dumps(info))["name"] == name
    assert re.search(r"\d+ frames", info["input_spec_summary"])


def test_double_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.get("s3d"))
