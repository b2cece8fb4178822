"""Clip sampling: pure index arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from videozoo.data.sampling import (
    RandomClipSampler,
    SlidingWindowSampler,
    UniformClipSampler,
    clip_coverage,
    clip_indices,
    clip_offsets,
    clip_span,
    pad_indices,
    random_clip,
    short_clip_note,
    sliding_windows,
    uniform_clips,
)


def test_stride_offsets_and_span():
    assert clip_offsets(4, stride=2).tolist() == [0, 2, 4, 6]
    assert clip_span(16, stride=2) == 31
    assert clip_indices(100, start=10, num_frames=3, stride=5).tolist() == [10, 15, 20]


def test_fps_resampling_takes_the_nearest_native_frame():
    assert clip_offsets(5, fps=15, native_fps=30).tolist() == [0, 2, 4, 6, 8]  # halve the rate
    assert clip_offsets(4, fps=30, native_fps=30).tolist() == [0, 1, 2, 3]
    assert clip_offsets(7, fps=30, native_fps=25).tolist() == [0, 1, 2, 3, 3, 4, 5]  # 25 -> 30: repeats (2.5 -> 3)
    assert clip_offsets(3, stride=2, fps=10, native_fps=30).tolist() == [0, 6, 12]  # stride at the target rate
    assert clip_span(60, fps=30, native_fps=29.97) == 60  # STiCA: 2 s at 30 fps from NTSC video
    with pytest.raises(ValueError, match="native fps"):
        clip_offsets(4, fps=30, native_fps=0)


def test_padding_rules():
    idx = np.arange(8, 14)  # a 10-frame video
    assert pad_indices(idx, 10, "loop").tolist() == [8, 9, 0, 1, 2, 3]
    assert pad_indices(idx, 10, "repeat_last").tolist() == [8, 9, 9, 9, 9, 9]
    with pytest.raises(ValueError, match="has 10 frames"):
        pad_indices(idx, 10, "error")
    with pytest.raises(ValueError, match="pad must be"):
        pad_indices(idx, 10, "mirror")
    assert clip_indices(5, num_frames=8).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_random_clip_stays_inside_and_covers_every_start():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(500):
        clip = random_clip(40, num_frames=8, stride=2, rng=rng)
        assert clip.max() < 40 and (np.diff(clip) == 2).all()
        starts.add(int(clip[0]))
    assert starts == set(range(40 - 15 + 1))
    assert random_clip(5, num_frames=8, rng=rng).tolist() == [0, 1, 2, 3, 4, 0, 1, 2]  # too short: start 0, pad


def test_uniform_clips_are_centred_in_equal_segments():
    clips = uniform_clips(100, num_clips=4, num_frames=10)
    assert clips.shape == (4, 10)
    assert clips[:, 0].tolist() == [11, 34, 56, 79]  # 91 possible starts in 4 segments, each clip at a centre
    assert uniform_clips(100, num_clips=1, num_frames=10)[0, 0] == 45  # one clip = the centre clip


def test_sliding_windows_coclr():
    windows = sliding_windows(100, num_frames=32, step=15)
    assert windows.shape == (5, 32) and windows[:, 0].tolist() == [0, 15, 30, 45, 60]
    assert windows.max() < 100
    short = sliding_windows(20, num_frames=32, step=15)
    assert short.shape == (1, 32) and short[0, :22].tolist() == [*range(20), 0, 1]


def test_samplers_return_n_by_t():
    rng = np.random.default_rng(0)
    assert RandomClipSampler(num_frames=8, stride=2)(50, 25.0, rng).shape == (1, 8)
    assert UniformClipSampler(num_clips=3, num_frames=8)(50, 25.0, rng).shape == (3, 8)
    assert SlidingWindowSampler()(100, 25.0, rng).shape == (5, 32)
    assert RandomClipSampler(num_frames=60, fps=30).span(60.0) == 119


def test_short_videos_are_noted_below_half_a_clip():
    """Issue #17: a 3-frame video looped to an 8-frame clip was used without a word."""
    assert clip_coverage(3, num_frames=8) == 3 / 8 and clip_coverage(100, num_frames=8) == 1.0
    assert clip_coverage(10, num_frames=16, stride=2) == 5 / 16  # frames 0, 2, ..., 8 of 0..30
    assert short_clip_note(3, num_frames=8) == "3 frames supply 3 of the 8 frames a clip needs (the rest: loop padding)"
    assert short_clip_note(4, num_frames=8) is None  # half a clip: padded, but not mostly
    assert short_clip_note(7, num_frames=8) is None and short_clip_note(100, num_frames=8) is None
    repeat = RandomClipSampler(num_frames=8, pad="repeat_last")
    assert repeat.short_clip_note(3).endswith("(the rest: repeat_last padding)")
    assert RandomClipSampler(num_frames=60, fps=30).short_clip_note(50, 60.0)  # 60 frames at 30 fps span 119 at 60
