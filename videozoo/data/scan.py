"""Check a dataset before training: unreadable videos, videos shorter than a clip, videos without audio.

``scan_dataset`` opens every video the way training will (probe, then decord or PyAV), decodes its
first, middle and last frames, and reports. ``videozoo scan DATASET`` prints :meth:`ScanReport.summary`.
A path that does not exist, or a folder or list holding no videos, is an error, not an empty "OK".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from videozoo.data.decode import VIDEO_EXTENSIONS, VideoDecodeError, VideoReader, as_decode_error, is_video_file
from videozoo.data.sampling import clip_span

PROBLEMS = ("unreadable", "short", "no_audio")


@dataclass
class ScanEntry:
    """What the scan found for one video; ``problems`` is a subset of :data:`PROBLEMS`."""

    path: str
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    duration: float = 0.0
    rotation: int = 0
    codec: str = ""
    backend: str = ""
    has_audio: bool = False


@dataclass
class ScanReport:
    """The scan of a dataset: every entry, and the settings it was checked against. JSON-serialisable."""

    source: str
    clip_frames: int
    stride: int
    min_frames: int  # native frames one clip needs
    need_audio: bool
    entries: list[ScanEntry]

    def with_problem(self, problem: str) -> list[ScanEntry]:
        return [e for e in self.entries if problem in e.problems]

    @property
    def unreadable(self) -> list[ScanEntry]:
        return self.with_problem("unreadable")

    @property
    def short(self) -> list[ScanEntry]:
        return self.with_problem("short")

    @property
    def no_audio(self) -> list[ScanEntry]:
        return self.with_problem("no_audio")

    @property
    def ok(self) -> bool:
        """Some videos, none unreadable, none too short, and (with ``need_audio``) none without audio."""
        return bool(self.entries) and not (self.unreadable or self.short or (self.need_audio and self.no_audio))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self, max_listed: int = 20) -> str:
        """Counts, then the paths (up to ``max_listed`` per problem) with the cause."""
        n = len(self.entries)
        readable = [e for e in self.entries if "unreadable" not in e.problems]
        hours = sum(e.duration for e in readable) / 3600
        lines = [
            f"scanned {n} videos in {self.source} ({hours:.2f} h readable); a clip is {self.clip_frames} frames "
            f"at stride {self.stride} = {self.min_frames} frames",
            f"  unreadable          : {len(self.unreadable)}",
            f"  shorter than a clip : {len(self.short)}",
            f"  without audio       : {len(self.no_audio)}" + ("" if self.need_audio else " (audio not required)"),
        ]
        backends = {}
        for e in readable:
            backends[e.backend] = backends.get(e.backend, 0) + 1
        if backends:
            lines.append("  decoded with        : " + ", ".join(f"{k} {v}" for k, v in sorted(backends.items())))
        for problem, title in (
            ("unreadable", "unreadable"),
            ("short", "shorter than a clip"),
            ("no_audio", "without audio"),
        ):
            hits = self.with_problem(problem)
            if not hits or (problem == "no_audio" and not self.need_audio):
                continue
            lines.append(f"{title}:")
            for e in hits[:max_listed]:
                why = e.error if problem == "unreadable" else f"{e.num_frames} frames"
                lines.append(f"  {e.path}: {why}" if problem != "no_audio" else f"  {e.path}")
            if len(hits) > max_listed:
                lines.append(f"  … and {len(hits) - max_listed} more")
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def scan_video(path: str | os.PathLike, *, min_frames: int = 1, backend: str = "auto") -> ScanEntry:
    """Open ``path`` as training would and decode its first, middle and last frames.

    Any failure (not only the readers' own :class:`VideoDecodeError`) makes the video "unreadable": a scan
    reports every file and never stops at one.
    """
    entry = ScanEntry(path=os.fspath(path))
    try:
        with as_decode_error(path), VideoReader(path, backend=backend) as reader:
            n = len(reader)
            reader.get_frames([0, n // 2, n - 1])
            info = reader.info
            entry.num_frames, entry.fps, entry.backend = n, reader.fps, reader.backend
            entry.width, entry.height, entry.rotation = info.width, info.height, info.rotation
            entry.duration = info.duration or (n / reader.fps if reader.fps else 0.0)
            entry.codec, entry.has_audio = info.codec, info.has_audio
    except VideoDecodeError as e:
        entry.problems.append("unreadable")
        entry.error = str(e.cause or e)
        return entry
    if entry.num_frames < min_frames:
        entry.problems.append("short")
    if not entry.has_audio:
        entry.problems.append("no_audio")
    return entry


def _paths_of(dataset_or_root: Any) -> tuple[list[str], str]:
    if isinstance(dataset_or_root, (str, os.PathLike)):
        root = Path(dataset_or_root)
        if not root.exists():
            raise FileNotFoundError(f"nothing to scan: {root} does not exist (expected a video folder, list or file)")
        if root.is_dir():
            return sorted(str(p) for p in root.rglob("*") if p.is_file() and is_video_file(p)), str(root)
        if root.is_file() and not is_video_file(root):  # a list/CSV of videos
            from videozoo.data.datasets.annotations import read_list

            samples, _, missing = read_list(root)
            return [s.path for s in samples] + missing, str(root)
        return [str(root)], str(root)
    if hasattr(dataset_or_root, "samples"):
        return [s.path for s in dataset_or_root.samples], type(dataset_or_root).__name__
    if isinstance(dataset_or_root, Iterable):
        paths = [os.fspath(p) for p in dataset_or_root]
        return paths, f"{len(paths)} paths"
    raise TypeError(f"scan a dataset, a folder, a list file or paths, not {type(dataset_or_root).__name__}")


def scan_dataset(
    dataset_or_root: Any,
    *,
    clip_frames: int | None = None,
    stride: int | None = None,
    need_audio: bool = False,
    workers: int | None = None,
    progress: bool = True,
    backend: str = "auto",
) -> ScanReport:
    """Scan a :class:`VideoDataset`, a folder (every video below it), a list file or a list of paths.

    Raises ``FileNotFoundError`` for a path that does not exist and ``ValueError`` when there is no video
    to scan (an empty folder, an empty list).

    Args:
        clip_frames, stride: the clip a video must hold (default: the dataset's sampler, else 16 and 1).
        need_audio: count videos without an audio stream as a problem (audio-visual training).
        workers: decoding threads (default: up to 8, one per core).
        progress: a tqdm bar.
    """
    paths, source = _paths_of(dataset_or_root)
    if not paths:
        raise ValueError(f"no videos to scan in {source} (video files end in {', '.join(VIDEO_EXTENSIONS)})")
    sampler = getattr(dataset_or_root, "sampler", None)
    clip_frames = clip_frames or getattr(sampler, "num_frames", 16)
    stride = stride or getattr(sampler, "stride", 1)
    min_frames = clip_span(clip_frames, stride=stride)
    workers = workers or min(8, os.cpu_count() or 1)

    def one(path: str) -> ScanEntry:
        return scan_video(path, min_frames=min_frames, backend=backend)

    bar = tqdm(total=len(paths), desc="scan", unit="video", disable=not progress)
    entries: list[ScanEntry] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for entry in pool.map(one, paths):
            entries.append(entry)
            bar.update()
    bar.close()
    return ScanReport(
        source=source,
        clip_frames=clip_frames,
        stride=stride,
        min_frames=min_frames,
        need_audio=need_audio,
        entries=entries,
    )
