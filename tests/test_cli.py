"""The `videozoo` command end to end, on the real media and tiny models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import videozoo
from tests.data_fixtures import write_two_stream_video, write_video
from videozoo.api import input_spec_of
from videozoo.cli import main
from videozoo.data import VideoReader
from videozoo.eval.features import load_features, save_features


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    model = videozoo.create_model("r3d_18_tiny", num_classes=3)
    return videozoo.save_pretrained(model, tmp_path_factory.mktemp("m") / "tiny", class_names=["x", "y", "z"])


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """The tiny classifier on 8-frame 32-pixel clips: the robustness tests below embed many small files."""
    model = videozoo.create_model("r3d_18_tiny", num_classes=3)
    small = {"frames": 8, "resize": 36, "crop_size": 32}
    model.input_spec = dataclasses.replace(input_spec_of(model), **small)
    return videozoo.save_pretrained(model, tmp_path_factory.mktemp("m") / "small", class_names=["x", "y", "z"])


@pytest.fixture
def liar(tmp_path, monkeypatch) -> Path:
    """A video that raises IndexError past frame 20, as a file shorter than its header did in issue #17."""
    path = write_video(tmp_path / "liar.avi", num_frames=40)
    get_frames = VideoReader.get_frames

    def shorter_than_it_claims(self, indices):
        if self.path == str(path) and max(indices) >= 20:
            raise IndexError(f"frame indices {min(indices)}..{max(indices)} outside 0..19 of {path}")
        return get_frames(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames", shorter_than_it_claims)
    return path


def test_embed_goes_on_past_failing_files_and_records_them(tmp_path, small_dir, liar, capsys) -> None:
    """Issue #17: one bad file lost the whole run; the two-stream file is read, the others reported and skipped."""
    two = write_two_stream_video(tmp_path / "two.mp4")
    short = write_video(tmp_path / "short.avi", num_frames=3)
    missing = tmp_path / "missing.mp4"
    videos = [str(two), str(liar), str(missing), str(short)]
    out = tmp_path / "f.safetensors"
    assert main(["embed", *videos, "--model", str(small_dir), "--out", str(out), "--quiet"]) == 1  # --clips 4
    err = capsys.readouterr().err
    assert "skipped 2 of 4 videos (not embedded):" in err and f"{missing}: file not found" in err
    assert f"{liar}: IndexError: frame indices" in err
    assert "1 of 4 videos supply less than half of a clip's frames" in err and str(short) in err
    index = load_features(out)
    assert index.paths == [str(two), str(short)] and index.features.shape == (2, 64)
    assert set(index.failed) == {str(liar), str(missing)} and list(index.padded) == [str(short)]
    npz = load_features(save_features(index, tmp_path / "f.npz"))  # the other format keeps them too
    assert (npz.failed, npz.padded) == (index.failed, index.padded)


def test_embed_without_a_readable_video_is_an_error_and_writes_nothing(tmp_path, small_dir, capsys) -> None:
    """Issue #17: `embed nofile.mp4` wrote an empty 0 x 64 file."""
    out = tmp_path / "f.safetensors"
    assert main(["embed", str(tmp_path / "nofile.mp4"), "--model", str(small_dir), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 videos could be read" in err and "nofile.mp4 (file not found)" in err
    assert not out.exists()


def test_search_skips_unreadable_queries_and_says_so(tmp_path, media, small_dir, liar, capsys) -> None:
    index = tmp_path / "index.npz"
    videos = [str(media["avi"]), str(write_video(tmp_path / "a.avi", num_frames=30))]
    assert main(["embed", *videos, "--model", str(small_dir), "--out", str(index), "--clips", "1", "--quiet"]) == 0
    capsys.readouterr()
    code = main(["search", str(liar), videos[1], "--index", str(index), "-k", "1", "--clips", "1"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert code == 1 and len(lines) == 2 and lines[0] == videos[1] and lines[1].endswith(videos[0])
    assert "skipped 1 of 2 videos (not searched):" in err and str(liar) in err


def test_predict_reports_skipped_videos_and_writes_no_empty_csv(tmp_path, media, small_dir, liar, capsys) -> None:
    csv = tmp_path / "pred.csv"
    args = ["--model", str(small_dir), "--clips", "2", "--crops", "1", "--csv", str(csv), "--quiet"]
    assert main(["predict", str(liar), str(media["avi"]), *args]) == 1
    err = capsys.readouterr().err
    assert "skipped 1 of 2 videos (not predicted):" in err and f"{liar}: IndexError" in err
    assert csv.read_text().count("\n") == 2  # header + the readable video
    csv.unlink()
    assert main(["predict", str(tmp_path / "nofile.mp4"), *args]) == 1
    assert "nofile.mp4: file not found" in capsys.readouterr().err and not csv.exists()


def test_scan_of_nothing_is_an_error(tmp_path, capsys) -> None:
    """Issue #17: `scan nonexistent/` reported one scanned video; `scan empty/` printed OK and exited 0."""
    assert main(["scan", str(tmp_path / "nonexistent"), "--quiet"]) == 2
    assert "nonexistent does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["scan", str(tmp_path / "empty"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "no videos to scan" in captured.err and "OK" not in captured.out


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
