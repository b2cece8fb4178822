"""videozoo.finetune on synthetic clips: it learns, freezes, splits learning rates, resumes, survives a bad video,
and leaves a model that loads, predicts and carries its class names and numbers."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from einops import rearrange

import videozoo
from tests import data_fixtures
from videozoo.api import input_spec_of
from videozoo.data import VideoTrain
from videozoo.data.synthetic import make_synthetic_dataset, render_clip, write_video
from videozoo.eval.finetune import FinetuneResult, param_groups
from videozoo.training import load_checkpoint

# Motion kinds, one direction each: a horizontal flip (in the augmentation) keeps every label.
CLASSES = ("left", "up", "rotate_cw", "zoom_in")
SMALL = {"frames": 8, "stride": 1, "resize": 36, "crop_size": 32}  # 8 frames at 32 px: a CPU-friendly clip
QUIET = {"num_workers": 0, "progress": False, "pretrained": False, "input_spec": SMALL}


def write_scenes(root: Path, *, videos_per_class: int, seed: int) -> Path:
    """``root/<class>/*.mp4`` + ``root/labels.csv``: every video of every class on one scene, motions from ``seed``.

    make_synthetic_dataset draws a new scene per video (its appearance seed includes the class), which a tiny
    network trained from scratch memorises instead of learning the motion: with 512 such videos it generalised
    only after ~150 steps, and not reliably. With the scene shared, appearance says nothing about the class and
    held-out videos (new speeds, positions, angles) are told apart from motion alone after ~40 steps.
    """
    rows = ["path,label"]
    for ci, label in enumerate(CLASSES):
        for i in range(videos_per_class):
            video, _ = render_clip(label, frames=8, size=(48, 48), appearance_seed=(7,), motion_seed=(seed, ci, i))
            rel = f"{label}/{label}_{i:03d}.mp4"
            write_video(root / rel, rearrange(torch.from_numpy(video), "t h w c -> t c h w"), fps=8)
            rows.append(f"{rel},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> SimpleNamespace:
    """Scenes for the accuracy run (training / held-out motions) and a small make_synthetic_dataset folder."""
    root = tmp_path_factory.mktemp("finetune_data")
    train = write_scenes(root / "train", videos_per_class=16, seed=0)
    held = write_scenes(root / "held", videos_per_class=8, seed=1)
    small = make_synthetic_dataset(root / "small", classes=CLASSES, videos_per_class=4, frames=8, size=(48, 48))
    return SimpleNamespace(train=train, held=held, small=small)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[torch.nn.Module, FinetuneResult]:
    """The accuracy run: from a CSV list (labels by class name) to a held-out folder, by model name."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("finetune_run")
    augment = VideoTrain(crop_size=32, scale=(0.6, 1.0), blur_p=0.0, grey_p=0.0, mean=(0.45,) * 3, std=(0.225,) * 3)
    return videozoo.finetune(
        "r3d_18_tiny", data.train / "labels.csv", data.held, epochs=10, lr=3e-3, backbone_lr_mult=1.0,
        weight_decay=0.0, dropout=0.0, batch_size=8, eval_every=5, train_transform=augment,
        test={"clips": 1, "crops": 3}, out_dir=out, **QUIET,
    )  # fmt: skip


def test_reaches_clearly_above_chance_on_held_out_videos(trained) -> None:
    _, result = trained
    chance = 1 / len(CLASSES)
    assert result.metrics["num_videos"] == 8 * len(CLASSES) and result.metrics["num_failed"] == 0
    assert result.metrics["top1"] >= 2 * chance, result.history
    assert [h["epoch"] for h in result.history] == list(range(1, 11))
    assert all({"train_loss", "train_acc", "lr"} <= h.keys() for h in result.history)
    validated = [h for h in result.history if "val_acc" in h]  # every 5 epochs
    assert [h["epoch"] for h in validated] == [5, 10]
    assert result.best_epoch == max(validated, key=lambda h: (h["val_acc"], h["epoch"]))["epoch"]
    assert result.best_checkpoint.name == "best.pt" and result.best_checkpoint.is_file()


def test_run_directory_holds_checkpoints_tensorboard_and_evaluation(trained) -> None:
    _, result = trained
    out = result.out_dir
    for name in ("checkpoints/last.pt", "history.json", "results.json", "predictions.csv", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"]["clips"] == 1 and results["protocol"]["crops"] == 3
    assert set(results["per_class_accuracy"]) == set(CLASSES)
    assert json.loads((out / "history.json").read_text())["history"] == result.history


def test_results_json_holds_the_resolved_config(trained) -> None:
    """The keywords of the run, resolved onto FinetuneConfig, come back nested: in the result and in results.json."""
    from videozoo.training.config import config_to_dict

    _, result = trained
    assert (result.config.optim.epochs, result.config.optim.lr, result.config.evaluation.eval_every) == (10, 3e-3, 5)
    assert result.config.evaluation.test_clips == 1 and result.config.data.frames == SMALL["frames"]
    results = json.loads((result.out_dir / "results.json").read_text())
    assert results["config"] == config_to_dict(result.config)
    assert {k: v for k, v in results.items() if k != "config"} == json.loads(json.dumps(result.metrics))


def test_saved_model_loads_with_class_names_metrics_and_card(trained) -> None:
    model, result = trained
    loaded = videozoo.load(result.model_dir)
    classes = sorted(CLASSES)  # the list's class names, sorted
    assert loaded.class_names == model.class_names == classes
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["class_names"] == classes and config["num_classes"] == len(classes)
    top1 = next(m for m in config["metrics"] if m["metric"] == "top-1")
    assert top1["value"] == pytest.approx(100 * result.metrics["top1"], abs=0.01)
    assert "finetune" in top1["task"] and "3 crops" in top1["protocol"]
    card = (result.model_dir / "README.md").read_text()
    assert "top-1" in card and "finetuned" in card and "zoom_in" in card
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(clip), model.eval()(clip), atol=1e-5)


def test_saved_model_is_publishable(trained) -> None:
    """Metrics, licence and source are on the card, so `videozoo publish` uploads it (here to a recording fake)."""
    from videozoo.hub.publish import check_publishable, publish

    _, result = trained
    assert check_publishable(result.model_dir)["class_names"] == sorted(CLASSES)
    calls = []

    class Api:  # the two HfApi methods publish calls
        def create_repo(self, **kwargs):
            calls.append(("create_repo", kwargs["repo_id"]))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", sorted(kwargs["allow_patterns"])))
            return SimpleNamespace(oid="0" * 40, commit_url="")

    published = publish(result.model_dir, repo_id="org/motion-classifier", api=Api())
    assert calls == [("create_repo", "org/motion-classifier"),
                     ("upload_folder", ["README.md", "config.json", "model.safetensors"])]  # fmt: skip
    assert published.sha256 == json.loads((result.model_dir / "config.json").read_text())["sha256"]


def test_predict_command_on_the_saved_model(trained, data, capsys) -> None:
    from videozoo.cli import main

    _, result = trained
    video = sorted((data.held / "zoom_in").glob("*.mp4"))[0]
    assert main(["predict", str(video), "--model", str(result.model_dir), "--clips", "2", "--crops", "1",
                 "--topk", "2", "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert str(video) in out and any(name in out for name in CLASSES)


def test_freeze_backbone_changes_only_the_head(data, tmp_path) -> None:
    model = videozoo.create_model("r3d_18_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, result = videozoo.finetune(model, data.small, epochs=1, freeze="backbone", lr=0.05, batch_size=4,
                                        max_steps=3, save=False, out_dir=tmp_path, **QUIET)  # fmt: skip
    after = trained.state_dict()
    body = [k for k in before if not k.startswith("fc.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)  # weights and BN statistics
    head = load_checkpoint(tmp_path / "checkpoints/last.pt")["optimizer"]
    assert [g["name"] for g in head["param_groups"]] == ["head"] and len(head["state"]) == 2  # fc weight, bias
    assert result.steps == 3 and result.model_dir is None


def test_layer_wise_learning_rates_land_in_the_optimizer(data, tmp_path) -> None:
    model = videozoo.create_model("r3d_18_tiny")
    videozoo.finetune(model, data.small, epochs=1, optimizer="sgd", lr=0.02, backbone_lr_mult=0.1, batch_size=8,
                      schedule="constant", max_steps=1, save=False, out_dir=tmp_path / "mult", **QUIET)  # fmt: skip
    groups = load_checkpoint(tmp_path / "mult/checkpoints/last.pt")["optimizer"]["param_groups"]
    assert {g["name"]: g["lr"] for g in groups} == pytest.approx({"head": 0.02, "backbone": 0.002})
    assert all(g["momentum"] == 0.9 for g in groups)

    groups = param_groups(model, lr=0.1, backbone_lr=0.005, weight_decay=1e-4)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [("head", 0.1, 1e-4), ("backbone", 0.005, 1e-4)]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_resume_after_interruption_matches_an_uninterrupted_run(data, tmp_path) -> None:
    kw = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "save": False, **QUIET}  # 16 videos: 4 steps an epoch
    torch.manual_seed(0)
    whole, whole_result = videozoo.finetune("r3d_18_tiny", data.small, out_dir=tmp_path / "whole", **kw)
    torch.manual_seed(0)
    _, first = videozoo.finetune("r3d_18_tiny", data.small, out_dir=tmp_path / "cut", max_steps=5, **kw)
    assert first.steps == 5 and first.epochs_done == 1 and first.resumed_from is None  # stopped mid-epoch 2
    resumed, second = videozoo.finetune("r3d_18_tiny", data.small, out_dir=tmp_path / "cut", **kw)
    assert second.resumed_from == str(tmp_path / "cut/checkpoints/last.pt") and second.steps == whole_result.steps
    assert second.history == whole_result.history  # per-epoch sums are checkpointed with the run
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_a_corrupt_video_is_skipped_and_reported(data, tmp_path, caplog) -> None:
    folder = tmp_path / "videos"
    for name in ("left", "up"):
        (folder / name).mkdir(parents=True)
        for video in sorted((data.small / name).glob("*.mp4"))[:3]:
            (folder / name / video.name).write_bytes(video.read_bytes())
    broken = folder / "up" / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)  # a header, then garbage
    val = tmp_path / "val"  # lacks "up": its labels are matched to the training classes by name
    (val / "left").mkdir(parents=True)
    (val / "left" / "a.mp4").write_bytes(next((data.small / "left").glob("*.mp4")).read_bytes())
    with caplog.at_level(logging.WARNING, logger="videozoo"):
        model, result = videozoo.finetune("r3d_18_tiny", folder, val, epochs=1, batch_size=7, lr=1e-3,
                                          test={"clips": 1, "crops": 1}, out_dir=tmp_path / "run", **QUIET)  # fmt: skip
    assert list(result.bad_videos) == [str(broken)]  # 7 videos, one batch of 7: the broken one was drawn
    assert str(broken) in caplog.text
    assert result.history[0]["epoch"] == 1 and model.class_names == ["left", "up"]
    assert result.metrics["num_videos"] == 1 and set(result.metrics["per_class_accuracy"]) == {"left", "up"}
    assert json.loads((tmp_path / "run/history.json").read_text())["bad_videos"] == result.bad_videos


def test_bad_arguments_fail_early(data, tmp_path) -> None:
    with pytest.raises(ValueError, match="freeze"):
        videozoo.finetune("r3d_18_tiny", data.small, freeze="all", out_dir=tmp_path, **QUIET)
    with pytest.raises(FileNotFoundError, match=r"\.csv"):
        videozoo.finetune("r3d_18_tiny", tmp_path / "missing", out_dir=tmp_path, **QUIET)
    with pytest.raises(TypeError, match="weights"):
        videozoo.finetune(videozoo.create_model("r3d_18_tiny"), data.small, weights="x", out_dir=tmp_path, **QUIET)


def test_short_videos_are_reported_and_failures_set_the_exit_status(tmp_path, caplog, capsys) -> None:
    """Issue #17: a 3-frame clip was looped to 8 frames and used for fine-tuning without a word."""
    from videozoo.cli import main

    model = videozoo.create_model("r3d_18_tiny", num_classes=2)
    model.input_spec = dataclasses.replace(input_spec_of(model), **SMALL)  # 8-frame clips
    model_dir = videozoo.save_pretrained(model, tmp_path / "model", class_names=["a", "b"])
    train, val = tmp_path / "train", tmp_path / "val"
    for k in range(3):
        for name in ("a", "b"):
            data_fixtures.write_video(train / name / f"v{k}.avi", num_frames=12)
    short_train = data_fixtures.write_video(train / "b" / "short.avi", num_frames=3)
    broken = data_fixtures.write_not_a_video(train / "a" / "broken.mp4")
    data_fixtures.write_video(val / "a" / "v.avi", num_frames=12)
    short_val = data_fixtures.write_video(val / "b" / "short.avi", num_frames=3)
    args = ["finetune", str(train), "--val", str(val), "--model", str(model_dir), "--epochs", "1", "--batch-size",
            "8", "--workers", "0", "--out", str(tmp_path / "run"), "--device", "cpu", "--quiet"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="videozoo"):
        assert main(args) == 1  # the broken video was replaced: the run finished, but not on all its inputs
    err = capsys.readouterr().err
    assert f"unreadable, replaced: {broken}" in err and "2 videos were mostly padding" in err
    warnings = [r.getMessage() for r in caplog.records if "less than half of a clip" in r.getMessage()]
    assert len(warnings) == 1 and str(short_train) in warnings[0] and str(short_val) in warnings[0]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert set(results["padded_videos"]) == {str(short_train), str(short_val)}  # training and test
    assert results["num_padded"] == 1 and list(results["padded"]) == [str(short_val)]  # the test alone
    assert results["padded_videos"][str(short_train)].startswith("3 frames supply 3 of the 8 frames")
    history = json.loads((tmp_path / "run/history.json").read_text())
    assert list(history["padded_videos"]) == [str(short_train)] and list(history["bad_videos"]) == [str(broken)]
