"""Video decoding: decord random access with a PyAV fallback, upright frames, errors that name the file.

``read_clip`` is the one call most code needs; ``open_video`` gives a :class:`VideoReader` for several
reads of one file. Every file is first probed with PyAV (cheap: the container header and the first
frame), which

* rejects what is not a video (missing, empty, text, audio only, undecodable) with a
  :class:`VideoDecodeError` naming the file and the cause, before decord ever sees it;
* reads the rotation side data (phones store portrait video as landscape plus a display matrix),
  which decord 0.6 mishandles, so rotated videos are decoded by PyAV and rotated upright here.

One video stream: a file may hold several (a second camera, a thumbnail track, cover art). The probe
picks the stream FFmpeg ranks best (``av_find_best_stream``: default disposition first), or the next
one when that does not decode, and records it in :attr:`VideoInfo.stream_index`; every reader here
reads that stream, so frame counts, rates and frames agree. decord cannot be told which stream to
read and its bundled FFmpeg ranks streams by another rule, so files with more than one video stream
are read with PyAV.

Everything else goes to decord (random access through its frame index, resizing inside the
decoder). Whatever decord cannot open (AV1, and other codecs its bundled FFmpeg lacks) or fails to
decode falls back to PyAV, which seeks to the keyframe before the first wanted frame and decodes
forward only through the span it needs. Frame ``i`` is the ``i``-th frame in display order under
both backends (tested equal on the real media in ``shared/media``).

Truncated files: a file whose index is missing (an MP4 cut before its ``moov`` box) raises
:class:`VideoDecodeError` on open. A file whose index survives (Matroska, AVI, fast-start MP4)
opens with the frames that are actually present: both backends count packets rather than trust
the header, so clips inside the intact part decode normally.

Readers are cached per process and per thread (``open_video(cache=True)``); the cache forgets its
readers after ``fork`` without closing them, because decord readers shared across forked DataLoader
workers leak and deadlock. Each worker therefore opens its own.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from einops import rearrange

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv",
)  # fmt: skip
BACKENDS = ("auto", "decord", "pyav")
_PROBE_PACKETS = 512  # give up looking for a first decodable frame after this many packets
FFMPEG_LOGS_ENV = "VIDEOZOO_FFMPEG_LOGS"  # "1": let FFmpeg's own log lines through (`videozoo ... --verbose`)


def show_ffmpeg_logs(show: bool) -> None:
    """Whether FFmpeg's own log lines (``[h264 @ 0x…] error while decoding MB …``) reach the terminal.

    PyAV and decord each carry an FFmpeg that logs every damaged packet. A damaged file already reaches the
    caller as a :class:`VideoDecodeError`, or as clips from its intact part, so the lines only bury a program's
    output. Shown, PyAV's go through Python's logging (``libav.*`` loggers, warnings and up) and decord's
    straight to stderr (errors). Off by default: see :func:`_ffmpeg_logs_from_env`.
    """
    av.logging.set_level(av.logging.WARNING if show else None)
    _set_decord_logs(show)


def _set_decord_logs(show: bool) -> None:
    try:
        import decord
    except ImportError:  # no decord on this platform: PyAV decodes everything
        return
    decord.logging.set_level(decord.logging.ERROR if show else decord.logging.QUIET)


def _ffmpeg_logs_from_env() -> None:
    """At import, before any reader opens: FFmpeg's log lines off unless ``VIDEOZOO_FFMPEG_LOGS=1``.

    Only decord needs silencing (its FFmpeg logs errors unless told otherwise); PyAV logs nothing unless asked,
    and keeps any level its user set. The variable reaches DataLoader workers, which import this module afresh.
    """
    if os.environ.get(FFMPEG_LOGS_ENV, "") not in ("", "0"):
        show_ffmpeg_logs(True)
    else:
        _set_decord_logs(False)


_ffmpeg_logs_from_env()


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded; ``path`` names the file, ``cause`` says why."""

    def __init__(self, path: str | os.PathLike, cause: object = "") -> None:
        self.path, self.cause = str(path), cause
        super().__init__(f"cannot decode video {self.path}: {cause}" if cause != "" else self.path)

    def __reduce__(self) -> tuple[Any, ...]:  # keep ``path`` and ``cause`` through pickling
        if type(self) is VideoDecodeError:
            return VideoDecodeError, (self.path, str(self.cause))
        return super().__reduce__()


class NoReadableVideoError(RuntimeError):
    """Not one of the videos given could be read: the inputs are wrong, not one damaged file among good ones.

    Raised by the functions that read many videos and skip the bad ones (embedding, searching, testing), where
    skipping every one would leave nothing to return.
    """


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a file. ``width``/``height`` are as displayed (after rotation)."""

    path: str
    num_frames: int  # from the header; 0 when the container does not say (Matroska, WebM)
    fps: float
    width: int
    height: int
    rotation: int  # counter-clockwise degrees that make the decoded frame upright (0, 90, 180, 270)
    duration: float  # seconds; 0.0 when unknown
    codec: str
    container: str
    has_audio: bool
    stream_index: int = 0  # the video stream every reader reads (an index into all of the file's streams)
    video_streams: int = 1  # video streams in the file; decord reads only files with one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def as_decode_error(path: str | os.PathLike) -> Iterator[None]:
    """Inside the block, any failure becomes a :class:`VideoDecodeError` naming ``path``.

    For code that reads many files and must report a bad one and go on: besides the errors the readers
    raise themselves, a file can fail in ways no reader anticipated (frame indices past the end of a
    file shorter than its header says, a decoder error, a transform choking on odd frames), and each
    of those concerns that one file.
    """
    try:
        yield
    except VideoDecodeError:
        raise
    except Exception as e:
        raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from e


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "file is empty")


def _rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (in degrees) from the frame's display matrix, or 0."""
    try:
        angle = float(frame.rotation)
    except Exception:  # no display matrix, or a matrix that is not a rotation
        return 0
    if not np.isfinite(angle):
        return 0
    return round(angle / 90.0) % 4 * 90


def _fps_of(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    return 0.0


def _candidate_streams(container: av.container.InputContainer) -> list[av.video.stream.VideoStream]:
    """Video streams, best first: FFmpeg's pick, then the rest in file order, cover art last."""
    streams = list(container.streams.video)
    try:
        best = container.streams.best("video")
    except Exception:  # no ranking available: file order
        best = None
    streams.sort(key=lambda s: (bool(s.disposition & av.stream.Disposition.attached_pic), s is not best, s.index))
    return streams


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream, rewind: bool) -> Any:
    """The first frame ``stream`` decodes within :data:`_PROBE_PACKETS` packets, or ``None``."""
    if rewind:  # another stream was tried first and the demuxer has moved on
        container.seek(0)
    for n, packet in enumerate(container.demux(stream)):
        try:
            frames = packet.decode()
        except av.FFmpegError:  # a corrupt packet in a stream that may still decode later
            frames = []
        if frames:
            return frames[0]
        if n >= _PROBE_PACKETS:
            break
    return None


def _pick_stream(container: av.container.InputContainer, path: str) -> tuple[Any, av.VideoFrame]:
    """The video stream to read (the best that decodes) and its first frame; :class:`VideoDecodeError` if none."""
    candidates = _candidate_streams(container)
    if not candidates:
        raise VideoDecodeError(path, "no video stream")
    for n, stream in enumerate(candidates):
        first = _first_frame(container, stream, rewind=n > 0)
        if first is not None:
            if stream is not candidates[0]:
                log.debug(
                    "%s: video stream %d does not decode; reading stream %d", path, candidates[0].index, stream.index
                )
            return stream, first
    raise VideoDecodeError(path, "no decodable video frame")


_probe_cache: dict[tuple[str, int, int], VideoInfo] = {}


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` with PyAV, decode its first frame and describe it; :class:`VideoDecodeError` if it is no video.

    Results are cached per process, keyed by path, size and modification time.
    """
    path = os.fspath(path)
    _check_file(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _probe_cache:
        return _probe_cache[key]
    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream, first = _pick_stream(container, path)
            rotation = _rotation_of(first)
            w, h = first.width, first.height
            if rotation % 180:
                w, h = h, w
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if not duration and container.duration:
                duration = container.duration / av.time_base
            info = VideoInfo(
                path=path,
                num_frames=int(stream.frames or 0),
                fps=_fps_of(stream),
                width=w,
                height=h,
                rotation=rotation,
                duration=duration,
                codec=stream.codec_context.name,
                container=container.format.name,
                has_audio=bool(container.streams.audio),
                stream_index=stream.index,
                video_streams=len(container.streams.video),
            )
    except VideoDecodeError:
        raise
    except Exception as e:  # av.FFmpegError, OSError, UnicodeDecodeError, ...
        raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from e
    if len(_probe_cache) > 100_000:
        _probe_cache.clear()
    _probe_cache[key] = info
    return info


def output_size(height: int, width: int, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """``(H, W)`` after resizing: ``size`` an int sets the short side (aspect kept), a pair is ``(H, W)``."""
    if size is None:
        return height, width
    if isinstance(size, int):
        short = min(height, width)
        return max(1, round(height * size / short)), max(1, round(width * size / short))
    h, w = size
    return int(h), int(w)


class _DecordBackend:
    name = "decord"

    def __init__(self, path: str, out_hw: tuple[int, int], resize: bool, num_threads: int) -> None:
        import decord

        h, w = out_hw if resize else (-1, -1)
        self.reader = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=num_threads)
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps())
        self.shape = (*out_hw, 3)
        if self.num_frames <= 0:
            raise RuntimeError("decord found no frames")

    def get(self, indices: np.ndarray) -> torch.Tensor:
        batch = self.reader.get_batch([int(i) for i in indices])
        frames = torch.utils.dlpack.from_dlpack(batch.to_dlpack())  # (T, H, W, C)
        if tuple(frames.shape[1:]) != self.shape:  # decord 0.6 garbles some rotated or odd streams
            raise RuntimeError(f"decord returned frames of shape {tuple(frames.shape[1:])}, expected {self.shape}")
        return frames

    def close(self) -> None:
        self.reader = None


class _PyAVBackend:
    """Frame-exact random access with PyAV: seek to the keyframe before a wanted frame, decode forward.

    Frames are identified by presentation timestamp where timestamps are trustworthy; in AVI (no
    real timestamps, packed B-frames) they are counted from the start instead.
    """

    name = "pyav"

    def __init__(
        self, path: str, out_hw: tuple[int, int] | None, rotation: int, num_threads: int, stream_index: int
    ) -> None:
        self.path, self.rotation = path, rotation
        self.container = av.open(path, metadata_errors="ignore")
        self.stream = self.container.streams[stream_index]
        self.stream.codec_context.thread_count = num_threads
        self.fps = _fps_of(self.stream)
        pts, keys = [], []
        for packet in self.container.demux(self.stream):
            if packet.size == 0:
                continue  # flush packet at the end
            ts = packet.pts if packet.pts is not None else packet.dts
            pts.append(ts)
            if packet.is_keyframe and ts is not None:
                keys.append(ts)
        self.by_pts = (
            self.container.format.name != "avi" and None not in pts and len(set(pts)) == len(pts) and bool(keys)
        )
        self.frame_pts = sorted(pts) if self.by_pts else []
        self.key_pts = sorted(keys)
        self.num_frames = len(pts)
        if self.num_frames == 0:
            raise RuntimeError("no video packets")
        self.out_hw = out_hw  # display (H, W) wanted, or None
        self.rot_k = rotation // 90

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        kwargs: dict[str, Any] = {"format": "rgb24"}
        if self.out_hw is not None:
            h, w = self.out_hw if self.rot_k % 2 == 0 else self.out_hw[::-1]  # size before the rotation
            kwargs.update(height=h, width=w, interpolation="BILINEAR")  # closest to decord
        array = frame.to_ndarray(**kwargs)  # (H, W, C)
        return np.rot90(array, k=self.rot_k) if self.rot_k else array

    def _seek(self, ts: int) -> Any:
        self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
        return self.container.decode(self.stream)

    def get(self, indices: np.ndarray) -> torch.Tensor:
        wanted = sorted({int(i) for i in indices})
        got = self._get_by_pts(wanted) if self.by_pts else self._get_by_count(wanted)
        missing = [i for i in wanted if i not in got]
        if missing and self.by_pts:  # decoded timestamps that do not match the packets': count from the start
            got.update(self._get_by_count(missing))
            missing = [i for i in wanted if i not in got]
        if missing:
            raise RuntimeError(f"frames {missing[:5]} of {self.num_frames} did not decode (truncated or corrupt file?)")
        return torch.from_numpy(np.stack([got[int(i)] for i in indices]))  # (T, H, W, C)

    def _get_by_pts(self, wanted: list[int]) -> dict[int, np.ndarray]:
        index_of = {self.frame_pts[i]: i for i in wanted}
        got: dict[int, np.ndarray] = {}
        frames, position = None, None  # decoder iterator and the last pts it gave
        for i in wanted:
            if i in got:
                continue
            target = self.frame_pts[i]
            key = self.key_pts[max(0, bisect.bisect_right(self.key_pts, target) - 1)]
            if frames is None or position is None or target <= position or key > position:
                frames, position = self._seek(key), None  # re-seek when the keyframe lies ahead of us
            for frame in frames:
                ts = frame.pts
                if ts is None:
                    continue
                position = ts
                if ts in index_of and index_of[ts] not in got:
                    got[index_of[ts]] = self._convert(frame)
                if ts >= target:
                    break
        return got

    def _get_by_count(self, wanted: list[int]) -> dict[int, np.ndarray]:
        want, got = set(wanted), {}
        for n, frame in enumerate(self._seek(self.stream.start_time or 0)):
            if n in want:
                got[n] = self._convert(frame)
            if n >= wanted[-1]:
                break
        return got

    def close(self) -> None:
        self.container.close()


class VideoReader:
    """One open video. ``reader[indices]`` or ``reader.get_frames(indices)`` → uint8 ``(T, C, H, W)``.

    Args:
        path: the video file.
        size: resize while decoding: an int sets the short side (aspect kept), a pair is ``(H, W)``.
        backend: ``"auto"`` (decord unless the video is rotated, holds several video streams or decord
            fails, then PyAV), ``"decord"`` or ``"pyav"``.
        num_threads: decoder threads; keep it at 1 inside DataLoader workers.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        size: int | tuple[int, int] | None = None,
        backend: str = "auto",
        num_threads: int = 1,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.path = os.fspath(path)
        self.info = probe_video(self.path)
        self.size = size
        self.out_hw = None if size is None else output_size(self.info.height, self.info.width, size)
        self.num_threads = num_threads
        self._backend: _DecordBackend | _PyAVBackend | None = None
        if backend == "decord" and self.info.rotation:
            raise VideoDecodeError(self.path, f"rotated by {self.info.rotation} degrees; decord cannot rotate")
        if backend == "decord" and self.info.video_streams > 1:
            raise VideoDecodeError(
                self.path, f"{self.info.video_streams} video streams; decord cannot be told which one to read"
            )
        if backend in ("auto", "decord") and not self.info.rotation and self.info.video_streams == 1:
            try:
                hw = self.out_hw or (self.info.height, self.info.width)
                self._backend = _DecordBackend(self.path, hw, self.out_hw is not None, num_threads)
            except Exception as e:
                if backend == "decord":
                    raise VideoDecodeError(self.path, f"decord: {e}") from e
                log.debug("decord cannot open %s (%s); using PyAV", self.path, e)
        if self._backend is None:
            self._open_pyav()
        self._first_count = len(self)  # what callers sampled indices from; a fallback may count fewer

    def _open_pyav(self) -> None:
        try:
            self._backend = _PyAVBackend(
                self.path, self.out_hw, self.info.rotation, self.num_threads, self.info.stream_index
            )
        except Exception as e:
            raise VideoDecodeError(self.path, f"{type(e).__name__}: {e}") from e

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def fps(self) -> float:
        return self._backend.fps or self.info.fps

    def __len__(self) -> int:
        return self._backend.num_frames

    def __getitem__(self, indices: Any) -> torch.Tensor:
        return self.get_frames(indices)

    def get_frames(self, indices: Any) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``(T, C, H, W)``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no frame indices given")
        if idx.min() < 0 or idx.max() >= len(self):
            if len(self) < self._first_count and idx.min() >= 0 and idx.max() < self._first_count:
                # indices sampled from the first count, valid then: the file is at fault, not the caller
                raise VideoDecodeError(
                    self.path, f"only {len(self)} of the {self._first_count} frames first counted decode"
                )
            raise IndexError(f"frame indices {idx.min()}..{idx.max()} outside 0..{len(self) - 1} of {self.path}")
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = self._backend.get(uniq)
        except Exception as e:
            if self._backend.name != "decord":
                raise VideoDecodeError(self.path, f"{type(e).__name__}: {e}") from e
            log.debug("decord failed on %s (%s); retrying with PyAV", self.path, e)
            self._backend.close()  # a decord reader that failed once is not reused
            self._open_pyav()
            if idx.max() >= len(self):
                raise VideoDecodeError(self.path, f"decord: {e}; PyAV finds only {len(self)} frames") from e
            return self.get_frames(idx)
        if not np.array_equal(uniq, idx):
            frames = frames[torch.from_numpy(inverse.reshape(-1))]
        return rearrange(frames, "t h w c -> t c h w").contiguous()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"VideoReader({self.path!r}, {len(self)} frames, {self.fps:g} fps, {i.width}x{i.height}, {self.backend})"


# -- per-process, per-thread reader cache -------------------------------------------------------------
_local = threading.local()
_orphans: list[Any] = []  # readers inherited across fork: kept alive, never closed in the child
CACHE_SIZE = 8


def _cache() -> OrderedDict:
    if getattr(_local, "pid", None) != os.getpid():
        if getattr(_local, "readers", None):
            _orphans.append(_local.readers)
        _local.pid, _local.readers = os.getpid(), OrderedDict()
    return _local.readers


def clear_reader_cache() -> None:
    """Close this thread's cached readers."""
    readers = _cache()
    while readers:
        readers.popitem(last=False)[1].close()


def open_video(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    backend: str = "auto",
    cache: bool = True,
) -> VideoReader:
    """A :class:`VideoReader` for ``path``; with ``cache`` one reused from this process and thread (LRU of 8)."""
    if not cache:
        return VideoReader(path, size=size, backend=backend)
    readers = _cache()
    st = os.stat(path) if os.path.exists(path) else None
    key = (os.fspath(path), size if not isinstance(size, list) else tuple(size), backend, st and st.st_mtime_ns)
    if key in readers:
        readers.move_to_end(key)
        return readers[key]
    reader = VideoReader(path, size=size, backend=backend)
    readers[key] = reader
    while len(readers) > CACHE_SIZE:
        readers.popitem(last=False)[1].close()
    return reader


def _drop_cache_in_child() -> None:
    if getattr(_local, "readers", None):
        _orphans.append(_local.readers)
    _local.pid, _local.readers = os.getpid(), OrderedDict()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_cache_in_child)


# -- one-call API ---------------------------------------------------------------------------------------
def read_frames(
    path: str | os.PathLike,
    indices: Any,
    *,
    size: int | tuple[int, int] | None = None,
    backend: str = "auto",
    cache: bool = True,
) -> torch.Tensor:
    """The frames at ``indices`` of ``path`` as uint8 ``(T, C, H, W)``; see :class:`VideoReader`."""
    reader = open_video(path, size=size, backend=backend, cache=cache)
    try:
        return reader.get_frames(indices)
    except VideoDecodeError:
        if cache:
            forget_reader(reader)
        raise


def forget_reader(reader: VideoReader) -> None:
    """Close ``reader`` and drop it from this thread's cache (after it failed)."""
    readers = _cache()
    for key in [k for k, v in readers.items() if v is reader]:
        readers.pop(key).close()


def read_clip(
    path: str | os.PathLike,
    *,
    start: int = 0,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    pad: str = "loop",
    backend: str = "auto",
    cache: bool = True,
) -> torch.Tensor:
    """``num_frames`` frames of ``path`` from frame ``start`` as uint8 ``(T, C, H, W)``, upright.

    Args:
        start: first frame, as an index into the video's own frames.
        num_frames: frames in the clip.
        stride: take every ``stride``-th frame; with ``fps``, every ``stride``-th frame at that rate.
        fps: resample to this frame rate first (nearest native frame for each target time).
        size: resize while decoding: an int sets the short side (aspect kept), a pair is ``(H, W)``.
        pad: clips reaching past the last frame: ``"loop"`` wraps to the start, ``"repeat_last"``
            repeats the last frame, ``"error"`` raises ``ValueError`` (see :mod:`videozoo.data.sampling`).
        backend: ``"auto"``, ``"decord"`` or ``"pyav"``.
        cache: reuse an open reader of this process and thread.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or fails to decode.
    """
    from videozoo.data.sampling import clip_indices

    reader = open_video(path, size=size, backend=backend, cache=cache)
    indices = clip_indices(
        len(reader), start=start, num_frames=num_frames, stride=stride, fps=fps, native_fps=reader.fps, pad=pad
    )
    try:
        return reader.get_frames(indices)
    except VideoDecodeError:
        if cache:
            forget_reader(reader)
        raise


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether the name ends in a known video extension (no decoding)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
