"""``scan_dataset``: unreadable videos, videos shorter than a clip, videos without audio."""

from __future__ import annotations

import json

import pytest

from tests.data_fixtures import truncate, write_not_a_video, write_video
from videozoo.data import VideoFolder, VideoReader, scan_dataset
from videozoo.data.scan import ScanReport


def _tree(tmp_path):
    root = tmp_path / "data"
    write_video(root / "a" / "good.avi", num_frames=40)
    write_video(root / "a" / "with_audio.mp4", num_frames=40, audio=True)
    write_video(root / "b" / "short.avi", num_frames=10)
    write_not_a_video(root / "b" / "text.mp4")
    truncate(write_video(tmp_path / "full.mp4", num_frames=40), root / "b" / "cut.mp4")
    (root / "b" / "notes.txt").write_text("not a video name: ignored")
    return root


def test_scan_a_folder(tmp_path):
    root = _tree(tmp_path)
    report = scan_dataset(root, clip_frames=16, stride=2, workers=2, progress=False)
    names = lambda entries: sorted(e.path.rsplit("/", 1)[1] for e in entries)  # noqa: E731
    assert len(report.entries) == 5 and report.min_frames == 31
    assert names(report.unreadable) == ["cut.mp4", "text.mp4"]
    assert names(report.short) == ["short.avi"]
    assert names(report.no_audio) == ["good.avi", "short.avi"]
    assert not report.ok
    cut = next(e for e in report.unreadable if e.path.endswith("cut.mp4"))
    assert cut.error  # the cause is recorded
    summary = report.summary()
    assert "unreadable          : 2" in summary and "text.mp4" in summary and "short.avi: 10 frames" in summary
    assert "without audio       : 2 (audio not required)" in summary
    assert json.loads(report.to_json())["entries"][0]["path"].endswith(".avi")


def test_scan_needs_audio_and_reads_clip_length_from_the_dataset(tmp_path):
    root = tmp_path / "data"
    write_video(root / "a" / "v.mp4", num_frames=20, audio=True)
    write_video(root / "a" / "mute.avi", num_frames=20)
    data = VideoFolder(root, num_frames=8, stride=2)
    report = scan_dataset(data, need_audio=True, progress=False)
    assert (report.clip_frames, report.stride, report.min_frames) == (8, 2, 15)
    assert not report.ok and [e.path.endswith("mute.avi") for e in report.no_audio] == [True]
    assert scan_dataset(data, progress=False).ok  # audio not required
    assert scan_dataset([root / "a" / "v.mp4"], clip_frames=30, progress=False).short


def test_scan_real_media(media):
    report = scan_dataset(list(media.values()), clip_frames=16, stride=2, progress=False)
    assert report.ok and not report.unreadable
    frames = {e.path.rsplit(".", 1)[1]: e.num_frames for e in report.entries}
    assert frames == {"mp4": 280, "avi": 164, "mkv": 310}


def test_nothing_to_scan_is_an_error_not_ok(tmp_path):
    """Issue #17: `scan nonexistent/` reported one scanned video and `scan empty/` printed OK."""
    with pytest.raises(FileNotFoundError, match=r"nonexistent does not exist"):
        scan_dataset(tmp_path / "nonexistent", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no videos here")
    with pytest.raises(ValueError, match=r"no videos to scan in .*empty"):
        scan_dataset(empty, progress=False)
    with pytest.raises(ValueError, match="no videos to scan"):
        scan_dataset([], progress=False)
    assert not ScanReport(source="x", clip_frames=16, stride=1, min_frames=16, need_audio=False, entries=[]).ok


def test_any_failure_of_a_file_makes_it_unreadable(tmp_path, monkeypatch):
    """Not only the readers' VideoDecodeError: an IndexError from a file shorter than it claims, too."""
    good = write_video(tmp_path / "good.avi", num_frames=20)
    liar = write_video(tmp_path / "liar.avi", num_frames=20)
    get_frames = VideoReader.get_frames

    def shorter_than_it_claims(self, indices):
        if self.path == str(liar):
            raise IndexError("frame indices 10..19 outside 0..9")
        return get_frames(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames", shorter_than_it_claims)
    report = scan_dataset([good, liar], clip_frames=4, progress=False)
    assert [e.path for e in report.unreadable] == [str(liar)] and "IndexError" in report.unreadable[0].error
    assert not report.ok and report.entries[0].num_frames == 20
