"""UCF101, HMDB51, Kinetics-400 from their official annotation files; VideoFolder and VideoList for custom data.

Every class takes the keywords of :class:`~videozoo.data.datasets.base.VideoDataset` (transform, num_views,
sampler, flow_root, audio_sample_rate, …). Listed videos missing on disk are logged and left out
(``dataset.missing``); a dataset with none of its videos on disk is an error (the root is wrong).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from videozoo.data.datasets import annotations as ann
from videozoo.data.datasets.base import VideoDataset

log = logging.getLogger("videozoo.data")


class _Listed(VideoDataset):
    def _init(self, found: tuple, where: str, **kwargs: Any) -> None:
        samples, classes, missing = found
        self.missing: list[str] = missing
        if not samples:
            raise FileNotFoundError(f"none of the videos listed by {where} were found ({len(missing)} listed)")
        if missing:
            log.warning(
                "%s: %d of %d listed videos not found, e.g. %s",
                where,
                len(missing),
                len(missing) + len(samples),
                missing[0],
            )
        super().__init__(samples, classes=classes, **kwargs)


def _default_annotations(root: Path, name: str, marker: str) -> Path:
    """``root/name``, ``name`` beside root, or root itself when it holds ``marker`` (e.g. classInd.txt)."""
    for candidate in (root / name, root.parent / name):
        if candidate.is_dir():
            return candidate
    if (root / marker).is_file():
        return root
    raise FileNotFoundError(f"pass annotations=: no {name}/ folder in {root} or beside it, and no {root / marker}")


class UCF101(_Listed):
    """UCF101 (101 classes). ``root``: ``<root>/<Class>/v_<Class>_gXX_cYY.avi``; ``annotations``: the
    ``ucfTrainTestlist`` folder (default: ``root/ucfTrainTestlist`` or beside root). ``source_id`` is the
    group ``gXX`` (clips of one source video)."""

    def __init__(
        self,
        root: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        *,
        split: int = 1,
        train: bool = True,
        **kwargs: Any,
    ) -> None:
        self.root, self.split, self.train = Path(root), split, train
        ann_dir = (
            Path(annotations)
            if annotations is not None
            else _default_annotations(self.root, "ucfTrainTestlist", "classInd.txt")
        )
        found = ann.read_ucf101(self.root, ann_dir, split=split, train=train)
        self._init(found, f"UCF101 split {split} {'train' if train else 'test'} list in {ann_dir}", **kwargs)


class HMDB51(_Listed):
    """HMDB51 (51 classes). ``root``: ``<root>/<class>/<video>.avi``; ``annotations``: the folder of
    ``<class>_test_split{1,2,3}.txt`` files (default: ``root/testTrainMulti_7030_splits`` or beside root)."""

    def __init__(
        self,
        root: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        *,
        split: int = 1,
        train: bool = True,
        **kwargs: Any,
    ) -> None:
        self.root, self.split, self.train = Path(root), split, train
        ann_dir = (
            Path(annotations)
            if annotations is not None
            else _default_annotations(self.root, "testTrainMulti_7030_splits", "brush_hair_test_split1.txt")
        )
        found = ann.read_hmdb51(self.root, ann_dir, split=split, train=train)
        self._init(found, f"HMDB51 split {split} {'train' if train else 'test'} files in {ann_dir}", **kwargs)


class Kinetics400(_Listed):
    """Kinetics-400 from its CSV (``label,youtube_id,time_start,time_end,split``); files
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` in ``<root>/<label>/`` or ``root``. Pass the train
    split's ``classes`` to a validation set that lacks some labels."""

    def __init__(
        self, root: str | os.PathLike, csv: str | os.PathLike, *, classes: list[str] | None = None, **kwargs: Any
    ) -> None:
        self.root = Path(root)
        self._init(ann.read_kinetics(self.root, csv, classes=classes), str(csv), **kwargs)


class VideoFolder(_Listed):
    """Custom data: ``<root>/<class>/<video>`` (any depth below the class folder), classes sorted by name."""

    def __init__(self, root: str | os.PathLike, **kwargs: Any) -> None:
        self.root = Path(root)
        self._init(ann.read_folder(self.root), str(root), **kwargs)


class VideoList(_Listed):
    """Custom data from a list: ``path,label`` (or ``path label``, or ``path``) a line, relative to ``root``
    (default: the list's folder); labels are integers or class names."""

    def __init__(
        self,
        annotations: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        classes: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.root = Path(root) if root is not None else Path(annotations).parent
        self._init(ann.read_list(annotations, root=self.root, classes=classes), str(annotations), **kwargs)
