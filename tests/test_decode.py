"""Decoding: the real media in shared/media, random access vs sequential decode, fallbacks, bad files, fork."""

from __future__ import annotations

import functools
import multiprocessing as mp
import pickle

import av
import numpy as np
import pytest
import torch

from tests.data_fixtures import (
    frame_index,
    sequential_frames,
    truncate,
    write_dead_first_stream_video,
    write_not_a_video,
    write_two_stream_video,
    write_video,
)
from videozoo.data import VideoDecodeError, VideoReader, open_video, probe_video, read_clip, read_frames
from videozoo.data.decode import as_decode_error, clear_reader_cache
from videozoo.data.sampling import uniform_clips
from videozoo.data.scan import scan_video

# key: (frames, fps, (H, W), has audio); the Matroska file has no frame count in its header
EXPECTED = {
    "mp4": (280, 28.0, (256, 340), False),
    "avi": (164, 25.0, (240, 320), True),
    "mkv": (310, 30.0, (240, 426), True),
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_real_media_opens_with_the_right_count_size_and_fps(media, key):
    frames, fps, (h, w), audio = EXPECTED[key]
    info = probe_video(media[key])
    assert (info.width, info.height, info.has_audio, info.rotation) == (w, h, audio, 0)
    if key == "mkv":
        assert info.num_frames == 0  # the header does not say; the reader counts
    reader = VideoReader(media[key])
    assert reader.backend == "decord"
    assert len(reader) == frames and reader.fps == pytest.approx(fps)
    clip = read_clip(media[key], start=frames - 16, num_frames=16)
    assert clip.shape == (16, 3, h, w) and clip.dtype == torch.uint8


@functools.lru_cache(maxsize=3)
def _sequential(path: str) -> list[torch.Tensor]:
    return sequential_frames(path)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_random_access_equals_sequential_decode(media, key, backend):
    """Frame-exact: frame i from random access is bit-identical to the i-th frame of a sequential PyAV decode."""
    sequential = _sequential(str(media[key]))
    reader = VideoReader(media[key], backend=backend)
    assert len(reader) == len(sequential)
    rng = np.random.default_rng(0)
    indices = np.concatenate([rng.integers(0, len(sequential), 6), [len(sequential) - 1, 0, 3, 3]])
    got = reader.get_frames(indices)
    want = torch.stack([sequential[i] for i in indices])
    assert torch.equal(got, want), f"{key}/{backend}: frames differ at {indices}"


def test_resize_inside_the_decoder_keeps_aspect(media):
    clip = read_clip(media["mp4"], num_frames=4, size=112)  # 340x256 -> short side 112
    assert clip.shape == (4, 3, 112, 149)
    assert read_clip(media["mkv"], num_frames=2, size=(64, 80)).shape == (2, 3, 64, 80)
    pyav = read_clip(media["mp4"], num_frames=4, size=112, backend="pyav")
    assert pyav.shape == clip.shape and (pyav.float() - clip.float()).abs().mean() < 2  # same scaler family


def test_stride_and_fps_pick_the_right_frames(tmp_path):
    path = write_video(tmp_path / "v.avi", num_frames=20, fps=10)
    assert [frame_index(f) for f in read_clip(path, start=2, num_frames=4, stride=3)] == [2, 5, 8, 11]
    assert [frame_index(f) for f in read_clip(path, num_frames=4, fps=5)] == [0, 2, 4, 6]  # 10 -> 5 fps
    assert [frame_index(f) for f in read_clip(path, num_frames=5, fps=20)] == [0, 1, 1, 2, 2]  # nearest frame
    assert [frame_index(f) for f in read_clip(path, start=16, num_frames=6)] == [16, 17, 18, 19, 0, 1]  # loop pad
    tail = read_clip(path, start=16, num_frames=6, pad="repeat_last")
    assert [frame_index(f) for f in tail] == [16, 17, 18, 19, 19, 19]
    assert [frame_index(f) for f in read_frames(path, [7, 1, 7])] == [7, 1, 7]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    path = write_video(tmp_path / f"r{rotation}.mp4", num_frames=8, rotation=rotation, codec="libx264")
    info = probe_video(path)
    assert info.rotation == rotation % 360 and (info.height, info.width) == ((48, 64) if rotation == 180 else (64, 48))
    frame = read_clip(path, start=5, num_frames=1)[0]  # the marker sits top-left in the upright frame
    h, w = frame.shape[-2:]
    corner = {
        90: (slice(h - 4, h), slice(0, 4)),
        -90: (slice(0, 4), slice(w - 4, w)),
        180: (slice(h - 4, h), slice(w - 4, w)),
    }[rotation]
    assert frame[0][corner].float().mean() > 200, "the corner marker is not where the display matrix puts it"
    assert frame_index(frame) == 5
    assert read_clip(path, num_frames=2, size=32).shape[-2:] == ((32, 43) if rotation == 180 else (43, 32))


def test_codecs_decord_lacks_fall_back_to_pyav(tmp_path):
    if "libsvtav1" not in av.codecs_available:
        pytest.skip("this PyAV build cannot encode AV1 (libsvtav1)")
    path = write_video(tmp_path / "av1.webm", num_frames=10, codec="libsvtav1")
    reader = open_video(path)
    assert reader.backend == "pyav" and len(reader) == 10
    assert [frame_index(f) for f in reader.get_frames([9, 2, 5])] == [9, 2, 5]


def test_unreadable_files_raise_video_decode_error_naming_the_file(tmp_path):
    bad = {
        "text": write_not_a_video(tmp_path / "text.mp4"),
        "empty": tmp_path / "empty.mp4",
        "missing": tmp_path / "missing.mp4",
        "folder": tmp_path / "folder.mp4",
        "random": tmp_path / "random.avi",
    }
    bad["empty"].write_bytes(b"")
    bad["folder"].mkdir()
    bad["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for name, path in bad.items():
        with pytest.raises(VideoDecodeError) as err:
            read_clip(path, num_frames=4)
        assert str(path) in str(err.value) and err.value.path == str(path), name
        assert err.value.cause, name


def test_audio_only_file_is_not_a_video(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_clip(path)


def test_truncated_files(tmp_path, media):
    """An MP4 cut before its index (moov at the end) is unreadable; a Matroska cut in half decodes what is left."""
    full = write_video(tmp_path / "full.mp4", num_frames=20)
    with pytest.raises(VideoDecodeError, match=r"half\.mp4"):
        read_clip(truncate(full, tmp_path / "half.mp4"), num_frames=4)
    half = VideoReader(truncate(media["mkv"], tmp_path / "half.mkv"))
    assert 100 < len(half) < 310  # counted from the packets present, not the header
    original = VideoReader(media["mkv"]).get_frames([0, len(half) - 10])
    assert torch.equal(half.get_frames([0, len(half) - 10]), original)


def test_corrupt_middle_never_raises_anything_but_video_decode_error(tmp_path, media):
    data = bytearray(media["avi"].read_bytes())
    data[30_000:130_000] = np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.avi"
    path.write_bytes(bytes(data))
    try:
        reader = VideoReader(path)
        reader.get_frames(np.arange(0, len(reader), 7))
    except VideoDecodeError as e:
        assert e.path == str(path)


def test_video_decode_error_pickles_with_path_and_cause():
    err = pickle.loads(pickle.dumps(VideoDecodeError("/x/y.mp4", "boom")))
    assert (err.path, err.cause, str(err)) == ("/x/y.mp4", "boom", "cannot decode video /x/y.mp4: boom")


def _child_reads(path: str, parent_reader_id: int) -> tuple[bool, int]:
    reader = open_video(path)
    return id(reader) != parent_reader_id, frame_index(reader.get_frames([3])[0])


def test_reader_cache_is_per_process(tmp_path):
    path = str(write_video(tmp_path / "v.avi", num_frames=8))
    clear_reader_cache()
    reader = open_video(path)
    assert open_video(path) is reader  # cached in this process
    with mp.get_context("fork").Pool(1) as pool:
        fresh, index = pool.apply(_child_reads, (path, id(reader)))
    assert fresh and index == 3  # the forked child opened its own reader
    assert reader.get_frames([4]).shape[0] == 1  # the parent's reader still works


def test_two_video_streams_every_reader_reads_the_same_one(tmp_path):
    """Issue #17: decord read stream 1 (60 frames, 29.97 fps), the probe and PyAV stream 0 (50 frames, 25 fps)."""
    import decord

    path = write_two_stream_video(tmp_path / "two.mp4")
    raw = decord.VideoReader(str(path))  # the mismatch this file exists to reproduce
    assert (len(raw), round(raw.get_avg_fps(), 2)) == (60, 29.97)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (50, 25.0, 64, 48)
    for backend in ("auto", "pyav"):
        reader = open_video(path, backend=backend, cache=False)
        assert (len(reader), reader.fps) == (50, 25.0), backend
    entry = scan_video(path, min_frames=8)
    assert "unreadable" not in entry.problems and (entry.num_frames, entry.fps) == (50, 25.0), entry.error
    assert (info.stream_index, info.video_streams) == (0, 2)
    reader = open_video(path, cache=False)
    for clip in uniform_clips(len(reader), num_clips=4, num_frames=8):  # embed's clips: the last reached 53
        assert [frame_index(f) for f in reader.get_frames(clip)] == clip.tolist()
    resized = read_clip(path, start=40, num_frames=4, size=32, cache=False)  # resized: no shape check to catch it
    assert resized.shape == (4, 3, 32, 43) and [frame_index(f) for f in resized] == [40, 41, 42, 43]
    with pytest.raises(VideoDecodeError, match="2 video streams"):
        VideoReader(path, backend="decord")


def test_a_best_stream_that_does_not_decode_gives_way_to_one_that_does(tmp_path):
    path = write_dead_first_stream_video(tmp_path / "dead.mp4", num_frames=20)
    with av.open(str(path)) as container:
        assert container.streams.best("video").index == 0  # FFmpeg's pick: the default stream, all garbage
    info = probe_video(path)
    assert (info.stream_index, info.video_streams, info.num_frames, info.fps) == (1, 2, 20, 10.0)
    reader = open_video(path, cache=False)
    assert len(reader) == 20 and [frame_index(f) for f in reader.get_frames([17, 3])] == [17, 3]
    assert scan_video(path).num_frames == 20


def test_frames_missing_from_the_first_count_are_the_files_fault(tmp_path, monkeypatch):
    """decord counts 40 frames and fails; PyAV, taking over, finds 25: a clip sampled from 40 is a decode error."""
    path = write_video(tmp_path / "v.avi", num_frames=40)
    reader = VideoReader(path)
    assert reader.backend == "decord"

    def broken(indices):
        raise RuntimeError("corrupt packet")

    monkeypatch.setattr(reader._backend, "get", broken)
    open_pyav = reader._open_pyav

    def open_short():  # PyAV counts the packets actually present
        open_pyav()
        reader._backend.num_frames = 25

    monkeypatch.setattr(reader, "_open_pyav", open_short)
    assert [frame_index(f) for f in reader.get_frames([3, 4])] == [3, 4] and reader.backend == "pyav"
    with pytest.raises(VideoDecodeError, match="only 25 of the 40 frames"):
        reader.get_frames([30, 31])
    with pytest.raises(IndexError):  # past even the first count: the caller's mistake, not the file's
        reader.get_frames([40])


def test_as_decode_error_names_the_file():
    expected = r"cannot decode video /x/v\.mp4: IndexError: frame 9"
    with pytest.raises(VideoDecodeError, match=expected) as err, as_decode_error("/x/v.mp4"):
        raise IndexError("frame 9")
    assert err.value.path == "/x/v.mp4" and isinstance(err.value.__cause__, IndexError)
