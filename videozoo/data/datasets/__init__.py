"""Video datasets: official annotation files in, multi-view clips out, unreadable videos replaced and counted."""

from videozoo.data.datasets.annotations import (
    VideoSample,
    read_folder,
    read_hmdb51,
    read_kinetics,
    read_list,
    read_ucf101,
)
from videozoo.data.datasets.base import FailureCounter, VideoDataset
from videozoo.data.datasets.standard import HMDB51, UCF101, Kinetics400, VideoFolder, VideoList

__all__ = [
    "HMDB51",
    "UCF101",
    "FailureCounter",
    "Kinetics400",
    "VideoDataset",
    "VideoFolder",
    "VideoList",
    "VideoSample",
    "read_folder",
    "read_hmdb51",
    "read_kinetics",
    "read_list",
    "read_ucf101",
]
