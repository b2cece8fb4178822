"""Readers of the official annotation files, as distributed, into lists of :class:`VideoSample`.

Each ``read_*`` function returns ``(samples, classes, missing)``: the videos found on disk, the class
names (label ``i`` is ``classes[i]``), and the listed videos that were not found. A listed ``.avi``
that was converted to another container (``.mp4``, ``.webm``, …) is found by its name without extension.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from videozoo.data.decode import VIDEO_EXTENSIONS, is_video_file


@dataclass(frozen=True)
class VideoSample:
    """One video of a dataset. ``key`` (the path under the dataset root without extension) names its flow folder."""

    path: str
    label: int = -1
    source_id: int = -1
    key: str = ""


def _resolve(root: Path, rel: str) -> Path | None:
    """``root / rel``, or the same name with another video extension; ``None`` if neither exists."""
    path = root / rel
    if path.is_file():
        return path
    stem = path.with_suffix("")
    for ext in VIDEO_EXTENSIONS:
        if stem.with_suffix(ext).is_file():
            return stem.with_suffix(ext)
    return None


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _dense(keys: Iterable[object]) -> dict[object, int]:
    return {k: i for i, k in enumerate(sorted(set(keys), key=str))}


# -- UCF101 ----------------------------------------------------------------------------------------------
_UCF_GROUP = re.compile(r"_g(\d+)_c(\d+)")


def read_ucf101(root: str | os.PathLike, annotations: str | os.PathLike, *, split: int = 1, train: bool = True):
    """UCF101 from ``ucfTrainTestlist``: ``classInd.txt``, ``trainlist0{split}.txt`` / ``testlist0{split}.txt``.

    Labels are 0-based (``classInd.txt`` is 1-based). The source id is the group ``gXX`` within its class:
    clips of one group were cut from one long video (CoCLR's same-video positives).
    """
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 has splits 1, 2, 3; got {split}")
    root, ann = Path(root), Path(annotations)
    classes = [line.split(maxsplit=1)[1] for line in _lines(ann / "classInd.txt")]
    by_name = {c.lower(): i for i, c in enumerate(classes)}  # HandstandPushups vs HandStandPushups
    listed: list[tuple[str, int, tuple[str, int]]] = []
    for line in _lines(ann / f"{'train' if train else 'test'}list0{split}.txt"):
        rel = line.split()[0]
        folder = rel.split("/")[0].lower()
        if folder not in by_name:
            raise ValueError(f"{rel}: class folder {folder!r} is not in classInd.txt")
        match = _UCF_GROUP.search(rel)
        group = int(match.group(1)) if match else -1
        listed.append((rel, by_name[folder], (folder, group)))
    sources = _dense(g for _, _, g in listed)
    samples, missing = [], []
    for rel, label, group in listed:
        path = _resolve(root, rel)
        if path is None:
            missing.append(str(root / rel))
        else:
            samples.append(VideoSample(str(path), label, sources[group], _key(path, root)))
    return samples, classes, missing


# -- HMDB51 ----------------------------------------------------------------------------------------------
def read_hmdb51(root: str | os.PathLike, annotations: str | os.PathLike, *, split: int = 1, train: bool = True):
    """HMDB51 from ``<class>_test_split{split}.txt`` files ("video.avi 1": 1 train, 2 test, 0 unused).

    Videos live in ``<root>/<class>/``. The source id is the movie a clip was cut from (the part of
    the file name before ``_<class>_``), where the name follows that pattern.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 has splits 1, 2, 3; got {split}")
    root, ann = Path(root), Path(annotations)
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in ann.iterdir() if p.name.endswith(suffix)) if ann.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no *{suffix} files in {ann}")
    classes = [p.name[: -len(suffix)] for p in files]
    wanted = "1" if train else "2"
    listed = []
    for label, (name, file) in enumerate(zip(classes, files)):
        for line in _lines(file):
            parts = line.split()
            if len(parts) >= 2 and parts[1] == wanted:
                movie = parts[0].split(f"_{name}_")[0] if f"_{name}_" in parts[0] else parts[0]
                listed.append((f"{name}/{parts[0]}", label, movie))
    sources = _dense(m for _, _, m in listed)
    samples, missing = [], []
    for rel, label, movie in listed:
        path = _resolve(root, rel)
        if path is None:
            missing.append(str(root / rel))
        else:
            samples.append(VideoSample(str(path), label, sources[movie], _key(path, root)))
    return samples, classes, missing


# -- Kinetics --------------------------------------------------------------------------------------------
def _index_videos(root: Path, depth: int = 2) -> dict[str, Path]:
    """Video files under ``root`` (``depth`` levels), by name without extension."""
    found: dict[str, Path] = {}
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                if e.is_dir():
                    nxt.append(Path(e.path))
                elif is_video_file(e.name):
                    found.setdefault(Path(e.name).stem, Path(e.path))
        level = nxt
    return found


def read_kinetics(root: str | os.PathLike, csv_path: str | os.PathLike, *, classes: list[str] | None = None):
    """Kinetics from its CSV (``label,youtube_id,time_start,time_end,split``).

    Files are ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` under ``<root>/<label>/`` (the common
    layout; any folder name works) or directly under ``root``. Without ``classes``, the classes are
    the sorted labels of the CSV. Rows without a label (the test split) get label -1.
    """
    root = Path(root)
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "youtube_id" not in rows[0]:
        raise ValueError(f"{csv_path}: expected the columns label,youtube_id,time_start,time_end,split")
    labels = [(r.get("label") or "").strip() for r in rows]
    classes = list(classes) if classes is not None else sorted({lab for lab in labels if lab})
    by_name = {c: i for i, c in enumerate(classes)}
    index = _index_videos(root)
    sources = _dense(r["youtube_id"] for r in rows)
    samples, missing = [], []
    for row, lab in zip(rows, labels):
        name = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        path = index.get(name)
        if path is None:
            missing.append(name)
        else:
            samples.append(VideoSample(str(path), by_name.get(lab, -1), sources[row["youtube_id"]], _key(path, root)))
    return samples, classes, missing


# -- custom data -----------------------------------------------------------------------------------------
def read_folder(root: str | os.PathLike):
    """``<root>/<class>/**/<video>``: one sub-folder per class, classes in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    samples = []
    for label, name in enumerate(classes):
        for path in sorted(p for p in (root / name).rglob("*") if p.is_file() and is_video_file(p)):
            samples.append(VideoSample(str(path), label, -1, _key(path, root)))
    samples = [VideoSample(s.path, s.label, i, s.key) for i, s in enumerate(samples)]
    return samples, classes, []


def read_list(
    annotations: str | os.PathLike, *, root: str | os.PathLike | None = None, classes: list[str] | None = None
):
    """A list file, one video a line: ``path,label`` or ``path label`` or ``path`` alone.

    Paths are relative to ``root`` (default: the list's folder). Labels are integers or class names
    (then the classes are their sorted set unless ``classes`` is given); a ``path,label`` header is skipped.
    """
    ann = Path(annotations)
    root = Path(root) if root is not None else ann.parent
    rows = []
    for line in _lines(ann):
        if line.startswith("#"):
            continue
        parts = [p.strip() for p in (line.rsplit(",", 1) if "," in line else line.rsplit(None, 1))]
        if len(parts) == 2 and not is_video_file(parts[1]) and parts[1] != "":
            rows.append((parts[0], parts[1]))
        else:
            rows.append((line.strip(), ""))
    if rows and rows[0][1].lower() == "label" and not is_video_file(rows[0][0]):
        rows = rows[1:]
    labels = [lab for _, lab in rows if lab]
    numeric = all(lab.lstrip("-").isdigit() for lab in labels)
    if classes is None:
        classes = [str(i) for i in range(max(map(int, labels), default=-1) + 1)] if numeric else sorted(set(labels))
    by_name = {c: i for i, c in enumerate(classes)}
    samples, missing = [], []
    for rel, lab in rows:
        path = _resolve(root, rel) if not os.path.isabs(rel) else (Path(rel) if Path(rel).is_file() else None)
        label = (int(lab) if numeric else by_name.get(lab, -1)) if lab else -1
        if path is None:
            missing.append(rel)
            continue
        key = _key(path, root) if path.is_relative_to(root) else path.with_suffix("").name
        samples.append(VideoSample(str(path), label, len(samples), key))
    return samples, classes, missing
