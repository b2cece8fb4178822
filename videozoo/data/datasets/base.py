"""The dataset every video dataset is: samples in, decoded + augmented multi-view clips out, bad videos survived."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from multiprocessing.context import get_spawning_popen
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from videozoo.data.datasets.annotations import VideoSample
from videozoo.data.decode import VideoDecodeError, as_decode_error, forget_reader, open_video
from videozoo.data.sampling import ClipSampler, RandomClipSampler

log = logging.getLogger("videozoo.data")


class FailureCounter:
    """A count kept in shared memory, one slot per DataLoader worker (no lock, no lost updates).

    Workers inherit it (``fork``) or receive it when they start (``spawn``, ``forkserver``), so the
    dataset object in the main process sees every worker's failures.
    """

    SLOTS = 256

    def __init__(self, slots: Any = None) -> None:
        self._slots = slots if slots is not None else mp.RawArray("q", self.SLOTS)

    def increment(self) -> int:
        info = torch.utils.data.get_worker_info()
        slot = 0 if info is None else 1 + info.id % (self.SLOTS - 1)
        self._slots[slot] += 1
        return self.value

    @property
    def value(self) -> int:
        return int(sum(self._slots))

    def __reduce__(self) -> tuple[Any, ...]:
        if get_spawning_popen() is not None:  # pickled for a worker process: share the memory
            return FailureCounter, (self._slots,)
        return _detached_counter, (self.value,)  # pickled for anything else: a snapshot


def _detached_counter(value: int) -> FailureCounter:
    counter = FailureCounter()
    counter._slots[0] = value
    return counter


class VideoDataset(torch.utils.data.Dataset):
    """Videos → dicts of clips. Subclasses (UCF101, HMDB51, Kinetics400, VideoFolder, VideoList) only list samples.

    ``dataset[i]`` is ``{"video", "label", "index", "source_id", "path", "frame_indices"}`` plus
    ``"flow"`` with ``flow_root`` and ``"audio"`` with ``audio_sample_rate``:

    * ``video``: ``transform(clip)`` for every clip, ``clip`` uint8 ``(T, C, H, W)``; stacked to
      ``(V, C, T, H, W)`` over the ``num_views`` views × clips per view of the sampler, or ``(C, T, H, W)``
      when that is one clip. Without ``transform``: uint8 ``(C, T, H, W)``.
    * ``flow``: the stored flow frames aligned with each RGB clip, read from ``<flow_root>/<sample.key>/``
      (:func:`videozoo.data.flow.read_flow_clip`: flow ``i`` is frame ``i`` → ``i + 1``). With
      ``flow_root`` and no ``flow_transform``, ``transform(rgb, flow)`` is called and must return both
      (:class:`videozoo.data.transforms.PairedTransform`: one crop and flip for both).
    * ``audio``: ``audio_transform(wave)`` of the mono waveform under each clip (``audio_duration`` seconds
      from the clip's first frame, default the clip's own duration); videos without audio count as failures.
    * ``index``: the sample actually returned (after a replacement, not the one asked for).

    Bad videos: with ``skip_bad`` a :class:`VideoDecodeError` (also: no audio when audio is asked for, no
    flow folder, a video too short for a sampler with ``pad="error"``, any other failure to read the frames,
    such as a file shorter than its header says) is logged, counted in ``num_failures`` (shared by the
    DataLoader workers) and ``failed_paths`` (this process), and a random other video is returned instead;
    after ``max_retries`` failures in a row the error is raised.

    Short videos: a video supplying less than half of a clip's frames is used, padded by the sampler's rule,
    and noted in ``padded_paths`` (this process; path -> how many frames it supplies), so that a run can say
    how much of its data was mostly padding.

    Args:
        samples: the videos.
        classes: class names; label ``i`` is ``classes[i]``.
        sampler: which frames (default: one random clip of ``num_frames`` frames every ``stride``
            frames, or at ``fps``); see :mod:`videozoo.data.sampling`.
        num_views: clips drawn per video (two or more for contrastive learning), each its own
            sampler draw and augmentation; ``views_share_clip`` decodes one draw and augments it
            ``num_views`` times.
        decode_size: resize while decoding (short side, or ``(H, W)``) before ``transform``.
    """

    def __init__(
        self,
        samples: Sequence[VideoSample],
        *,
        classes: Sequence[str] = (),
        transform: Callable | None = None,
        num_views: int = 1,
        sampler: ClipSampler | None = None,
        num_frames: int = 16,
        stride: int = 1,
        fps: float | None = None,
        views_share_clip: bool = False,
        decode_size: int | tuple[int, int] | None = None,
        flow_root: str | os.PathLike | None = None,
        flow_transform: Callable | None = None,
        audio_sample_rate: int | None = None,
        audio_duration: float | None = None,
        audio_transform: Callable | None = None,
        skip_bad: bool = True,
        max_retries: int = 10,
        backend: str = "auto",
        cache_readers: bool = True,
    ) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.samples, self.classes = list(samples), list(classes)
        self.transform, self.num_views, self.views_share_clip = transform, num_views, views_share_clip
        self.sampler = sampler or RandomClipSampler(num_frames=num_frames, stride=stride, fps=fps)
        self.decode_size, self.backend, self.cache_readers = decode_size, backend, cache_readers
        self.flow_root = Path(flow_root) if flow_root is not None else None
        self.flow_transform = flow_transform
        self.audio_sample_rate, self.audio_duration = audio_sample_rate, audio_duration
        self.audio_transform = audio_transform
        self.skip_bad, self.max_retries = skip_bad, max_retries
        self._failures = FailureCounter()
        self.failed_paths: dict[str, str] = {}  # this process's failures: path -> cause
        self.padded_paths: dict[str, str] = {}  # this process's mostly padded videos: path -> note

    # -- bookkeeping ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_failures(self) -> int:
        """Videos that failed to decode and were replaced, counted over all DataLoader workers."""
        return self._failures.value

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} videos, {self.num_classes} classes, sampler={self.sampler})"

    # -- loading -------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))  # torch RNG: seeded per worker
        tried = index
        for attempt in range(self.max_retries + 1):
            try:
                return self.load(tried, rng)
            except VideoDecodeError as e:
                if not self.skip_bad:
                    raise
                count = self._failures.increment()
                path = self.samples[tried].path
                self.failed_paths[path] = str(e.cause or e)
                log.warning("skipping unreadable video %s (%s); %d failures so far", path, e.cause or e, count)
                if attempt == self.max_retries:
                    raise RuntimeError(
                        f"{self.max_retries + 1} videos in a row failed to decode (last: {e}); "
                        "check the dataset with `videozoo scan`"
                    ) from e
                tried = self._replacement(rng)
        raise AssertionError("unreachable")

    def _replacement(self, rng: np.random.Generator) -> int:
        for _ in range(100):
            i = int(rng.integers(len(self)))
            if self.samples[i].path not in self.failed_paths:
                return i
        return int(rng.integers(len(self)))

    def load(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """One sample without the bad-video replacement (raises :class:`VideoDecodeError`)."""
        rng = rng if rng is not None else np.random.default_rng()
        sample = self.samples[index]
        with as_decode_error(sample.path):
            reader = open_video(sample.path, size=self.decode_size, backend=self.backend, cache=self.cache_readers)
        draws = 1 if self.views_share_clip else self.num_views
        try:
            indices = np.concatenate([self.sampler(len(reader), reader.fps, rng) for _ in range(draws)])  # (N, T)
        except ValueError as e:  # pad="error" on a short video, resampling without a frame rate
            raise VideoDecodeError(sample.path, f"clip sampling: {e}") from e
        self._note_padding(sample.path, len(reader), reader.fps)
        try:
            with as_decode_error(sample.path):  # e.g. indices past the end of a file shorter than it claims
                frames = reader.get_frames(indices.reshape(-1))  # (N*T, C, H, W)
        except VideoDecodeError:
            if self.cache_readers:
                forget_reader(reader)
            raise
        clips = rearrange(frames, "(n t) c h w -> n t c h w", n=len(indices))
        if self.views_share_clip and self.num_views > 1:
            repeat = [i for i in range(len(indices)) for _ in range(self.num_views)]
            clips, indices = clips[repeat], indices[repeat]
        out: dict[str, Any] = {
            "label": sample.label,
            "index": index,
            "source_id": sample.source_id,
            "path": sample.path,
        }
        flows = self._flow(sample, indices) if self.flow_root is not None else None
        videos, flow_out = [], []
        for n, clip in enumerate(clips):
            if flows is not None and self.flow_transform is None and self.transform is not None:
                rgb, flow = self.transform(clip, flows[n])
                videos.append(rgb)
                flow_out.append(flow)
                continue
            videos.append(self.transform(clip) if self.transform else rearrange(clip, "t c h w -> c t h w"))
            if flows is not None:
                f = flows[n]
                flow_out.append(self.flow_transform(f) if self.flow_transform else rearrange(f, "t c h w -> c t h w"))
        out["video"] = _stack(videos)
        out["frame_indices"] = _stack([torch.from_numpy(i) for i in indices])
        if flows is not None:
            out["flow"] = _stack(flow_out)
        if self.audio_sample_rate:
            out["audio"] = _stack([self._audio(sample, i, reader.fps) for i in indices])
        return out

    def _note_padding(self, path: str, num_video_frames: int, fps: float) -> None:
        """Note ``path`` in ``padded_paths`` when its clips are mostly padding (samplers without the check: never)."""
        if path in self.padded_paths or not hasattr(self.sampler, "short_clip_note"):
            return
        note = self.sampler.short_clip_note(num_video_frames, fps)
        if note:
            self.padded_paths[path] = note
            log.info("short video %s: %s", path, note)

    def _flow(self, sample: VideoSample, indices: np.ndarray) -> list[torch.Tensor]:
        from videozoo.data.flow import read_flow_clip  # the store videozoo.data.flow writes

        folder = self.flow_root / sample.key
        try:
            return [read_flow_clip(folder, clip.tolist()) for clip in indices]
        except Exception as e:  # no finished flow folder, a missing or broken JPEG
            raise VideoDecodeError(sample.path, f"flow in {folder}: {e}") from e

    def _audio(self, sample: VideoSample, clip: np.ndarray, fps: float) -> torch.Tensor:
        from videozoo.data.audio import load_audio_segment

        start_s = float(clip[0]) / fps
        duration = self.audio_duration or self.sampler.span(fps) / fps
        try:
            wave = load_audio_segment(sample.path, start_s, duration, self.audio_sample_rate)
        except VideoDecodeError:
            raise
        except Exception as e:  # a window past the end of a short audio track, a broken audio stream
            raise VideoDecodeError(sample.path, f"audio: {e}") from e
        return self.audio_transform(wave) if self.audio_transform else wave


def _stack(items: list[torch.Tensor]) -> torch.Tensor:
    return items[0] if len(items) == 1 else torch.stack(items)
