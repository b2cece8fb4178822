"""Video data: decoding, clip sampling, datasets, augmentations, audio, optical flow, synthetic clips.

Everything between a folder of videos and a batch. Stands alone: imports nothing else of videozoo.

- decoding (:mod:`~videozoo.data.decode`): :func:`read_clip`, :class:`VideoReader`, :class:`VideoDecodeError`,
  :class:`NoReadableVideoError`
- clip sampling (:mod:`~videozoo.data.sampling`): random / uniform / sliding-window clips, fps resampling, padding
- datasets (:mod:`~videozoo.data.datasets`): :class:`UCF101`, :class:`HMDB51`, :class:`Kinetics400`,
  :class:`VideoFolder`, :class:`VideoList`; :func:`scan_dataset` (:mod:`~videozoo.data.scan`)
- augmentations (:mod:`~videozoo.data.transforms`), audio (:mod:`~videozoo.data.audio`), optical flow
  (:mod:`~videozoo.data.flow`), synthetic clips (:mod:`~videozoo.data.synthetic`)
"""

from videozoo.data.audio import (
    NoAudioError,
    VolumeJitter,
    audio_spectrogram,
    has_audio,
    load_audio_segment,
    log_filterbank,
)
from videozoo.data.datasets import (
    HMDB51,
    UCF101,
    Kinetics400,
    VideoDataset,
    VideoFolder,
    VideoList,
    VideoSample,
)
from videozoo.data.decode import (
    VIDEO_EXTENSIONS,
    NoReadableVideoError,
    VideoDecodeError,
    VideoInfo,
    VideoReader,
    clear_reader_cache,
    is_video_file,
    open_video,
    probe_video,
    read_clip,
    read_frames,
)
from videozoo.data.flow import (
    dequantise_flow,
    extract_flow_folder,
    load_raft,
    quantise_flow,
    raft_flow,
    read_flow_clip,
    tvl1_flow,
)
from videozoo.data.prepare import PrepareSummary, prepare_folder, prepare_video
from videozoo.data.sampling import (
    PAD_MODES,
    ClipSampler,
    RandomClipSampler,
    SlidingWindowSampler,
    UniformClipSampler,
    clip_indices,
    clip_span,
    random_clip,
    sliding_windows,
    uniform_clips,
)
from videozoo.data.scan import ScanEntry, ScanReport, scan_dataset, scan_video
from videozoo.data.synthetic import make_synthetic_dataset, render_clip
from videozoo.data.transforms import (
    BatchedVideoAugment,
    PairedTransform,
    VideoEval,
    VideoTrain,
    eval_preset,
    preset,
)

__all__ = [
    "HMDB51",
    "PAD_MODES",
    "UCF101",
    "VIDEO_EXTENSIONS",
    "BatchedVideoAugment",
    "ClipSampler",
    "Kinetics400",
    "NoAudioError",
    "NoReadableVideoError",
    "PairedTransform",
    "PrepareSummary",
    "RandomClipSampler",
    "ScanEntry",
    "ScanReport",
    "SlidingWindowSampler",
    "UniformClipSampler",
    "VideoDataset",
    "VideoDecodeError",
    "VideoEval",
    "VideoFolder",
    "VideoInfo",
    "VideoList",
    "VideoReader",
    "VideoSample",
    "VideoTrain",
    "VolumeJitter",
    "audio_spectrogram",
    "clear_reader_cache",
    "clip_indices",
    "clip_span",
    "dequantise_flow",
    "eval_preset",
    "extract_flow_folder",
    "has_audio",
    "is_video_file",
    "load_audio_segment",
    "load_raft",
    "log_filterbank",
    "make_synthetic_dataset",
    "open_video",
    "prepare_folder",
    "prepare_video",
    "preset",
    "probe_video",
    "quantise_flow",
    "raft_flow",
    "random_clip",
    "read_clip",
    "read_flow_clip",
    "read_frames",
    "render_clip",
    "scan_dataset",
    "scan_video",
    "sliding_windows",
    "tvl1_flow",
    "uniform_clips",
]
