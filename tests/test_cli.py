"""The `videozoo` command end to end, on the real media and tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import videozoo
from videozoo.cli import main
from videozoo.eval.features import load_features


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    model = videozoo.create_model("r3d_18_tiny", num_classes=3)
    return videozoo.save_pretrained(model, tmp_path_factory.mktemp("m") / "tiny", class_names=["x", "y", "z"])


def test_embed_then_search(tmp_path, media, tiny_dir, capsys) -> None:
    videos = [str(media["mp4"]), str(media["avi"]), str(media["mkv"])]
    out = tmp_path / "feats.safetensors"
    assert main(["embed", *videos, "--model", str(tiny_dir), "--clips", "2", "--out", str(out), "--quiet"]) == 0
    index = load_features(out)
    assert index.features.shape == (3, 64) and index.paths == videos and index.model == str(tiny_dir)
    assert torch.isfinite(index.features).all()

    capsys.readouterr()
    assert main(["search", videos[1], "--index", str(out), "-k", "2", "--clips", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == videos[1] and len(lines) == 3  # the query itself is excluded from its results


def test_embed_reports_unreadable_videos(tmp_path, media, tiny_dir, capsys) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    code = main(["embed", str(media["avi"]), str(bad), "--model", str(tiny_dir), "--clips", "1",
                 "--out", str(tmp_path / "f.npz"), "--quiet"])  # fmt: skip
    assert code == 1
    assert "not_a_video.mp4" in capsys.readouterr().err
    assert load_features(tmp_path / "f.npz").features.shape == (1, 64)


def test_predict_prints_class_names(media, tiny_dir, tmp_path, capsys) -> None:
    csv = tmp_path / "pred.csv"
    code = main(["predict", str(media["avi"]), "--model", str(tiny_dir), "--clips", "2", "--crops", "1",
                 "--topk", "2", "--csv", str(csv), "--quiet"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "mpeg4_mp3audio.avi" in out and any(name in out for name in "xyz")
    assert csv.read_text().count("\n") == 2


def test_scan_finds_the_bad_and_the_silent(tmp_path, media, capsys) -> None:
    folder = tmp_path / "data" / "class_a"
    folder.mkdir(parents=True)
    for key in ("mp4", "avi"):
        shutil.copy(media[key], folder)
    (folder / "broken.mp4").write_bytes(media["mp4"].read_bytes()[:2000])
    assert main(["scan", str(tmp_path / "data"), "--audio", "--json", "--quiet"]) == 1
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert "broken.mp4" in text and "arm_wrestling.mp4" in text  # unreadable / no audio


def test_unknown_model_is_one_clear_line(capsys) -> None:
    assert main(["info", "coclr_s3d_k400_rbg"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'coclr_s3d_k400_rgb'" in err and "Traceback" not in err
