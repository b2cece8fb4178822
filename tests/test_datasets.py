"""Datasets: official annotation formats, multi-view output, flow and audio alignment, bad-video replacement."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.data_fixtures import frame_index, make_hmdb51, make_kinetics, make_ucf101, write_not_a_video, write_video
from videozoo.data import (
    HMDB51,
    UCF101,
    Kinetics400,
    PairedTransform,
    RandomClipSampler,
    UniformClipSampler,
    VideoDecodeError,
    VideoEval,
    VideoFolder,
    VideoList,
    VideoReader,
    VideoTrain,
)

EVAL = VideoEval(resize=32, crop_size=32, mean=0.5, std=0.25)


def test_ucf101_official_lists(tmp_path):
    videos, ann = make_ucf101(tmp_path)
    train = UCF101(videos, ann, split=1, train=True, num_frames=4)
    test = UCF101(videos, ann, split=1, train=False, num_frames=4)
    assert (len(train), len(test)) == (4, 4) and train.classes == ["ApplyEyeMakeup", "Basketball"]
    assert sorted(train.labels) == [0, 0, 1, 1] and sorted(test.labels) == [0, 0, 1, 1]
    by_name = {s.path.rsplit("/", 1)[1]: s for s in train.samples}
    same_group = by_name["v_Basketball_g02_c01.avi"], by_name["v_Basketball_g02_c02.avi"]
    assert same_group[0].source_id == same_group[1].source_id  # CoCLR's same-video positives
    assert by_name["v_ApplyEyeMakeup_g02_c01.avi"].source_id != same_group[0].source_id
    item = train[0]
    assert item["video"].shape == (3, 4, 48, 64) and item["video"].dtype == torch.uint8  # no transform: (C,T,H,W)
    assert set(item) >= {"video", "label", "index", "source_id", "path", "frame_indices"}
    with pytest.raises(ValueError, match="splits 1, 2, 3"):
        UCF101(videos, ann, split=4)


def test_ucf101_converted_to_mp4_and_default_annotations(tmp_path):
    videos, ann = make_ucf101(tmp_path, classes=("Archery",), groups=2, clips=1)
    for avi in videos.rglob("*.avi"):
        avi.rename(avi.with_suffix(".mp4"))  # the lists still say .avi
    (tmp_path / "videos" / "ucfTrainTestlist").symlink_to(ann)
    assert len(UCF101(videos)) == 1


def test_hmdb51_split_files(tmp_path):
    videos, ann = make_hmdb51(tmp_path)
    train, test = HMDB51(videos, ann, split=2), HMDB51(videos, ann, split=2, train=False)
    assert (len(train), len(test)) == (4, 2) and train.classes == ["brush_hair", "cartwheel"]
    assert sorted(test.labels) == [0, 1]
    assert len({s.source_id for s in train.samples}) == 1  # all four train clips were cut from "Movie0"


def test_kinetics_csv_label_folders_and_flat_files(tmp_path, caplog):
    videos, csv_path = make_kinetics(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = Kinetics400(videos, csv_path, num_frames=4)
    assert len(data) == 3 and data.classes == ["arm wrestling", "zumba"]
    assert sorted(data.labels) == [0, 0, 1] and data.missing == ["missing_000000_000010"]
    assert "1 of 4 listed videos not found" in caplog.text


def test_video_folder_and_list(tmp_path):
    for cls in ("b_jump", "a_run"):
        for k in range(2):
            write_video(tmp_path / "data" / cls / f"clip{k}.mp4", num_frames=8)
    folder = VideoFolder(tmp_path / "data", num_frames=4)
    assert folder.classes == ["a_run", "b_jump"] and folder.labels == [0, 0, 1, 1]
    named = tmp_path / "data" / "list.csv"
    named.write_text("path,label\na_run/clip0.mp4,run\nb_jump/clip1.mp4,jump\n")
    listed = VideoList(named)
    assert listed.classes == ["jump", "run"] and listed.labels == [1, 0]
    numbered = tmp_path / "numbered.txt"
    numbered.write_text("data/a_run/clip1.mp4 2\ndata/b_jump/clip0.mp4 0\n")
    assert VideoList(numbered).labels == [2, 0]
    with pytest.raises(FileNotFoundError, match="none of the videos"):
        VideoList(numbered, root=tmp_path / "elsewhere")


def test_multi_view_ssl_output(tmp_path):
    write_video(tmp_path / "data" / "a" / "v.avi", num_frames=40)
    train = VideoTrain(crop_size=32, scale=(0.5, 1.0))
    data = VideoFolder(tmp_path / "data", transform=train, num_views=3, num_frames=8, stride=2)
    item = data[0]
    assert item["video"].shape == (3, 3, 8, 32, 32) and item["video"].dtype == torch.float32
    assert item["frame_indices"].shape == (3, 8)
    shared = VideoFolder(tmp_path / "data", transform=train, num_views=2, num_frames=8, views_share_clip=True)[0]
    assert torch.equal(shared["frame_indices"][0], shared["frame_indices"][1])
    assert not torch.equal(shared["video"][0], shared["video"][1])  # one clip, two augmentations


def test_multi_clip_eval_and_frames_match_indices(tmp_path):
    write_video(tmp_path / "data" / "a" / "v.avi", num_frames=30)
    data = VideoFolder(tmp_path / "data", sampler=UniformClipSampler(num_clips=3, num_frames=4))
    item = data[0]
    assert item["video"].shape == (3, 3, 4, 48, 64)  # (clips, C, T, H, W) without transform
    for clip, indices in zip(item["video"], item["frame_indices"]):
        assert [frame_index(f) for f in clip.permute(1, 0, 2, 3)] == indices.tolist()
    assert VideoFolder(tmp_path / "data", transform=EVAL, decode_size=32, num_frames=4)[0]["video"].shape == (
        3,
        4,
        32,
        32,
    )


def test_bad_videos_are_logged_counted_and_replaced(tmp_path, caplog):
    for k in range(3):
        write_video(tmp_path / "data" / "a" / f"good{k}.avi", num_frames=10)
    bad = write_not_a_video(tmp_path / "data" / "a" / "bad.mp4")
    data = VideoFolder(tmp_path / "data", num_frames=4)
    bad_index = [s.path for s in data.samples].index(str(bad))
    with caplog.at_level(logging.WARNING, logger="videozoo.data"):
        item = data[bad_index]
    assert item["path"] != str(bad) and item["index"] != bad_index
    assert data.num_failures == 1 and str(bad) in data.failed_paths and "bad.mp4" in caplog.text
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4"):
        VideoFolder(tmp_path / "data", num_frames=4, skip_bad=False)[bad_index]
    listing = tmp_path / "only_bad.txt"
    listing.write_text(f"{bad} 0\n")
    with pytest.raises(RuntimeError, match="3 videos in a row failed"):
        VideoList(listing, max_retries=2)[0]


def test_dataloader_with_two_workers_counts_failures_across_workers(tmp_path):
    for k in range(6):
        write_video(tmp_path / "data" / "a" / f"good{k}.avi", num_frames=10)
    for k in range(2):
        write_not_a_video(tmp_path / "data" / "b" / f"bad{k}.mp4")
    data = VideoFolder(tmp_path / "data", transform=EVAL, num_views=2, num_frames=4)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == 8
    assert batches[0]["video"].shape == (4, 2, 3, 4, 32, 32)
    assert all(label == 0 for b in batches for label in b["label"].tolist())  # every bad video was replaced
    assert data.num_failures >= 2  # each bad index failed at least once, counted in the workers


def test_flow_aligned_with_rgb_and_shared_crop(tmp_path):
    from videozoo.data.flow import extract_flow_folder

    write_video(tmp_path / "data" / "a" / "v.avi", num_frames=12)
    summary = extract_flow_folder(tmp_path / "data", tmp_path / "flow", workers=1, progress=False)
    assert not summary.failed
    paired = PairedTransform(VideoTrain(crop_size=24, scale=(0.5, 1.0)))
    data = VideoFolder(tmp_path / "data", transform=paired, flow_root=tmp_path / "flow", num_views=2, num_frames=6)
    item = data[0]
    assert item["video"].shape == (2, 3, 6, 24, 24) and item["flow"].shape == (2, 3, 6, 24, 24)
    raw = VideoFolder(tmp_path / "data", flow_root=tmp_path / "flow", num_frames=12)[0]
    assert raw["flow"].shape == (3, 12, 48, 64) and raw["flow"].dtype == torch.uint8
    no_flow = VideoFolder(tmp_path / "data", flow_root=tmp_path / "nowhere", num_frames=4, max_retries=0)
    with pytest.raises(RuntimeError, match="flow"):
        no_flow[0]


def test_audio_aligned_with_the_clip(media, tmp_path):
    listing = tmp_path / "media.txt"
    listing.write_text(f"{media['avi']},0\n{media['mkv']},1\n")
    data = VideoList(listing, num_frames=16, stride=2, audio_sample_rate=16000, decode_size=32)
    for i in range(2):
        item = data[i]
        fps = 25.0 if i == 0 else 30.0
        assert item["audio"].shape == (round(31 / fps * 16000),)  # 16 frames at stride 2 span 31 frames
        assert item["audio"].abs().max() > 0
    silent = tmp_path / "silent.txt"
    silent.write_text(f"{media['mp4']},0\n{media['avi']},1\n")
    data = VideoList(silent, num_frames=4, audio_sample_rate=16000, audio_duration=0.5)
    item = data[0]  # the MP4 has no audio: replaced by the AVI and counted
    assert item["label"] == 1 and item["audio"].shape == (8000,) and data.num_failures == 1


def test_random_clips_vary_and_follow_torch_seed(tmp_path):
    write_video(tmp_path / "data" / "a" / "v.avi", num_frames=60)
    data = VideoFolder(tmp_path / "data", num_frames=4)
    torch.manual_seed(1)
    starts = {int(data[0]["frame_indices"][0]) for _ in range(10)}
    assert len(starts) > 3
    assert np.all(np.diff(data[0]["frame_indices"].numpy()) == 1)


def test_short_videos_are_skipped_with_pad_error(tmp_path):
    write_video(tmp_path / "data" / "a" / "long.avi", num_frames=20)
    write_video(tmp_path / "data" / "a" / "short.avi", num_frames=5)
    data = VideoFolder(tmp_path / "data", sampler=RandomClipSampler(num_frames=10, pad="error"))
    short = [s.path for s in data.samples].index(str(tmp_path / "data" / "a" / "short.avi"))
    assert data[short]["path"].endswith("long.avi") and data.num_failures == 1
    assert "clip sampling" in data.failed_paths[data.samples[short].path]


def test_a_file_shorter_than_it_claims_is_replaced_not_raised(tmp_path, monkeypatch):
    """Issue #17: an IndexError (indices past the frames that decode) must not end the epoch."""
    for k in range(2):
        write_video(tmp_path / "data" / "a" / f"good{k}.avi", num_frames=10)
    liar = write_video(tmp_path / "data" / "a" / "liar.avi", num_frames=10)
    get_frames = VideoReader.get_frames

    def shorter_than_it_claims(self, indices):
        if self.path == str(liar):
            raise IndexError("frame indices 6..9 outside 0..5")
        return get_frames(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames", shorter_than_it_claims)
    data = VideoFolder(tmp_path / "data", num_frames=4)
    item = data[[s.path for s in data.samples].index(str(liar))]
    assert item["path"] != str(liar) and data.num_failures == 1
    assert "IndexError: frame indices 6..9" in data.failed_paths[str(liar)]


def test_videos_shorter_than_half_a_clip_are_noted_and_still_looped(tmp_path):
    """Issue #17: a 3-frame clip looped to 8 frames was used without a word; the frames sampled stay as they were."""
    write_video(tmp_path / "data" / "a" / "three.avi", num_frames=3)
    write_video(tmp_path / "data" / "a" / "five.avi", num_frames=5)  # 5 of 8: padded, but not mostly
    write_video(tmp_path / "data" / "a" / "long.avi", num_frames=20)
    data = VideoFolder(tmp_path / "data", num_frames=8)
    items = {s.path.rsplit("/", 1)[1]: data[i] for i, s in enumerate(data.samples)}
    assert items["three.avi"]["frame_indices"].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert [frame_index(f) for f in items["three.avi"]["video"].permute(1, 0, 2, 3)] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert list(data.padded_paths) == [str(tmp_path / "data" / "a" / "three.avi")]
    assert "3 frames supply 3 of the 8 frames" in data.padded_paths[str(tmp_path / "data" / "a" / "three.avi")]
    assert data.num_failures == 0
