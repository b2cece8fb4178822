"""The synthetic dataset: deterministic, decodable, labelled by motion (flow and sound), readable by every reader."""

from __future__ import annotations

import csv
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from videozoo.data.audio import has_audio, load_audio_segment
from videozoo.data.datasets import UCF101, VideoFolder, VideoList
from videozoo.data.decode import probe_video, read_clip
from videozoo.data.flow import tvl1_flow
from videozoo.data.synthetic import CLASSES, make_synthetic_dataset, render_clip, write_video


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    kwargs = dict(classes=("left", "zoom_in"), videos_per_class=2, frames=6, size=(32, 32))
    a = _digest(make_synthetic_dataset(tmp_path / "a", seed=3, **kwargs))
    b = _digest(make_synthetic_dataset(tmp_path / "b", seed=3, **kwargs))
    c = _digest(make_synthetic_dataset(tmp_path / "c", seed=4, **kwargs))
    assert a == b
    assert {k: v for k, v in a.items() if k.endswith(".mp4")} != {k: v for k, v in c.items() if k.endswith(".mp4")}


def test_default_dataset_is_fast_decodable_and_labelled(tmp_path: Path) -> None:
    start = time.perf_counter()
    root = make_synthetic_dataset(tmp_path / "syn")  # 8 classes x 8 videos, 32 frames of 64 x 64
    seconds = time.perf_counter() - start
    videos = sorted(root.glob("*/*.mp4"))
    assert len(videos) == 64 and seconds < 30  # about 2 s on an idle core
    info = probe_video(videos[0])
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (32, 16.0, 64, 64, "mpeg4")
    assert not info.has_audio
    assert read_clip(videos[-1], num_frames=32).shape == (32, 3, 64, 64)
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 64 and all(row["path"].split("/")[0] == row["label"] for row in rows)
    assert all(Path(row["path"]).name.startswith(row["label"] + "_") for row in rows)

    folder = VideoFolder(root)
    assert sorted(folder.classes) == sorted(CLASSES) and len(folder) == 64
    assert len(VideoList(root / "labels.csv")) == 64
    train, test = UCF101(root, root, split=1, train=True), UCF101(root, root, split=1, train=False)
    assert len(train) + len(test) == 64 and len(test) == 16  # group 1 of each class is the test set
    train_paths = {s.path for s in train.samples}
    assert not train_paths & {s.path for s in test.samples}
    sources = {}
    for s in train.samples:  # clips_per_group = 2: every source id has exactly two clips, of one class
        sources.setdefault(s.source_id, []).append(s.label)
    assert all(len(labels) == 2 and len(set(labels)) == 1 for labels in sources.values())
    classes = (root / "classInd.txt").read_text().split("\n")
    assert classes[0] == "1 left" and classes[7] == "8 zoom_out"


def _moving_mean_flow(path: Path) -> torch.Tensor:
    """Mean TV-L1 flow (x, y) over the pixels that move, between frames 3 -> 4 -> 5."""
    flow = tvl1_flow(read_clip(path, start=3, num_frames=3))
    moving = (flow.norm(dim=1, keepdim=True) > 0.3).float()
    return (flow * moving).sum(dim=(0, 2, 3)) / moving.sum().clamp_min(1)


def test_motion_direction_recoverable_from_flow(tmp_path: Path) -> None:
    root = make_synthetic_dataset(
        tmp_path / "syn",
        classes=("left", "right", "up", "down", "zoom_in", "zoom_out"),
        videos_per_class=1,
        frames=10,
        size=(48, 48),
        seed=1,
    )
    x, y = {}, {}
    for label in ("left", "right", "up", "down"):
        x[label], y[label] = _moving_mean_flow(next((root / label).glob("*.mp4"))).tolist()
    assert x["right"] > 0.2 and x["left"] < -0.2 and abs(y["right"]) < 0.2 and abs(y["left"]) < 0.2
    assert y["down"] > 0.2 and y["up"] < -0.2 and abs(x["down"]) < 0.2 and abs(x["up"]) < 0.2
    for label, sign in (("zoom_in", 1), ("zoom_out", -1)):  # a camera zoom: flow points away from / to the centre
        flow = tvl1_flow(read_clip(next((root / label).glob("*.mp4")), start=3, num_frames=2))[0]
        yy, xx = torch.meshgrid(torch.arange(48.0) - 24, torch.arange(48.0) - 24, indexing="ij")
        assert sign * (flow[0] * xx + flow[1] * yy).mean() > 1.0


def _pitch(wave: torch.Tensor, rate: int) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs()
    return float(spectrum.argmax()) * rate / len(wave)


def test_audio_pitch_follows_motion(tmp_path: Path) -> None:
    root = make_synthetic_dataset(
        tmp_path / "syn",
        classes=("left", "right", "zoom_in"),
        videos_per_class=1,
        frames=32,
        size=(32, 32),
        fps=16,
        audio=True,
        seed=2,
    )
    pitches = {}
    for label in ("left", "right", "zoom_in"):
        path = next((root / label).glob("*.mp4"))
        assert has_audio(path)
        first, last = (load_audio_segment(path, s, 0.4, 16000) for s in (0.1, 1.5))
        pitches[label] = (_pitch(first, 16000), _pitch(last, 16000))
    assert pitches["right"][1] > pitches["right"][0] + 30  # rightwards: pitch rises with x
    assert pitches["left"][1] < pitches["left"][0] - 30
    assert all(220 - 10 <= p <= 440 + 10 for p in pitches["left"] + pitches["right"])  # the x-motion band
    assert min(pitches["zoom_in"]) > 2000  # the zoom band: the kind of motion is audible too


def test_write_video_round_trip(tmp_path: Path) -> None:
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(48.0), indexing="ij")
    frames = torch.stack([torch.stack([xx * 5 + t * 4, yy * 7, 255 - xx * 5]) for t in range(5)]).clamp(0, 255)
    frames = frames.to(torch.uint8)
    path = write_video(tmp_path / "x.mp4", frames, fps=12.5)
    back = read_clip(path, num_frames=5)
    assert back.shape == frames.shape and (back.float() - frames.float()).abs().mean() < 4
    assert probe_video(path).fps == pytest.approx(12.5)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "y.mp4", frames.float(), fps=10)


def test_unknown_class_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        make_synthetic_dataset(tmp_path, classes=("jump",))


def test_shared_scenes_repeat_across_classes(tmp_path: Path) -> None:
    kwargs = dict(classes=("left", "up"), videos_per_class=4, frames=4, size=(48, 48), clips_per_group=1)
    shared = make_synthetic_dataset(tmp_path / "shared", scenes=2, **kwargs)  # groups 1 2 3 4 -> scenes 0 1 0 1
    own = make_synthetic_dataset(tmp_path / "own", **kwargs)  # default: a scene per group and class

    def alike(root: Path, a: tuple[str, int], b: tuple[str, int]) -> float:
        """Share of pixels alike in the first frames of two videos (the objects cover the rest)."""
        x, y = (read_clip(next((root / c).glob(f"*_g{g:02d}_*.mp4")), num_frames=1)[0].float() for c, g in (a, b))
        return ((x - y).abs().amax(dim=0) < 12).float().mean().item()

    assert alike(shared, ("left", 1), ("up", 1)) > 0.5  # one scene in both classes
    assert alike(shared, ("left", 1), ("up", 3)) > 0.5  # and again in a later group
    assert alike(shared, ("left", 1), ("left", 2)) < 0.2  # the other scene
    assert alike(own, ("left", 1), ("up", 1)) < 0.2
    with pytest.raises(ValueError, match="scenes"):
        make_synthetic_dataset(tmp_path / "bad", scenes=0)


def channel_gains(plain: np.ndarray, graded: np.ndarray) -> np.ndarray:
    """(3,) graded / plain per channel over unsaturated pixels; checks it is one gain per channel."""
    x, y = plain.reshape(-1, 3).astype(np.float64), graded.reshape(-1, 3).astype(np.float64)
    gains = []
    for c in range(3):
        keep = (x[:, c] > 40) & (y[:, c] < 250)
        ratio = y[keep, c] / x[keep, c]
        assert ratio.std() < 0.03 * ratio.mean()
        gains.append(np.median(ratio))
    return np.array(gains)


def test_colour_cast_grades_each_video_and_keeps_the_motion() -> None:
    kwargs = dict(frames=6, size=(48, 48), appearance_seed=(0, 0, 3))
    casts = []
    for motion_seed in ((0, 2, 5, 1), (0, 2, 6, 1)):
        plain, cue = render_clip("left", motion_seed=motion_seed, **kwargs)
        graded, graded_cue = render_clip("left", motion_seed=motion_seed, colour_cast=0.6, **kwargs)
        np.testing.assert_array_equal(cue, graded_cue)  # same motion draws: the cast is drawn after them
        gains = channel_gains(plain, graded)
        assert (gains > np.exp(-0.6) - 0.02).all() and (gains < np.exp(0.6) + 0.02).all()
        assert gains.max() - gains.min() > 0.05  # a cast, not a plain brightness change
        casts.append(gains)
    assert np.abs(casts[0] - casts[1]).max() > 0.05  # every video its own grade


def test_negative_colour_cast_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour_cast"):
        make_synthetic_dataset(tmp_path, colour_cast=-0.1)
    with pytest.raises(ValueError, match="colour_cast"):
        render_clip("left", frames=2, size=(8, 8), appearance_seed=(0,), motion_seed=(1,), colour_cast=-0.1)


def _moving_area(video: np.ndarray) -> float:
    """Fraction of pixels that change between the first and last frame (a rotating object stays in place)."""
    return float((np.abs(video[-1].astype(int) - video[0].astype(int)).max(-1) > 12).mean())


def test_object_size_and_count() -> None:
    kwargs = dict(frames=8, size=(64, 64), appearance_seed=(0, 1, 3), motion_seed=(0, 4, 0, 1))
    default, _ = render_clip("rotate_cw", **kwargs)
    explicit, _ = render_clip("rotate_cw", object_size=(0.14, 0.22), objects=(1, 2), **kwargs)
    np.testing.assert_array_equal(default, explicit)  # the defaults are the generator's original draws
    areas = [
        _moving_area(render_clip("rotate_cw", object_size=(r, r), objects=(1, 1), **kwargs)[0]) for r in (0.1, 0.2, 0.3)
    ]
    assert areas[0] < areas[1] < areas[2]
    assert 2.5 < areas[2] / areas[0] < 14  # an area: about (0.3 / 0.1)^2 = 9 for a disc
    one, two = (
        _moving_area(render_clip("rotate_cw", object_size=(0.15, 0.15), objects=(n, n), **kwargs)[0]) for n in (1, 2)
    )
    assert 1.4 < two / one < 2.8  # a second object of the same size, beside the first
    with pytest.raises(ValueError, match="object_size"):
        render_clip("left", frames=2, size=(8, 8), appearance_seed=(0,), motion_seed=(1,), object_size=(0.3, 0.2))
    with pytest.raises(ValueError, match="objects"):
        render_clip("left", frames=2, size=(8, 8), appearance_seed=(0,), motion_seed=(1,), objects=(1, 3))
