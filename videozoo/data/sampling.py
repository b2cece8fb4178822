"""Clip sampling: which frames of a video make a clip. Pure functions of (frames in the video, native fps).

A clip is ``num_frames`` frames taken every ``stride`` frames, or, with ``fps``, at that frame rate
(each target time takes the nearest native frame, so 25 → 30 fps repeats some frames and 30 → 15 fps
takes every second one); ``stride`` then counts frames at the target rate.

Clips longer than the video start at frame 0 and are padded by one rule, chosen with ``pad``:

* ``"loop"`` (default, as mmaction2): indices past the end wrap to the start, ``n → 0, n+1 → 1, …``;
* ``"repeat_last"``: indices past the end repeat the last frame ``n - 1``;
* ``"error"``: raise ``ValueError``.

Every function returns int64 frame indices, ``(T,)`` for one clip, ``(N, T)`` for several.

Padding is fine for a video a few frames short, but a 3-frame video looped to an 8-frame clip is
mostly repeats: :func:`short_clip_note` says so for a video that supplies less than
:data:`MIN_COVERAGE` of a clip's frames, and embedding, prediction and the datasets count such videos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD_MODES = ("loop", "repeat_last", "error")
MIN_COVERAGE = 0.5  # a video supplying less than this fraction of a clip's frames is reported as mostly padding


def clip_offsets(
    num_frames: int, *, stride: int = 1, fps: float | None = None, native_fps: float | None = None
) -> np.ndarray:
    """Native-frame offsets of a clip's frames from its first frame, ``(T,)``."""
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    steps = np.arange(num_frames, dtype=np.int64) * stride
    if fps is None:
        return steps
    return np.floor(steps * _ratio(fps, native_fps) + 0.5 + 1e-9).astype(np.int64)


def _ratio(fps: float | None, native_fps: float | None) -> float:
    """Native frames per target frame."""
    if fps is None:
        return 1.0
    if fps <= 0 or not native_fps or native_fps <= 0:
        raise ValueError(f"resampling to fps={fps} needs a positive native fps, got {native_fps}")
    return native_fps / fps


def clip_span(num_frames: int, *, stride: int = 1, fps: float | None = None, native_fps: float | None = None) -> int:
    """How many native frames a clip covers, first to last inclusive."""
    return int(clip_offsets(num_frames, stride=stride, fps=fps, native_fps=native_fps)[-1]) + 1


def clip_coverage(
    num_video_frames: int,
    *,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
) -> float:
    """Fraction of one clip's frames that a ``num_video_frames`` video supplies itself (1.0 when a clip fits)."""
    offsets = clip_offsets(num_frames, stride=stride, fps=fps, native_fps=native_fps)
    return float(np.mean(offsets < num_video_frames))


def short_clip_note(
    num_video_frames: int,
    *,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    pad: str = "loop",
) -> str | None:
    """Why a video's clips are mostly padding (it supplies less than :data:`MIN_COVERAGE` of one), else ``None``."""
    coverage = clip_coverage(num_video_frames, num_frames=num_frames, stride=stride, fps=fps, native_fps=native_fps)
    if coverage >= MIN_COVERAGE:
        return None
    own = round(coverage * num_frames)
    return f"{num_video_frames} frames supply {own} of the {num_frames} frames a clip needs (the rest: {pad} padding)"


def pad_indices(indices: np.ndarray, num_video_frames: int, pad: str = "loop") -> np.ndarray:
    """Bring indices past the end of a ``num_video_frames`` video back inside by the ``pad`` rule."""
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0 or indices.max() < num_video_frames:
        return indices
    if pad == "error":
        raise ValueError(f"clip needs frame {indices.max()} but the video has {num_video_frames} frames")
    if pad == "loop":
        return indices % num_video_frames
    return np.minimum(indices, num_video_frames - 1)


def clip_indices(
    num_video_frames: int,
    *,
    start: int = 0,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    pad: str = "loop",
) -> np.ndarray:
    """Frame indices ``(T,)`` of the clip starting at native frame ``start``."""
    if num_video_frames < 1:
        raise ValueError("the video has no frames")
    if not 0 <= start < num_video_frames:
        raise ValueError(f"start={start} outside the video's {num_video_frames} frames")
    offsets = clip_offsets(num_frames, stride=stride, fps=fps, native_fps=native_fps)
    return pad_indices(start + offsets, num_video_frames, pad)


def _last_start(num_video_frames: int, span: int) -> int:
    return max(0, num_video_frames - span)


def random_clip(
    num_video_frames: int,
    *,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    pad: str = "loop",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One clip ``(T,)`` at a uniformly random start that keeps it inside the video when it fits."""
    rng = rng if rng is not None else np.random.default_rng()
    span = clip_span(num_frames, stride=stride, fps=fps, native_fps=native_fps)
    start = int(rng.integers(0, _last_start(num_video_frames, span) + 1))
    return clip_indices(
        num_video_frames, start=start, num_frames=num_frames, stride=stride, fps=fps, native_fps=native_fps, pad=pad
    )


def uniform_clips(
    num_video_frames: int,
    *,
    num_clips: int = 10,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    pad: str = "loop",
) -> np.ndarray:
    """``num_clips`` clips ``(N, T)``, each centred in one of ``N`` equal segments of the possible starts.

    The usual test-time sampling (mmaction2, SlowFast): one clip is the centre clip.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = clip_span(num_frames, stride=stride, fps=fps, native_fps=native_fps)
    interval = (_last_start(num_video_frames, span) + 1) / num_clips
    starts = np.floor(np.arange(num_clips) * interval + interval / 2).astype(np.int64)
    return np.stack(
        [
            clip_indices(
                num_video_frames,
                start=int(s),
                num_frames=num_frames,
                stride=stride,
                fps=fps,
                native_fps=native_fps,
                pad=pad,
            )
            for s in starts
        ]
    )


def sliding_windows(
    num_video_frames: int,
    *,
    num_frames: int = 32,
    step: int = 15,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    pad: str = "loop",
) -> np.ndarray:
    """Every window ``(N, T)`` of ``num_frames`` frames, starts ``step`` frames apart (CoCLR: 32 frames, step 15).

    ``step`` counts native frames, or target-rate frames with ``fps``. Windows run from frame 0 while
    they fit; a video shorter than one window gives one padded window.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    span = clip_span(num_frames, stride=stride, fps=fps, native_fps=native_fps)
    last = _last_start(num_video_frames, span)
    hop = step * _ratio(fps, native_fps)
    starts = np.unique(np.floor(np.arange(int(last // hop) + 1) * hop + 1e-9).astype(np.int64))
    return np.stack(
        [
            clip_indices(
                num_video_frames,
                start=int(s),
                num_frames=num_frames,
                stride=stride,
                fps=fps,
                native_fps=native_fps,
                pad=pad,
            )
            for s in starts
        ]
    )


# -- samplers: the same rules as objects a dataset holds -------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ClipSampler:
    """Base: ``sampler(num_video_frames, native_fps, rng)`` → ``(N, T)`` frame indices."""

    num_frames: int = 16
    stride: int = 1
    fps: float | None = None
    pad: str = "loop"

    def span(self, native_fps: float | None = None) -> int:
        """Native frames one clip covers."""
        return clip_span(self.num_frames, stride=self.stride, fps=self.fps, native_fps=native_fps)

    def short_clip_note(self, num_video_frames: int, native_fps: float | None = None) -> str | None:
        """:func:`short_clip_note` for this sampler's clips: ``None`` unless they are mostly padding."""
        return short_clip_note(num_video_frames, **self._kw(native_fps))

    def _kw(self, native_fps: float | None) -> dict:
        return {
            "num_frames": self.num_frames,
            "stride": self.stride,
            "fps": self.fps,
            "native_fps": native_fps,
            "pad": self.pad,
        }

    def __call__(self, num_video_frames: int, native_fps: float | None, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class RandomClipSampler(ClipSampler):
    """One random clip per call (training)."""

    def __call__(self, num_video_frames: int, native_fps: float | None, rng: np.random.Generator) -> np.ndarray:
        return random_clip(num_video_frames, rng=rng, **self._kw(native_fps))[None]


@dataclass(frozen=True, kw_only=True)
class UniformClipSampler(ClipSampler):
    """``num_clips`` evenly spread clips (multi-clip testing)."""

    num_clips: int = 10

    def __call__(self, num_video_frames: int, native_fps: float | None, rng: np.random.Generator) -> np.ndarray:
        return uniform_clips(num_video_frames, num_clips=self.num_clips, **self._kw(native_fps))


@dataclass(frozen=True, kw_only=True)
class SlidingWindowSampler(ClipSampler):
    """All windows ``step`` frames apart (CoCLR retrieval: 32 frames, step 15); N varies per video."""

    num_frames: int = 32
    step: int = 15

    def __call__(self, num_video_frames: int, native_fps: float | None, rng: np.random.Generator) -> np.ndarray:
        return sliding_windows(num_video_frames, step=self.step, **self._kw(native_fps))
