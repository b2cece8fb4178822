"""`videozoo prepare`: frame-for-frame re-encoding at training resolution, audio kept, resumable, bad files reported."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tests.data_fixtures import frame_index, make_ucf101, write_not_a_video, write_video
from videozoo.cli import main
from videozoo.data import UCF101
from videozoo.data import prepare as prep
from videozoo.data.decode import open_video, probe_video, read_frames
from videozoo.data.prepare import (
    PARTIAL_SUFFIX,
    REPORT_NAME,
    partial_path,
    prepare_folder,
    prepare_video,
    prepared_size,
    read_record,
)

ROOT = Path(__file__).resolve().parents[1]


def sequential_frames(path: Path) -> torch.Tensor:
    """Every frame in decoder order, RGB (T, C, H, W): the reference that random access must reproduce."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def video_pts_seconds(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(p.pts * stream.time_base) for p in container.demux(stream) if p.size)


def keyframe_positions(path: Path) -> list[int]:
    """Display-order positions of the keyframes."""
    with av.open(str(path)) as container:
        packets = sorted((p for p in container.demux(video=0) if p.size), key=lambda p: p.pts)
    return [i for i, p in enumerate(packets) if p.is_keyframe]


def audio_format(path: Path) -> tuple[str, int, int] | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        cc = container.streams.audio[0].codec_context
        return cc.name, cc.sample_rate, cc.channels


@pytest.mark.parametrize(
    ("hw", "short", "expected"),
    [
        ((1080, 1920), 160, (160, 284)),  # 284.4 -> nearest even
        ((256, 340), 128, (128, 170)),
        ((1920, 1080), 128, (228, 128)),  # portrait
        ((48, 64), 128, (48, 64)),  # smaller than asked: kept, never upscaled
        ((241, 321), 256, (240, 320)),  # kept, odd sides rounded down to even
    ],
)
def test_output_size(hw, short, expected) -> None:
    assert prepared_size(*hw, short) == expected


def test_frames_rate_size_and_audio_are_kept(tmp_path) -> None:
    src = write_video(tmp_path / "a.mp4", num_frames=30, size=(48, 64), fps=10, gop=30, audio=True)
    result = prepare_video(src, tmp_path / "out" / "a.mp4", short_side=32, keyframe_interval=8)
    dst = Path(result.dst)
    info = probe_video(dst)
    assert (info.height, info.width) == (32, 42) and result.resized  # 42.67 -> 42: aspect kept to a pixel
    reader = open_video(dst, cache=False)
    assert len(reader) == 30 and reader.fps == pytest.approx(10.0)
    frames = sequential_frames(dst)
    assert [frame_index(f) for f in frames] == list(range(30))  # frame for frame, in order, none repeated
    assert audio_format(dst) == audio_format(src) == ("aac", 16000, 2)  # the fixture's AAC track is stereo
    assert read_record(dst)["settings"]["short_side"] == 32
    assert keyframe_positions(dst) == [0, 8, 16, 24]  # flat frames: no scene cuts add keyframes


def test_random_access_equals_sequential_decode(tmp_path) -> None:
    """Keyframes every 4 frames must be real entry points: clips read by seeking equal the in-order decode."""
    src = write_video(tmp_path / "a.mp4", num_frames=40, size=(48, 64), fps=25, gop=40)
    dst = Path(prepare_video(src, tmp_path / "b.mp4", short_side=48, keyframe_interval=4).dst)
    reference = sequential_frames(dst)
    assert keyframe_positions(dst) == list(range(0, 40, 4))
    indices = [37, 3, 4, 21, 22, 9, 0, 39]
    for backend in ("decord", "pyav"):
        assert torch.equal(read_frames(dst, indices, backend=backend, cache=False), reference[indices]), backend


def test_no_audio_stays_without_and_small_videos_keep_their_size(tmp_path) -> None:
    src = write_video(tmp_path / "a.avi", num_frames=20, size=(48, 64), fps=10)
    result = prepare_video(src, tmp_path / "a.mp4", short_side=128)
    assert not result.resized and result.size == (48, 64) and result.audio is None
    assert audio_format(Path(result.dst)) is None
    assert [frame_index(f) for f in sequential_frames(Path(result.dst))] == list(range(20))


def test_rotated_source_is_stored_upright_without_a_rotation(tmp_path) -> None:
    src = write_video(tmp_path / "r.mp4", num_frames=8, size=(48, 64), codec="libx264", rotation=90)
    assert probe_video(src).rotation == 90
    dst = Path(prepare_video(src, tmp_path / "up.mp4", short_side=48).dst)
    info = probe_video(dst)
    assert info.rotation == 0 and (info.height, info.width) == (64, 48)  # portrait, as displayed
    upright = read_frames(src, range(8), cache=False).float()  # decode.py turns the source upright
    for backend in ("decord", "pyav"):
        prepared = read_frames(dst, range(8), backend=backend, cache=False).float()
        assert (prepared - upright).abs().mean() < 3  # compression only
        assert (prepared - upright.flip(-1)).abs().mean() > 20  # the white corner marker tells a mirror apart


def test_variable_frame_rate_keeps_its_timestamps(tmp_path) -> None:
    path = tmp_path / "vfr.mp4"
    pts = [0, 3, 4, 9, 10, 11, 20, 21, 30, 36]  # ticks of 1/30 s, irregular
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    result = prepare_video(path, tmp_path / "out.mp4", short_side=48)
    assert not result.constant_rate and result.frames == len(pts)
    assert video_pts_seconds(Path(result.dst)) == pytest.approx(video_pts_seconds(path), abs=1e-4)


def test_real_media_frame_counts_rates_and_audio(tmp_path, media) -> None:
    """The three real files (H.264 MP4 at SAR 64:51, MPEG-4 AVI with packed B-frames and MP3, H.264 MKV with
    millisecond timestamps and Opus)."""
    src = tmp_path / "src"
    for key in ("mp4", "avi", "mkv"):
        (src / key).mkdir(parents=True)
        shutil.copy(media[key], src / key)
    summary = prepare_folder(src, tmp_path / "dst", short_side=128, workers=1, progress=False)
    assert summary.ok and len(summary.prepared) == 3, summary.failed
    for video in summary.prepared:
        before, after = open_video(video.src, cache=False), open_video(video.dst, cache=False)
        assert len(after) == len(before) and after.fps == pytest.approx(before.fps, abs=1e-6), video
        assert min(after.info.height, after.info.width) == 128
        assert after.info.width / after.info.height == pytest.approx(before.info.width / before.info.height, abs=0.01)
        expected_audio = None if audio_format(Path(video.src)) is None else audio_format(Path(video.src))[1:]
        got_audio = audio_format(Path(video.dst))
        assert (got_audio and got_audio[1:]) == expected_audio and (got_audio is None or got_audio[0] == "aac")


def test_a_prepared_ucf101_replaces_the_original(tmp_path) -> None:
    """The lists name .avi files; the prepared tree holds .mp4 and the copied lists, and UCF101 reads it alike."""
    videos, _ = make_ucf101(tmp_path / "orig", num_frames=20)
    summary = prepare_folder(tmp_path / "orig", tmp_path / "prep", short_side=32, workers=1, progress=False)
    assert summary.ok and len(summary.prepared) == 8 and len(summary.copied) == 7  # classInd + 6 split lists
    original = UCF101(videos, train=True, num_frames=4)
    prepared = UCF101(tmp_path / "prep" / "videos", train=True, num_frames=4)
    assert len(prepared) == len(original) == 4 and not prepared.missing
    sample = prepared[0]
    assert sample["path"].endswith(".mp4") and sample["label"] == original[0]["label"]
    assert sample["video"].shape == (3, 4, 32, 42)


def test_rerun_skips_finished_and_redoes_the_rest(tmp_path) -> None:
    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        write_video(src / "cls" / f"{name}.avi", num_frames=20, size=(48, 64))
    (src / "classInd.txt").write_text("1 cls\n")
    dst = tmp_path / "dst"
    first = prepare_folder(src, dst, short_side=32, workers=1, progress=False)
    assert len(first.prepared) == 3 and first.copied == [str(src / "classInd.txt")]
    assert (dst / "classInd.txt").read_text() == "1 cls\n"
    written = {p: p.stat().st_mtime_ns for p in dst.rglob("*.mp4")}

    second = prepare_folder(src, dst, short_side=32, workers=1, progress=False)
    assert (len(second.prepared), len(second.skipped), second.copied) == (0, 3, [])
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.mp4")} == written  # nothing rewritten

    (dst / "cls" / "b.mp4").unlink()  # as a killed run leaves it: the output missing, its partial file present
    partial_path(dst / "cls" / "b.mp4").write_bytes(b"half a video")
    third = prepare_folder(src, dst, short_side=32, workers=1, progress=False)
    assert [Path(v.dst).name for v in third.prepared] == ["b.mp4"] and len(third.skipped) == 2
    assert not list(dst.rglob(f"*{PARTIAL_SUFFIX}"))
    assert len(open_video(dst / "cls" / "b.mp4", cache=False)) == 20

    other = prepare_folder(src, dst, short_side=16, workers=1, progress=False)  # other settings: not "done"
    assert len(other.failed) == 3 and "overwrite" in next(iter(other.failed.values()))
    redone = prepare_folder(src, dst, short_side=16, workers=1, progress=False, overwrite=True)
    assert len(redone.prepared) == 3 and probe_video(dst / "cls" / "a.mp4").height == 16


def test_an_interrupted_video_leaves_nothing_that_looks_finished(tmp_path, monkeypatch) -> None:
    src = write_video(tmp_path / "a.mp4", num_frames=48, size=(48, 64))
    dst = tmp_path / "out" / "a.mp4"
    add = prep._VideoOut.add

    def add_then_interrupt(self, frame):  # Ctrl-C once x264's lookahead has let packets reach the file
        if self.count == 40:
            assert partial_path(dst).stat().st_size > 0
            raise KeyboardInterrupt
        add(self, frame)

    monkeypatch.setattr(prep._VideoOut, "add", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare_video(src, dst, short_side=32)
    assert not dst.exists() and not partial_path(dst).exists()


def test_bad_files_are_reported_and_the_rest_prepared(tmp_path) -> None:
    src = tmp_path / "src"
    write_video(src / "good.mp4", num_frames=20, size=(48, 64))
    write_not_a_video(src / "text.mp4")
    good_bytes = (src / "good.mp4").read_bytes()
    (src / "sub").mkdir()
    (src / "sub" / "truncated.mp4").write_bytes(good_bytes[: len(good_bytes) // 2])  # index (moov) cut off
    write_video(src / "clash.avi", num_frames=20, size=(48, 64))
    write_video(src / "clash.mp4", num_frames=20, size=(48, 64))
    summary = prepare_folder(src, tmp_path / "dst", short_side=32, workers=2, progress=False)  # errors cross processes
    assert [Path(v.src).name for v in summary.prepared] == ["good.mp4"]
    assert sorted(Path(p).name for p in summary.failed) == ["clash.avi", "clash.mp4", "text.mp4", "truncated.mp4"]
    assert "text.mp4" in summary.failed[str(src / "text.mp4")]  # the cause names the file
    report = json.loads((tmp_path / "dst" / REPORT_NAME).read_text())
    assert (report["prepared"], report["failed"]) == (1, 4)
    assert {f["path"] for f in report["failures"]} == set(summary.failed)
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*.mp4")) == ["good.mp4"]


def die_on_b(job: tuple) -> tuple:
    """A worker for the crash test: the process preparing ``b.avi`` dies as a segfaulting decoder's would, while
    the other worker is still busy with ``a.avi`` (so the broken pool takes an innocent job down with it)."""
    time.sleep(0.3 if job[0].name == "b.avi" else 0.6)
    if job[0].name == "b.avi":
        os._exit(11)
    return prep._job(job)


def test_a_worker_that_dies_fails_its_video_only(tmp_path) -> None:
    src = tmp_path / "src"
    for name in "abcd":
        write_video(src / f"{name}.avi", num_frames=12, size=(48, 64))
    settings = prep.PrepareSettings(32)
    jobs = [(src / f"{n}.avi", tmp_path / "dst" / f"{n}.mp4", settings, False, 1) for n in "abcd"]
    results = {Path(src_path).name: (status, value) for status, src_path, value in prep._run(jobs, 2, work=die_on_b)}
    assert sorted(results) == ["a.avi", "b.avi", "c.avi", "d.avi"]  # each once
    assert results["b.avi"] == ("failed", prep._DIED)
    assert all(results[n][0] == "prepared" for n in ("a.avi", "c.avi", "d.avi")), results


def test_workers_exit_when_the_parent_is_killed() -> None:
    """A pool worker whose parent died (SIGKILL) must not wait for work forever: its watchdog ends it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    child = os.fork()
    if child == 0:  # the worker: watchdog on the dead pid, then "wait for work"
        prep._watch_parent(dead.pid)
        time.sleep(20)
        os._exit(0)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(child, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    if done == (0, 0):
        os.kill(child, 9)
        os.waitpid(child, 0)
    assert done[0] == child and os.waitstatus_to_exitcode(done[1]) == 1


def test_mpeg4_fallback_keeps_every_frame(tmp_path) -> None:
    src = write_video(tmp_path / "a.mp4", num_frames=20, size=(48, 64))
    result = prepare_video(src, tmp_path / "b.mp4", short_side=32, codec="mpeg4")
    assert result.encoder == "mpeg4" and probe_video(result.dst).codec == "mpeg4"
    assert [frame_index(f) for f in sequential_frames(Path(result.dst))] == list(range(20))


def test_cli_exit_codes(tmp_path, capsys) -> None:
    src = tmp_path / "src"
    write_video(src / "x" / "a.avi", num_frames=20, size=(48, 64))
    args = ["prepare", str(src), str(tmp_path / "dst"), "--short-side", "32", "--workers", "1", "--quiet"]
    assert main(args) == 0
    assert "1 prepared" in capsys.readouterr().out
    write_not_a_video(src / "x" / "bad.mp4")
    assert main(args) == 1  # one bad file among good ones
    captured = capsys.readouterr()
    assert "1 already done, 1 failed" in captured.out and "bad.mp4" in captured.err
    only_bad, empty = tmp_path / "only_bad", tmp_path / "empty"
    write_not_a_video(only_bad / "bad.mp4")
    empty.mkdir()
    for folder, why in ((only_bad, "no video could be read"), (empty, "holds no video file"),
                        (tmp_path / "nope", "no such folder")):  # fmt: skip
        assert main(["prepare", str(folder), str(tmp_path / "d"), "--short-side", "32", "--quiet"]) == 2, folder
        assert why in capsys.readouterr().err
    assert main(["prepare", str(src), str(tmp_path / "d"), "--short-side", "33"]) == 2  # odd: not yuv420p
    assert "even" in capsys.readouterr().err
    for flags in ([], ["--short-side", "32", "--keyframe-interval", "0"], ["--short-side", "32", "--workers", "0"]):
        with pytest.raises(SystemExit) as exit_info:  # argparse: --short-side required, counts >= 1
            main(["prepare", str(src), str(tmp_path / "d"), *flags])
        assert exit_info.value.code == 2, flags


def test_benchmark_script_runs(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("bench_prepare", ROOT / "benchmarks" / "prepare.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.json"
    bench.main(["--size", "96x64", "--frames", "40", "--short-side", "32", "--intervals", "8", "--clips", "3",
                "--rounds", "1", "--work", str(tmp_path), "--json", str(out)])  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["file"].startswith("original")
    assert all(row["clips_per_s"] > 0 and row["clips_per_s_cached_reader"] > 0 for row in rows)
    assert [row["frames"] for row in rows] == [40, 40, 40]  # the prepared file kept every frame
    assert os.path.exists(tmp_path / "prepared_k8.mp4")
