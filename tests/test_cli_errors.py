"""How the `videozoo` command fails: exit statuses, one-line errors in the command line's own terms, no FFmpeg noise.

0 success, 1 some inputs failed, 2 a usage error (one line, no traceback), 3 an internal error (traceback).
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import videozoo
from videozoo import cli
from videozoo.backbones import InputShapeError
from videozoo.cli import main
from videozoo.data.decode import NoReadableVideoError, VideoDecodeError
from videozoo.data.synthetic import write_video
from videozoo.hub import ChecksumError, WeightsFormatError
from videozoo.hub.converters import ConversionError
from videozoo.registry import UnknownModelError


def _tiny_video(path: Path) -> Path:
    """Three 32 px frames of a square moving right: enough for flow, fast to extract."""
    frames = torch.full((3, 3, 32, 32), 60, dtype=torch.uint8)
    for t in range(3):
        frames[t, :, 10:20, 5 + 3 * t : 15 + 3 * t] = 200
    return write_video(path, frames, fps=10)


def _garbled_copy(video: Path, path: Path) -> Path:
    """``video`` with every 97th byte of its middle third overwritten: H.264 that FFmpeg complains about."""
    data = bytearray(video.read_bytes())
    rng = random.Random(0)
    for i in range(len(data) // 3, 2 * len(data) // 3, 97):
        data[i] = rng.randrange(256)
    path.write_bytes(bytes(data))
    return path


# -- exit statuses ----------------------------------------------------------------------------------------------------
def test_success_is_0(capsys) -> None:
    assert main(["info", "s3d"]) == 0
    assert capsys.readouterr().out.startswith("s3d (backbone)")


def test_some_inputs_failed_is_1(tmp_path: Path, capsys) -> None:
    src = tmp_path / "videos"
    _tiny_video(src / "good.mp4")
    (src / "bad.mp4").write_text("not a video")
    assert main(["flow", str(src), str(tmp_path / "flow"), "--workers", "1", "--quiet"]) == 1
    assert "bad.mp4" in capsys.readouterr().err
    assert (tmp_path / "flow" / "good" / ".done").is_file()  # the good one was done all the same


@pytest.mark.parametrize("only", ["bad.mp4", "no video"], ids=["unreadable", "empty-folder"])
def test_flow_with_nothing_readable_is_2(only: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / "videos"
    src.mkdir()
    if only == "bad.mp4":
        (src / only).write_text("not a video")
    assert main(["flow", str(src), str(tmp_path / "flow"), "--workers", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"videozoo flow: error: no flow from {src}: ")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownModelError("x", ["y"], 3), 2),
        (FileNotFoundError("no such file: x.mp4"), 2),
        (NotADirectoryError("x: not a folder"), 2),
        (ValueError("num_clips must be >= 1"), 2),
        (InputShapeError("expected (B, C, T, H, W)"), 2),
        (WeightsFormatError("x.safetensors is truncated"), 2),
        (ChecksumError("sha256 differs"), 2),
        (ConversionError("unexpected key"), 2),
        (VideoDecodeError("x.mp4", "moov atom not found"), 2),
        (NoReadableVideoError("none of the 2 videos could be read"), 2),
        (TypeError("unsupported operand"), 3),
        (KeyError("fc.weight"), 3),
        (RuntimeError("stack expects a non-empty TensorList"), 3),
        (AttributeError("'NoneType' object has no attribute 'shape'"), 3),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_user_mistakes_are_2_and_bugs_are_3(error: Exception, status: int, monkeypatch, capsys) -> None:
    def command(args):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "info", command)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert main(["info", "s3d"]) == status
    err = capsys.readouterr().err
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("videozoo info: error: ") and "Traceback" not in err
    else:
        assert "Traceback" in err and "internal error" in err and "please report" in err.lower()


def test_debug_adds_the_traceback_to_a_usage_error(monkeypatch, capsys) -> None:
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert main(["info", "nope", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert main(["info", "nope"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_interrupted_is_130(monkeypatch, capsys) -> None:
    def command(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "info", command)
    assert main(["info", "s3d"]) == 130
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["info", "coclr_s3d_k400_rbg"], "Did you mean 'coclr_s3d_k400_rgb'"),
        (["flow", "no/such/video.mp4", "out"], "no/such/video.mp4: no such video file or folder"),
        (["embed", "v.mp4", "--model", "s3d"], "'s3d' is an architecture without pretrained weights"),
        (["embed", "v.mp4", "--model", "./runs/model"], "--model ./runs/model: no such directory or file"),
        (["embed", "v.mp4", "--model", "r3d_18_tiny", "--random-init", "--device", "gpu"], "--device gpu: not a"),
        (["embed", "v.mp4", "--model", "r3d_18_tiny", "--weights", "{garbage}"], "garbage.safetensors"),
    ],
    ids=["unknown-model", "missing-file", "no-weights", "missing-model-dir", "bad-device", "corrupt-weights"],
)
def test_usage_errors_end_to_end(argv: list[str], says: str, tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    assert main([a.replace("{garbage}", str(garbage)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_option_values_are_refused_by_name(capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["embed", "v.mp4", "--model", "s3d", "--clips", "0"])
    assert exit.value.code == 2 and "argument --clips: expected a number >= 1, got 0" in capsys.readouterr().err


# -- messages in the command line's terms ---------------------------------------------------------------------------
def test_unknown_model_count_is_what_list_prints(capsys) -> None:
    assert main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()[-1]  # "N models"
    assert main(["info", "nope"]) == 2
    err = capsys.readouterr().err
    assert f"`videozoo list` lists all {listed}." in err and "list_models()" not in err
    with pytest.raises(UnknownModelError, match=rf"videozoo.list_models\(\) lists all {listed}\."):
        videozoo.load("nope")  # from Python: the Python way, the same count


@pytest.mark.parametrize("model", ["s3d", "coclr_s3d_k400_rgb", "stica_r2plus1d_k400"])
def test_missing_weights_are_explained_with_flags(model: str, capsys) -> None:
    assert main(["embed", "v.mp4", "--model", model]) == 2
    err = capsys.readouterr().err
    assert "--random-init" in err and "--weights" in err
    assert "videozoo.load" not in err and "pretrained=False" not in err and "weights=" not in err
    assert main(["predict", "v.mp4", "--model", model]) == 2  # predict has no --random-init: not offered
    err = capsys.readouterr().err
    assert "--weights" in err and "--random-init" not in err


def test_search_takes_random_init(tmp_path: Path, media, capsys) -> None:
    index = tmp_path / "index.npz"
    tiny = ["--model", "r3d_18_tiny", "--random-init", "--clips", "1"]
    assert main(["embed", str(media["avi"]), str(media["mkv"]), *tiny, "--out", str(index), "--quiet"]) == 0
    assert main(["search", str(media["avi"]), "--index", str(index), *tiny, "-k", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(str(media["mkv"]))


# -- flow on one file; what finetune wrote; FFmpeg's log lines -------------------------------------------------------
def test_flow_takes_a_single_video(tmp_path: Path, capsys) -> None:
    video = _tiny_video(tmp_path / "clip.mp4")
    assert main(["flow", str(video), str(tmp_path / "flow"), "--workers", "1", "--no-progress"]) == 0
    assert (tmp_path / "flow" / "clip" / ".done").is_file()
    assert capsys.readouterr().out.startswith("1 extracted")


def test_finetune_says_where_its_results_went(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "confusion_matrix.png").write_bytes(b"png")  # no predictions.csv: not printed
    result = SimpleNamespace(metrics={"top1": 0.5, "num_videos": 4, "description": "video-level"}, bad_videos={},
                             padded_videos={}, model_dir=tmp_path / "model", out_dir=tmp_path)  # fmt: skip
    monkeypatch.setattr(videozoo, "finetune", lambda *args, **kwargs: (None, result))
    assert main(["finetune", "train/", "--model", "r3d_18_tiny", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"results: {tmp_path / 'results.json'}" in out
    assert f"confusion matrix: {tmp_path / 'confusion_matrix.png'}" in out and "predictions" not in out


def test_ffmpeg_log_lines_stay_off_the_terminal(tmp_path: Path, media, capfd, monkeypatch) -> None:
    from videozoo.data import decode

    monkeypatch.setenv(decode.FFMPEG_LOGS_ENV, "0")  # --verbose sets it: restored after the test
    args = ["--model", "r3d_18_tiny", "--random-init", "--clips", "2", "--quiet"]
    quiet, loud = (_garbled_copy(media["mp4"], tmp_path / name) for name in ("quiet.mp4", "loud.mp4"))
    try:
        assert main(["embed", str(quiet), *args, "--out", str(tmp_path / "q.npz")]) == 0
        assert "[h264 @" not in capfd.readouterr().err
        main(["embed", str(loud), *args, "--out", str(tmp_path / "l.npz"), "--verbose"])
        assert "[h264 @" in capfd.readouterr().err  # the file does make FFmpeg talk: the silence above is real
    finally:
        decode.show_ffmpeg_logs(False)
