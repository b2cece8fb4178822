"""Re-encode a folder of videos at training resolution: ``videozoo prepare SRC DST --short-side N``.

Why: a loader decodes every pixel of a frame before it can resize it. Kinetics originals run up to 1080p, so a
loader reading them decodes several times more pixels than the 128-160 px clips it trains on, and long-GOP
downloads (a keyframe every 5-10 s) make each random clip decode from a distant keyframe. Preparing the
dataset once, at the resolution training decodes, with short keyframe intervals, removes both costs.

A prepared file is an MP4 holding

* **every frame of the source, once, in display order**: the same frame count and frame rate. Sources at a
  constant rate (timestamps within a quarter frame of ``i / fps``; AVI, whose timestamps are frame counts) are
  re-timed exactly at ``i / fps``; variable-frame-rate sources keep their own timestamps (no frame is dropped or
  repeated to make the rate constant).
* **H.264** (libx264, ``crf``, ``preset``), yuv420p, limited range, the source's colour tags; MPEG-4 Part 2 when
  the libav inside PyAV has no libx264 (a warning says so).
* **short side N**, aspect kept (computed from the stored pixels, as :func:`videozoo.data.decode.read_clip`
  resizes, with the sample aspect ratio copied), both sides even; bicubic downscaling. A video whose short side
  is already N or less keeps its size (its sides rounded down to even): it is re-encoded, never upscaled, never
  copied, so every prepared file has the short keyframe interval and the same format.
* **upright frames without a display matrix**: rotated (phone) videos are turned as ``read_clip`` turns them, so
  decord and PyAV decode the prepared file alike.
* **a keyframe every ``keyframe_interval`` frames** (default 32, about a second). A random clip decodes from the
  keyframe before its first frame, on average ``K / 2`` frames more than its own span, but shorter intervals
  mean more intra frames, which are larger and slower to decode. Measured with ``benchmarks/prepare.py``
  (docs/benchmarks.md; 2-core AMD EPYC shared with other jobs, so CPU time per clip): random 16-frame clips at
  stride 2, a new reader per clip, from a 1280x720, 30 fps, 10 s H.264 clip with x264's default keyframe interval
  of 250 frames, in clips per CPU-second:

  =====================================  =================  =================
  file                                   short side 160     short side 256
  =====================================  =================  =================
  original, decoded at that short side   5.3                5.0
  prepared, K = 250                      19.7 (0.55 MB)     13.6 (0.62 MB)
  prepared, K = 64                       30.9 (0.60 MB)
  prepared, K = 32 (default)             33.3 (0.68 MB)     22.1 (0.89 MB)
  prepared, K = 16                       30.2 (0.80 MB)     21.4 (1.14 MB)
  prepared, K = 8                        27.8 (1.03 MB)
  =====================================  =================  =================

  From 16 to 64 the rate is flat within the run-to-run spread (about 8 %); 32 is as fast as 16 with files 9-22 %
  smaller, 8 is slower, and 250 loses over a third of it.
* **the first audio stream**, AAC at the source's sample rate (the nearest rate AAC allows if it has none) and
  channel count, aligned on the first video frame (``load_audio_segment``'s origin): audio before it is cut,
  gaps are filled with silence. Videos without audio stay without. AAC sources are re-encoded too (128 kb/s), not
  copied: cutting at the first video frame and filling gaps needs decoded samples, and one path for every source
  keeps the files alike.
* **a record** in the container's ``comment`` tag: ``videozoo-prepare {json}`` with the settings and the source's
  name and size.

Atomic and resumable: a video is written to ``<dst stem>.partial.mp4``, its packets are counted against the frames
written, and only then is it renamed into place, so a killed run leaves nothing that looks finished. A rerun skips
every output whose record matches the source and the settings, and redoes the rest (partial files are written
over). An output that exists with another record is reported as failed unless ``overwrite``. Files that are not
videos (annotation lists, CSVs) are copied as they are, so DST replaces SRC for the datasets (which find a listed
``x.avi`` as ``x.mp4``). Videos that cannot be read are listed in the summary and in ``DST/prepare_report.json``;
one bad file never stops the run, not even one that kills its worker process.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm.auto import tqdm

from videozoo.data.decode import is_video_file, probe_video

KEYFRAME_INTERVAL = 32  # frames; the module docstring gives the measurement behind it
CRF = 23  # x264's own default
PRESET = "fast"
AUDIO_BIT_RATE = 128_000
PARTIAL_SUFFIX = ".partial.mp4"
REPORT_NAME = "prepare_report.json"
RECORD_PREFIX = "videozoo-prepare "
CODECS = ("h264", "mpeg4")
_CFR_TOLERANCE = 0.25  # frames: timestamps this close to i / fps are a constant rate with rounded timestamps
_AUDIO_JITTER_S = 0.02  # audio timestamps this close to the end of what was written continue it seamlessly


# -- settings and results -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareSettings:
    """What a prepared file is encoded with; part of its record, so a rerun with other settings is noticed."""

    short_side: int
    keyframe_interval: int = KEYFRAME_INTERVAL
    crf: int = CRF
    codec: str = "h264"
    preset: str = PRESET

    def __post_init__(self) -> None:
        if not isinstance(self.short_side, int) or self.short_side < 2 or self.short_side % 2:
            raise ValueError(f"short_side must be a positive even number of pixels (yuv420p), got {self.short_side!r}")
        if not isinstance(self.keyframe_interval, int) or self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be a positive number of frames, got {self.keyframe_interval!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51 (x264's scale; lower is better), got {self.crf!r}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")


@dataclass
class PreparedVideo:
    """One prepared video: where it came from, what was written (sizes are ``(H, W)``)."""

    src: str
    dst: str
    frames: int
    fps: float
    size: tuple[int, int]
    source_size: tuple[int, int]
    resized: bool  # False: the source was no larger than the short side and kept its size
    encoder: str
    constant_rate: bool  # False: a variable-frame-rate source, timestamps kept
    audio: str | None  # "aac, 44100 Hz, 2 channels", or None when the source has no audio
    notes: list[str] = field(default_factory=list)  # what did not go as planned but did not stop the file


def prepared_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` of a prepared video: short side ``short_side`` (aspect kept) unless the source is no larger, both
    sides even (yuv420p); never larger than the source."""
    if min(height, width) <= short_side:
        return max(2, height // 2 * 2), max(2, width // 2 * 2)
    scale = short_side / min(height, width)
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


# -- timing: which timestamps the prepared frames get ---------------------------------------------------------------
@dataclass(frozen=True)
class _Timing:
    packets: int  # video packets in the source: the frame count decode.py gives it
    time_base: Fraction  # of the prepared video stream
    rate: Fraction  # nominal frame rate
    constant: bool  # frame i at i / rate; else the source's timestamps minus ``first_pts``
    first_pts: int  # in the source's time base
    origin_s: float  # time of the first video frame in the source: audio is aligned on it


def _scan_timing(path: str) -> _Timing:
    """Read the video packets' timestamps (no decoding) and decide between a constant and a variable rate."""
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.size]
        time_base = stream.time_base
        rates = [Fraction(r) for r in (stream.base_rate, stream.guessed_rate, stream.average_rate) if r and r > 0]
        origin_s = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
        avi = container.format.name == "avi"
    if not pts:
        raise ValueError("no video packets")
    if avi or not time_base or None in pts or len(set(pts)) != len(pts):
        # AVI timestamps count frames (decode order with packed B-frames), and missing or repeated timestamps say
        # nothing: frames are then evenly spaced at the header's rate, as every decoder plays them.
        if not rates:
            raise ValueError("no frame rate in the header and no usable timestamps")
        return _Timing(len(pts), 1 / rates[0], rates[0], True, 0, origin_s)
    ticks = np.sort(np.asarray(pts, dtype=np.float64))
    ticks -= ticks[0]
    if not rates and ticks[-1] > 0:  # no rate in the header: the mean rate of the timestamps
        rates = [Fraction((len(ticks) - 1) / float(ticks[-1] * time_base)).limit_denominator(1001)]
    if not rates:
        raise ValueError("no frame rate in the header and a single timestamp")
    for rate in rates:
        step = float(1 / (rate * time_base))  # ticks per frame
        if np.abs(ticks - np.arange(len(ticks)) * step).max() <= _CFR_TOLERANCE * step:
            return _Timing(len(pts), 1 / rate, rate, True, 0, origin_s)
    return _Timing(len(pts), Fraction(time_base), rates[0], False, min(pts), origin_s)


# -- video ----------------------------------------------------------------------------------------------------------
def _video_encoder(codec: str) -> str:
    if codec == "h264":
        try:
            av.codec.Codec("libx264", "w")
            return "libx264"
        except Exception:  # a libav built without GPL parts
            warnings.warn("libx264 is not in this PyAV build; writing MPEG-4 Part 2 instead of H.264", stacklevel=3)
    return "mpeg4"


class _VideoOut:
    """Scale, turn upright, time and encode decoded frames into one output stream."""

    def __init__(self, container: av.container.OutputContainer, source: av.video.stream.VideoStream, *,
                 size: tuple[int, int], rotation: int, timing: _Timing, settings: PrepareSettings,
                 threads: int) -> None:  # fmt: skip
        self.container, self.timing, self.rotation, self.threads = container, timing, rotation, threads
        self.height, self.width = size
        self.encoder = _video_encoder(settings.codec)
        self.stream = container.add_stream(self.encoder, rate=timing.rate)
        self._configure(source, settings)
        self.count, self.last_pts = 0, -1

    def _configure(self, source: av.video.stream.VideoStream, settings: PrepareSettings) -> None:
        stream, cc = self.stream, self.stream.codec_context
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        cc.time_base = stream.time_base = self.timing.time_base
        cc.framerate = self.timing.rate
        cc.gop_size = settings.keyframe_interval
        cc.thread_count = self.threads
        cc.color_range = 1  # MPEG (limited): _scaled converts full-range sources
        for tag in ("colorspace", "color_primaries", "color_trc"):  # pixels are not converted: keep their tags
            setattr(cc, tag, getattr(source.codec_context, tag))
        sar = source.sample_aspect_ratio
        if sar and sar > 0 and sar != 1:
            stream.sample_aspect_ratio = sar if self.rotation % 180 == 0 else 1 / sar
        if self.encoder == "libx264":
            cc.options = {"crf": str(settings.crf), "preset": settings.preset}
        else:  # MPEG-4 Part 2 has no CRF: a fixed quantiser of roughly the same quality
            cc.qscale = True
            cc.global_quality = max(2, min(31, round(settings.crf / 6))) * 118  # FF_QP2LAMBDA

    def add(self, frame: av.VideoFrame) -> None:
        image = self._scaled(frame)
        image.pts, image.time_base = self._next_pts(frame), self.timing.time_base
        self.container.mux(self.stream.encode(image))
        self.count += 1

    def _next_pts(self, frame: av.VideoFrame) -> int:
        if self.timing.constant:
            pts = self.count
        elif frame.pts is None or frame.pts - self.timing.first_pts <= self.last_pts:
            pts = self.last_pts + 1  # keep the frame, in the order it came out of the decoder
        else:
            pts = frame.pts - self.timing.first_pts
        self.last_pts = pts
        return pts

    def _scaled(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Resize to the output size (bicubic, limited range) and turn upright as decode.py does."""
        quarter_turn = self.rotation % 180 != 0
        height, width = (self.width, self.height) if quarter_turn else (self.height, self.width)
        out = frame.reformat(width=width, height=height, format="yuv444p" if self.rotation else "yuv420p",
                             interpolation="BICUBIC", src_color_range=frame.color_range, dst_color_range="MPEG",
                             threads=self.threads)  # fmt: skip
        if not self.rotation:
            return out
        planes = np.rot90(out.to_ndarray(), k=self.rotation // 90, axes=(1, 2))  # (3, H, W), counter-clockwise
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(planes), format="yuv444p")

    def flush(self) -> None:
        self.container.mux(self.stream.encode())


# -- audio ----------------------------------------------------------------------------------------------------------
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _aac_layout(layout: av.AudioLayout) -> str:
    """The source's layout, or for a bare channel count (Matroska, PCM: "6 channels") the usual layout of that
    many channels; the AAC encoder refuses unnamed channels."""
    if any(channel.name != "NONE" for channel in layout.channels):
        return layout.name
    if layout.nb_channels not in _DEFAULT_LAYOUTS:
        raise ValueError(f"{layout.nb_channels} audio channels: AAC takes 1 to 8")
    return _DEFAULT_LAYOUTS[layout.nb_channels]


def _aac_rate(rate: int) -> int:
    allowed = av.codec.Codec("aac", "w").audio_rates or (rate,)
    return rate if rate in allowed else min(allowed, key=lambda r: abs(r - rate))


class _AudioOut:
    """Decoded audio frames -> AAC at the source's rate and channels, on a timeline starting at the first video
    frame (``origin_s``): samples before it are cut, gaps filled with silence, timestamp jitter ignored."""

    def __init__(self, container: av.container.OutputContainer, source: av.audio.stream.AudioStream, *,
                 origin_s: float) -> None:  # fmt: skip
        self.container, self.origin_s = container, origin_s
        self.rate = _aac_rate(source.codec_context.sample_rate or source.rate)
        self.layout = _aac_layout(source.codec_context.layout)
        self.channels = source.codec_context.channels
        self.stream = container.add_stream("aac", rate=self.rate)
        self.stream.layout, self.stream.bit_rate = self.layout, AUDIO_BIT_RATE
        self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self.cursor: int | None = None  # samples written so far (None: nothing yet)
        self.source_rate = source.codec_context.sample_rate or source.rate

    def add(self, frame: av.AudioFrame | None) -> None:
        """One decoded frame, or None at the end (flushes the resampler)."""
        for out in self.resampler.resample(frame):
            start = None if out.time is None else round((out.time - self.origin_s) * self.rate)
            self._put(out.to_ndarray(), start)

    def _put(self, samples: np.ndarray, start: int | None) -> None:
        if start is None or (self.cursor is not None and abs(start - self.cursor) <= _AUDIO_JITTER_S * self.rate):
            start = self.cursor or 0
        written = self.cursor or 0
        if start < written:  # before the first video frame, or overlapping what was written
            samples, start = samples[:, written - start :], written
        while start > written:  # a gap: silence, a second at a time
            n = min(start - written, self.rate)
            self._encode(np.zeros((samples.shape[0], n), np.float32), written)
            written += n
        if samples.shape[1]:
            self._encode(samples, written)

    def _encode(self, samples: np.ndarray, pts: int) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                           layout=self.layout)  # fmt: skip
        frame.sample_rate, frame.pts, frame.time_base = self.rate, pts, Fraction(1, self.rate)
        self.container.mux(self.stream.encode(frame))
        self.cursor = pts + samples.shape[1]

    def flush(self) -> None:
        self.add(None)
        self.container.mux(self.stream.encode())

    def describe(self) -> str:
        return f"aac, {self.rate} Hz, {self.channels} channel{'s' if self.channels != 1 else ''}"


# -- one video ------------------------------------------------------------------------------------------------------
def _record(src: Path, settings: PrepareSettings) -> dict[str, Any]:
    """What a finished file says it is. The source by name and size, not modification time: a dataset copied
    without preserving times is still the same dataset, while a re-downloaded video almost always differs in size."""
    return {"settings": asdict(settings), "source": {"name": src.name, "bytes": src.stat().st_size}}


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record :func:`prepare_video` stored in a prepared file (settings, source), or None if it has none."""
    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            comment = container.metadata.get("comment", "")
            has_video = bool(container.streams.video) and (container.streams.video[0].frames or 0) > 0
    except Exception:  # unreadable: not finished
        return None
    if not has_video or not comment.startswith(RECORD_PREFIX):
        return None
    try:
        return json.loads(comment[len(RECORD_PREFIX) :])
    except json.JSONDecodeError:
        return None


def is_prepared(dst: str | os.PathLike, src: str | os.PathLike, settings: PrepareSettings) -> bool:
    """Whether ``dst`` is ``src`` prepared with ``settings`` (its record matches the source and the settings)."""
    return Path(dst).is_file() and read_record(dst) == _record(Path(src), settings)


def partial_path(dst: str | os.PathLike) -> Path:
    """Where ``dst`` is written before it is renamed into place: ``<stem>.partial.mp4`` beside it."""
    dst = Path(dst)
    return dst.with_name(dst.stem + PARTIAL_SUFFIX)


def prepare_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    short_side: int,
    keyframe_interval: int = KEYFRAME_INTERVAL,
    crf: int = CRF,
    codec: str = "h264",
    preset: str = PRESET,
    threads: int = 0,
    overwrite: bool = False,
) -> PreparedVideo:
    """Re-encode one video at short side ``short_side`` into the MP4 ``dst`` (what it keeps: module docstring).

    ``threads``: decoder, scaler and encoder threads (0: as many as useful; 1 inside a process pool).
    Raises :class:`~videozoo.data.decode.VideoDecodeError` for what is no video, ``FileExistsError`` if ``dst``
    exists and not ``overwrite``, ``RuntimeError`` if the written file does not hold every frame.
    """  # fmt: skip
    settings = PrepareSettings(short_side, keyframe_interval, crf, codec, preset)
    return _prepare(Path(src), Path(dst), settings, threads=threads, overwrite=overwrite)


def _prepare(src: Path, dst: Path, settings: PrepareSettings, *, threads: int, overwrite: bool) -> PreparedVideo:
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    if dst.suffix.lower() != ".mp4":
        raise ValueError(f"{dst}: a prepared video is an MP4; name it .mp4")
    info = probe_video(src)  # VideoDecodeError naming the file and the cause for what is no video
    timing = _scan_timing(str(src))
    partial = partial_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = _encode(src, partial, info, timing, settings, threads)
        _check_written(partial, result)
        os.replace(partial, dst)  # atomic: dst appears complete or not at all
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    result.dst = str(dst)
    return result


def _encode(src: Path, partial: Path, info: Any, timing: _Timing, settings: PrepareSettings,
            threads: int) -> PreparedVideo:  # fmt: skip
    size = prepared_size(info.height, info.width, settings.short_side)
    with av.open(str(src), metadata_errors="ignore") as source, \
            av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:  # fmt: skip
        out.metadata["comment"] = RECORD_PREFIX + json.dumps(_record(src, settings), sort_keys=True)
        vin = source.streams.video[0]
        vin.codec_context.thread_count = threads
        if threads != 1:
            vin.thread_type = "AUTO"  # frame threads: the big win when decoding 1080p
        ain = source.streams.audio[0] if source.streams.audio else None
        video = _VideoOut(out, vin, size=size, rotation=info.rotation, timing=timing, settings=settings,
                          threads=threads)  # fmt: skip
        audio = _AudioOut(out, ain, origin_s=timing.origin_s) if ain is not None else None
        damaged = _transcode(source, {vin: video} if ain is None else {vin: video, ain: audio})
    if video.count == 0:
        raise RuntimeError("no video frame decoded")
    return PreparedVideo(
        src=str(src), dst=str(partial), frames=video.count, fps=float(timing.rate), size=size,
        source_size=(info.height, info.width), resized=min(info.height, info.width) > settings.short_side,
        encoder=video.encoder, constant_rate=timing.constant, notes=_notes(video, audio, timing, damaged),
        audio=audio.describe() if audio is not None else None,
    )  # fmt: skip


def _transcode(source: av.container.InputContainer, sinks: dict[Any, _VideoOut | _AudioOut]) -> dict[str, int]:
    """Decode the streams in ``sinks`` in file order into their outputs (so the output interleaves as the source
    does), flush them, and return the damaged packets skipped per stream type."""
    damaged = {"video": 0, "audio": 0}
    for packet in source.demux(*sinks):
        try:
            frames = packet.decode()  # the empty packet at the end of each stream flushes its decoder
        except av.error.InvalidDataError:
            damaged[packet.stream.type] += 1  # decoders conceal a damaged packet and go on; so do we
            continue
        for frame in frames:
            sinks[packet.stream].add(frame)
    for sink in sinks.values():
        sink.flush()
    return damaged


def _notes(video: _VideoOut, audio: _AudioOut | None, timing: _Timing, damaged: dict[str, int]) -> list[str]:
    notes = [f"{n} damaged {kind} packets skipped" for kind, n in damaged.items() if n]
    if video.count != timing.packets:
        notes.append(f"{video.count} of the source's {timing.packets} video frames decoded")
    if audio is not None and audio.rate != audio.source_rate:
        notes.append(f"audio resampled from {audio.source_rate} Hz (not an AAC rate) to {audio.rate} Hz")
    return notes


def _check_written(path: Path, result: PreparedVideo) -> None:
    """The written file must hold every encoded frame (packets counted, not the header believed)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = sum(1 for p in container.demux(stream) if p.size)
        has_audio = bool(container.streams.audio)
    if packets != result.frames:
        raise RuntimeError(f"{path}: {result.frames} frames encoded but the file holds {packets}")
    if has_audio != (result.audio is not None):
        raise RuntimeError(f"{path}: audio track {'written' if has_audio else 'missing'}, expected the opposite")


# -- a folder -------------------------------------------------------------------------------------------------------
@dataclass
class PrepareSummary:
    """What :func:`prepare_folder` did; ``failed`` maps a source file to why it could not be prepared."""

    src: str
    dst: str
    settings: dict[str, Any]
    prepared: list[PreparedVideo] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already prepared with these settings
    failed: dict[str, str] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)  # files that are not videos, copied as they are
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.prepared)

    @property
    def kept_size(self) -> list[str]:
        """Sources no larger than the short side: re-encoded at their own size, not upscaled."""
        return [v.src for v in self.prepared if not v.resized]

    def __str__(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        kept = f", {len(self.kept_size)} kept their smaller size" if self.kept_size else ""
        noted = sum(1 for v in self.prepared if v.notes)
        kept += f", {noted} with notes in the report" if noted else ""
        return (f"{len(self.prepared)} prepared ({self.frames} frames, {rate:.0f} frames/s{kept}), "
                f"{len(self.skipped)} already done, {len(self.failed)} failed; "
                f"{len(self.copied)} other files copied")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "src": self.src, "dst": self.dst, "settings": self.settings, "summary": str(self),
            "prepared": len(self.prepared), "already_done": len(self.skipped), "failed": len(self.failed),
            "failures": [{"path": path, "error": error} for path, error in self.failed.items()],
            "kept_size": self.kept_size, "notes": {v.src: v.notes for v in self.prepared if v.notes},
            "other_files_copied": len(self.copied), "frames": self.frames, "seconds": round(self.seconds, 3),
        }  # fmt: skip


def _folders(src: str | os.PathLike, dst: str | os.PathLike) -> tuple[Path, Path]:
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such folder")
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder of videos")
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst} is the source folder; prepared videos go to another folder")
    if dst.exists() and not dst.is_dir():
        raise NotADirectoryError(f"{dst}: exists and is not a folder")
    return src, dst


def _source_files(src: Path, dst: Path) -> tuple[list[Path], list[Path]]:
    """(videos, other files) under ``src``, leaving out ``dst`` if it lies inside, partial files and old reports."""
    dst = dst.resolve()
    videos, others = [], []
    for path in sorted(src.rglob("*")):
        if not path.is_file() or dst in path.resolve().parents or path.name.endswith(PARTIAL_SUFFIX):
            continue
        if path.parent == src and path.name == REPORT_NAME:
            continue
        (videos if is_video_file(path) else others).append(path)
    return videos, others


def _same_copy(path: Path, target: Path) -> bool:
    """Whether ``target`` is a copy of ``path`` made by ``copy2`` (same size and modification second)."""
    if not target.is_file():
        return False
    a, b = path.stat(), target.stat()
    return (a.st_size, int(a.st_mtime)) == (b.st_size, int(b.st_mtime))


def _copy_other_files(files: list[Path], src: Path, dst: Path, summary: PrepareSummary) -> None:
    """Copy what is not a video (annotation lists, CSVs), unless an identical copy (size, mtime) is there."""
    for path in files:
        target = dst / path.relative_to(src)
        try:
            if _same_copy(path, target):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".partial")
            shutil.copy2(path, tmp)
            os.replace(tmp, target)
            summary.copied.append(str(path))
        except OSError as err:
            summary.failed[str(path)] = f"{type(err).__name__}: {err}"


def _video_jobs(videos: list[Path], src: Path, dst: Path, summary: PrepareSummary) -> list[tuple[Path, Path]]:
    """``(source, output)`` pairs; sources that would share an output (``a.avi`` and ``a.mp4``) all fail."""
    by_output: dict[Path, list[Path]] = {}
    for video in videos:
        by_output.setdefault(dst / video.relative_to(src).with_suffix(".mp4"), []).append(video)
    jobs = []
    for out, sources in by_output.items():
        if len(sources) == 1:
            jobs.append((sources[0], out))
            continue
        for video in sources:
            others = ", ".join(s.name for s in sources if s != video)
            summary.failed[str(video)] = f"would be written to {out} like {others}; rename one of them"
    return jobs


def _job(job: tuple[Path, Path, PrepareSettings, bool, int]) -> tuple[str, str, Any]:
    """Prepare one video in a worker: ("prepared", src, PreparedVideo), ("skipped", src, None) or
    ("failed", src, why). Never raises: one bad file must not stop the folder."""
    src, dst, settings, overwrite, threads = job
    try:
        if dst.exists() and not overwrite:
            if is_prepared(dst, src, settings):
                return "skipped", str(src), None
            raise FileExistsError(f"{dst} exists but is not this file prepared with these settings "
                                  f"(another source, other settings, or not written by videozoo prepare); "
                                  f"use overwrite to replace it")  # fmt: skip
        return "prepared", str(src), _prepare(src, dst, settings, threads=threads, overwrite=True)
    except Exception as err:
        return "failed", str(src), f"{type(err).__name__}: {err}"


def prepare_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    short_side: int,
    workers: int | None = None,
    keyframe_interval: int = KEYFRAME_INTERVAL,
    crf: int = CRF,
    codec: str = "h264",
    preset: str = PRESET,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare every video under ``src`` into ``dst`` with the same folder structure (``x.avi`` -> ``x.mp4``), copy
    the other files, and write ``dst/prepare_report.json``. Resumable: a rerun skips finished videos.

    ``workers`` processes (default: all cores) prepare one video each, with one thread apiece; ``workers=1`` runs
    in this process with threaded codecs. Raises only for a bad ``src``/``dst`` or settings; videos that fail are
    listed in the summary and the report.
    """  # fmt: skip
    settings = PrepareSettings(short_side, keyframe_interval, crf, codec, preset)
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    src, dst = _folders(src, dst)
    start = time.perf_counter()
    summary = PrepareSummary(src=str(src), dst=str(dst), settings=asdict(settings))
    videos, others = _source_files(src, dst)
    dst.mkdir(parents=True, exist_ok=True)
    _copy_other_files(others, src, dst, summary)
    pairs = _video_jobs(videos, src, dst, summary)
    threads = 0 if workers == 1 else 1
    jobs = [(video, out, settings, overwrite, threads) for video, out in pairs]
    bar = tqdm(total=len(jobs), desc=f"prepare {short_side}p", unit="video", disable=not progress)
    for status, video, value in _run(jobs, workers):
        if status == "prepared":
            summary.prepared.append(value)
        elif status == "skipped":
            summary.skipped.append(video)
        else:
            summary.failed[video] = value
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed), refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - start
    _write_report(summary, dst / REPORT_NAME)
    return summary


_DIED = "the worker process died while preparing it (a crash in the decoder, or out of memory)"


def _run(jobs: list[tuple], workers: int, *, work: Callable[[tuple], tuple] = _job) -> Iterator[tuple[str, str, Any]]:
    """``work(job)`` for every job, in ``workers`` processes (in this one for a single worker or job).

    A worker that dies (a segfault in a decoder, the OOM killer) breaks the whole pool; the jobs it had in flight are
    then run again one by one, each alone in a fresh pool, so the one that kills its process is reported as failed
    and the others are prepared. Jobs not yet started go on in a new pool."""
    if workers == 1 or len(jobs) <= 1:
        yield from map(work, jobs)
        return
    todo = jobs[::-1]  # popped from the end: in order
    while todo:
        suspects = yield from _pool_pass(todo, min(workers, len(todo)), work)
        for job in suspects:
            if (yield from _pool_pass([job], 1, work)):
                yield "failed", str(job[0]), _DIED


def _pool_pass(todo: list[tuple], workers: int, work: Callable) -> Generator[tuple, None, list[tuple]]:
    """Run jobs popped from ``todo`` with ``workers`` in flight (no more, so that a broken pool tells which jobs it
    took down); yield their results; return the jobs in flight when the pool broke (empty when it did not)."""
    running: dict[Future, tuple] = {}
    pool = ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_watch_parent, initargs=(os.getpid(),))
    with pool:
        while todo or running:
            while todo and len(running) < workers:
                job = todo.pop()
                running[pool.submit(work, job)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = []
            for future in done:
                job = running.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    broken.append(job)
                else:
                    yield future.result()
            if broken:
                return broken + list(running.values())  # every job in flight fails with the pool
    return []


def _watch_parent(pid: int) -> None:
    """Worker initializer: exit when the process that started the pool is gone. Killed with SIGKILL, it cannot stop
    its workers, which would otherwise finish their video and then wait for work forever (and keep the forkserver
    alive); a rerun must not race them for the same partial files."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid exists (reused by another user's process): keep watching
                pass

    threading.Thread(target=watch, name="videozoo-prepare-watchdog", daemon=True).start()


def _pool_context() -> mp.context.BaseContext:
    """Not fork: the caller may hold codec or torch thread pools whose locks a forked child inherits without their
    threads. A forkserver imports this module once and forks clean workers from it; spawn where there is none."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _write_report(summary: PrepareSummary, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


# -- `videozoo prepare SRC DST --short-side N` ----------------------------------------------------------------------
def run_prepare_command(args: Any) -> int:
    """Run ``videozoo prepare`` from parsed arguments (``quiet``: the CLI's no-progress flag): 0 when every video was
    prepared or already done, 1 when some failed (listed on stderr and in the report). Bad settings or folders raise
    (the CLI's usage error, exit 2), and so does a run with nothing to show, now or from before (every video failed,
    or SRC holds none): :class:`~videozoo.data.decode.NoReadableVideoError`, the input is wrong, not one file."""
    from videozoo.data.decode import VIDEO_EXTENSIONS, NoReadableVideoError

    summary = prepare_folder(
        args.src, args.dst, short_side=args.short_side, workers=args.workers,
        keyframe_interval=KEYFRAME_INTERVAL if args.keyframe_interval is None else args.keyframe_interval,
        crf=CRF if args.crf is None else args.crf, overwrite=args.overwrite, progress=not args.quiet,
    )  # fmt: skip
    print(summary)
    for video in summary.prepared:
        for note in video.notes:
            print(f"note: {video.src}: {note}", file=sys.stderr)
    for video, error in summary.failed.items():
        print(f"failed: {video}: {error}", file=sys.stderr)
    print(f"report: {Path(summary.dst) / REPORT_NAME}")
    if not (summary.prepared or summary.skipped):
        why = "no video could be read (listed above)" if summary.failed else \
            f"it holds no video file ({', '.join(VIDEO_EXTENSIONS)})"  # fmt: skip
        raise NoReadableVideoError(f"nothing prepared from {args.src}: {why}")
    return 0 if summary.ok else 1
