"""Optical flow: TV-L1 recovers motion, CoCLR's quantisation, the resumable store, aligned reading, RAFT shapes."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from videozoo.data.decode import read_clip
from videozoo.data.flow import (
    DONE,
    PARTIAL,
    dequantise_flow,
    extract_flow_folder,
    flow_info,
    load_raft,
    quantise_flow,
    raft_flow,
    read_flow_clip,
    tvl1_flow,
)
from videozoo.data.synthetic import write_video


def _moving_square(frames: int = 3, size: int = 40, dx: int = 2, dy: int = -1) -> torch.Tensor:
    """uint8 (T, 3, H, W): a 14 px noise-textured square moving (dx, dy) px per frame over a smooth background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    background = (60 + 40 * np.sin(xx / 7.0) + 30 * np.cos(yy / 9.0)).astype(np.float32)
    patch = cv2.GaussianBlur(rng.uniform(0, 255, (14, 14)).astype(np.float32), (3, 3), 0.8)
    out = []
    for t in range(frames):
        image = background.copy()
        top, left = 13 + dy * t, 10 + dx * t
        image[top : top + 14, left : left + 14] = patch
        out.append(np.repeat(image.clip(0, 255).astype(np.uint8)[None], 3, axis=0))
    return torch.from_numpy(np.stack(out))


def test_tvl1_recovers_translation() -> None:
    frames = _moving_square()
    flow = tvl1_flow(frames)
    assert flow.shape == (2, 2, 40, 40) and flow.dtype == torch.float32
    inside = flow[0, :, 16:24, 13:21]  # the square's interior in frame 0
    dx, dy = inside[0].median(), inside[1].median()
    assert dx == pytest.approx(2.0, abs=0.5) and dy == pytest.approx(-1.0, abs=0.5)
    assert flow[0, :, :, 32:].abs().mean() < 0.3  # the static background right of the path barely moves


def test_quantisation_exact_formula_and_round_trip() -> None:
    values = torch.tensor([-25.0, -20.0, -7.3, -0.1, 0.0, 0.07, 10.0, 19.99, 20.0, 31.0])
    flow = torch.stack([values, -values]).reshape(1, 2, 1, -1)
    q = quantise_flow(flow)
    assert q.dtype == torch.uint8 and q.shape == (1, 3, 1, 10)
    expected = torch.round((values.clamp(-20, 20) + 20) * 255 / 40).to(torch.uint8)
    assert torch.equal(q[0, 0, 0], expected)
    assert torch.equal(q[0, 1, 0], torch.round((-values.clamp(-20, 20) + 20) * 255 / 40).to(torch.uint8))
    assert (q[:, 2] == 128).all()
    assert q[0, 0, 0, 0] == 0 and q[0, 0, 0, -1] == 255 and q[0, 0, 0, 4] == 128  # clipped ends, zero -> 128
    back = dequantise_flow(q)
    assert back.shape == (1, 2, 1, 10)
    assert (back - flow.clamp(-20, 20)).abs().max() <= 20 / 255 + 1e-6  # half a quantisation step


def _make_videos(root: Path) -> list[Path]:
    frames = _moving_square(frames=4, size=32)
    return [write_video(root / rel, frames, fps=10) for rel in ("a/one.mp4", "a/two.avi", "b/sub/three.mkv")]


def test_extract_is_resumable_and_skips_finished(tmp_path: Path) -> None:
    src, dst = tmp_path / "videos", tmp_path / "flow"
    _make_videos(src)
    (src / "b" / "broken.mp4").write_text("not a video")
    summary = extract_flow_folder(src, dst, workers=1, progress=False)
    assert len(summary.done) == 3 and summary.flow_frames == 9 and not summary.skipped
    assert list(summary.failed) == [str(src / "b" / "broken.mp4")]
    assert not (dst / "b" / "broken").exists()
    folders = {name: dst / name for name in ("a/one", "a/two", "b/sub/three")}
    for folder in folders.values():
        assert sorted(p.name for p in folder.iterdir()) == [DONE, "flow_00000.jpg", "flow_00001.jpg", "flow_00002.jpg"]
        assert flow_info(folder)["frames"] == 3 and flow_info(folder)["height"] == 32
    stamps = {name: {p.name: p.stat().st_mtime_ns for p in f.iterdir()} for name, f in folders.items()}

    # an interruption: "a/two" was being written when the run died (only its .partial folder remains)
    import shutil

    shutil.rmtree(folders["a/two"])
    partial = dst / "a" / f"two{PARTIAL}"
    partial.mkdir()
    (partial / "flow_00000.jpg").write_bytes(b"half a jpeg")
    summary = extract_flow_folder(src, dst, workers=2, progress=False)  # a pool of 2 this time
    assert summary.done == [str(src / "a" / "two.avi")]
    assert sorted(summary.skipped) == sorted([str(src / "a" / "one.mp4"), str(src / "b" / "sub" / "three.mkv")])
    assert not partial.exists() and flow_info(folders["a/two"])["frames"] == 3
    for name in ("a/one", "b/sub/three"):  # finished videos were not redone
        assert {p.name: p.stat().st_mtime_ns for p in folders[name].iterdir()} == stamps[name]


def test_folder_without_done_marker_is_not_finished(tmp_path: Path) -> None:
    src, dst = tmp_path / "videos", tmp_path / "flow"
    write_video(src / "x.mp4", _moving_square(frames=3, size=32), fps=10)
    (dst / "x").mkdir(parents=True)
    (dst / "x" / "flow_00000.jpg").write_bytes(b"stale")
    with pytest.raises(FileNotFoundError, match=r"\.done"):
        read_flow_clip(dst / "x", [0])
    summary = extract_flow_folder(src, dst, workers=1, progress=False)
    assert len(summary.done) == 1 and flow_info(dst / "x")["frames"] == 2


def test_read_flow_clip_aligned_with_rgb(tmp_path: Path) -> None:
    src, dst = tmp_path / "videos", tmp_path / "flow"
    video = write_video(src / "c" / "clip.mp4", _moving_square(frames=4, size=32), fps=10)
    extract_flow_folder(src, dst, workers=1, progress=False)
    clip = read_flow_clip(dst / "c" / "clip", [1, 2, 3])  # RGB frames 1, 2, 3 of a 4-frame video
    assert clip.shape == (3, 3, 32, 32) and clip.dtype == torch.uint8
    assert torch.equal(clip[2], clip[1])  # the last frame repeats the last flow (2 -> 3)
    assert (clip[:, 2].float() - 128).abs().mean() < 2  # blue is the constant 128 (up to JPEG)
    rgb = read_clip(video, start=0, num_frames=4)
    direct = quantise_flow(tvl1_flow(rgb))  # flow i = frame i -> i + 1 of the RGB the datasets read
    assert (clip[:2, :2].float() - direct[1:3, :2].float()).abs().mean() < 3  # JPEG error only
    assert (dequantise_flow(clip)[0, 0, 16:24, 13:21].median()).item() == pytest.approx(2.0, abs=0.6)


def test_extract_with_size_resizes_like_read_clip(tmp_path: Path) -> None:
    src, dst = tmp_path / "videos", tmp_path / "flow"
    write_video(src / "wide.mp4", torch.randint(0, 255, (2, 3, 32, 48), dtype=torch.uint8), fps=10)
    extract_flow_folder(src, dst, workers=1, size=16, progress=False)
    assert read_flow_clip(dst / "wide", [0]).shape == (1, 3, 16, 24)


def test_raft_shapes_with_random_weights() -> None:
    frames = torch.randint(0, 255, (3, 3, 36, 44), dtype=torch.uint8)  # not multiples of 8: padded inside
    with pytest.warns(UserWarning, match="random weights"):
        flow = raft_flow(frames, device="cpu", small=True, num_flow_updates=1)
    assert flow.shape == (2, 2, 36, 44) and flow.dtype == torch.float32 and torch.isfinite(flow).all()


def test_raft_loads_given_state_dict(tmp_path: Path) -> None:
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    state = raft_small(weights=None).state_dict()
    torch.save(state, tmp_path / "raft.pth")
    for weights in (tmp_path / "raft.pth", state):
        model = load_raft(small=True, weights=weights)
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        assert not model.training


def test_cli_entry_point_signature() -> None:
    """The function the `videozoo flow SRC DST` command calls, with the arguments it forwards."""
    import inspect

    params = inspect.signature(extract_flow_folder).parameters
    assert list(params)[:2] == ["src", "dst"]
    assert {"method", "workers", "size", "progress"} <= set(params)
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in ("method", "workers", "size"))
    assert os.cpu_count()


def test_a_single_video_file_is_extracted_under_its_name(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", _moving_square(frames=3, size=32), fps=10)
    summary = extract_flow_folder(video, tmp_path / "flow", workers=1, progress=False)
    assert summary.done == [str(video)] and flow_info(tmp_path / "flow" / "clip")["frames"] == 2
    with pytest.raises(FileNotFoundError, match="no such video file or folder"):
        extract_flow_folder(tmp_path / "nothing.mp4", tmp_path / "flow", workers=1, progress=False)


def test_read_flow_clip_calls_no_deprecated_torchvision_decoder(tmp_path: Path, monkeypatch) -> None:
    """torchvision 0.29 deprecates its image decoders (decode_jpeg, decode_image, ...), and users saw the warning
    on every flow clip. The pinned torchvision does not warn yet, so the deprecation is simulated here."""
    import warnings

    import torchvision.io

    src, dst = tmp_path / "videos", tmp_path / "flow"
    write_video(src / "clip.mp4", _moving_square(frames=3, size=32), fps=10)
    extract_flow_folder(src, dst, workers=1, progress=False)

    def deprecated(*args, **kwargs):
        warnings.warn("torchvision's image decoders are deprecated: use torchcodec", DeprecationWarning, stacklevel=2)

    for module in (torchvision.io, torchvision.io.image):
        for name in ("decode_jpeg", "decode_image", "read_file", "read_image"):
            monkeypatch.setattr(module, name, deprecated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clip = read_flow_clip(dst / "clip", [0, 1])
    assert clip.shape == (2, 3, 32, 32) and clip.dtype == torch.uint8
    assert (clip[:, 2].float() - 128).abs().mean() < 2  # channels in R, G, B order: blue is the constant 128
