"""Helpers for the data tests: tiny generated videos whose frames say their own index, and dataset trees.

Frame ``i`` of a generated video is one flat colour that encodes ``i`` (:func:`frame_index`), so a test can
tell which frame a decoder returned, through lossy compression. A small white square marks the top-left
corner (rotation tests).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

STEP = 15  # colour step between consecutive frames: survives mpeg4 quantisation (error ~2)


def frame_colour(i: int) -> tuple[int, int, int]:
    return 8 + (i % 16) * STEP, 8 + (i // 16) * STEP, 128


def frame_index(frame: torch.Tensor) -> int:
    """The index a generated frame encodes; ``frame`` is uint8 (C, H, W), read in the centre, away from the marker."""
    h, w = frame.shape[-2:]
    r, g = (frame[:2, 3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8].float().mean(dim=(1, 2)) - 8) / STEP
    return round(float(g)) * 16 + round(float(r))


def write_video(
    path: str | Path,
    *,
    num_frames: int = 12,
    size: tuple[int, int] = (48, 64),
    fps: int = 10,
    codec: str = "mpeg4",
    gop: int = 4,
    rotation: int = 0,
    audio: bool = False,
) -> Path:
    """Write a tiny video (``size`` = (H, W)) with :func:`frame_colour` frames; ``rotation`` sets a display matrix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options={"preset": "12"} if codec == "libsvtav1" else {})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec != "libsvtav1":
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        astream = container.add_stream("aac", rate=16000) if audio else None
        for i in range(num_frames):
            image = np.empty((h, w, 3), np.uint8)
            image[:] = frame_colour(i)
            image[: h // 4, : w // 4] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if astream is not None:
            t = np.arange(int(16000 * num_frames / fps)) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                chunk = wave[start : start + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
                af.sample_rate, af.pts = 16000, start
                container.mux(astream.encode(af))
            container.mux(astream.encode())
    return path


def write_two_stream_video(path: str | Path, *, num_frames: int = 50, other_frames: int = 60) -> Path:
    """Issue #17's file in miniature: an MP4 whose second video stream is the one decord reads.

    Stream 0 (default disposition): 64x48 at 25 fps, ``num_frames`` :func:`frame_colour` frames (2 s). Stream 1:
    80x60 noise at 29.97 fps, ``other_frames`` frames, a far higher bitrate. FFmpeg (PyAV) ranks stream 0 best by
    its disposition; decord 0.6's bundled FFmpeg ranks by bitrate and reads stream 1: 60 frames at 29.97 fps
    against 50 decoding at 25 fps in the stream the probe read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        main = container.add_stream("mpeg4", rate=25)
        main.width, main.height, main.pix_fmt = 64, 48, "yuv420p"
        other = container.add_stream("mpeg4", rate=Fraction(30000, 1001))
        other.width, other.height, other.pix_fmt = 80, 60, "yuv420p"
        for stream, count in ((main, num_frames), (other, other_frames)):
            for i in range(count):
                if stream is main:
                    image = np.empty((48, 64, 3), np.uint8)
                    image[:] = frame_colour(i)
                else:
                    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return path


def write_dead_first_stream_video(path: str | Path, *, num_frames: int = 20) -> Path:
    """An MP4 whose first, default video stream (H.264) holds only garbage packets; stream 1 (MPEG-4, 64x48,
    10 fps, :func:`frame_colour` frames) is the one that decodes. FFmpeg ranks the dead stream best."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        dead = container.add_stream("h264", rate=10)
        good = container.add_stream("mpeg4", rate=10)
        for stream in (dead, good):
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(num_frames):
            image = np.empty((48, 64, 3), np.uint8)
            image[:] = frame_colour(i)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(good.encode(frame))
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            packet.stream, packet.time_base, packet.pts, packet.dts = dead, Fraction(1, 10), i, i
            container.mux(packet)
        container.mux(good.encode())
    return path


def write_not_a_video(path: str | Path) -> Path:
    """A text file with a video extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file, not a video\n" * 50)
    return path


def truncate(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def sequential_frames(path: str | Path) -> list[torch.Tensor]:
    """Every frame in display order by a plain PyAV sequential decode: uint8 (C, H, W) each."""
    with av.open(str(path)) as container:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)]


# -- dataset trees --------------------------------------------------------------------------------------------
def make_ucf101(
    root: Path,
    classes: Sequence[str] = ("ApplyEyeMakeup", "Basketball"),
    groups: int = 2,
    clips: int = 2,
    num_frames: int = 12,
) -> tuple[Path, Path]:
    """``root/videos/<Class>/v_<Class>_gXX_cYY.avi`` and ``root/ucfTrainTestlist``; group 1 is the test split."""
    videos, ann = root / "videos", root / "ucfTrainTestlist"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    train, test = [], []
    for label, cls in enumerate(classes):
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{cls}/v_{cls}_g{g:02d}_c{c:02d}.avi"
                write_video(videos / rel, num_frames=num_frames)
                (test.append(rel) if g == 1 else train.append(f"{rel} {label + 1}"))
    for split in (1, 2, 3):
        (ann / f"trainlist0{split}.txt").write_text("\n".join(train) + "\n")
        (ann / f"testlist0{split}.txt").write_text("\n".join(test) + "\n")
    return videos, ann


def make_hmdb51(root: Path, classes: Sequence[str] = ("brush_hair", "cartwheel"), num_frames: int = 12):
    """``root/videos/<class>/<movie>_<class>_*.avi`` and ``root/splits``: per class 2 train, 1 test, 1 unused."""
    videos, ann = root / "videos", root / "splits"
    ann.mkdir(parents=True, exist_ok=True)
    for cls in classes:
        lines = []
        for k, tag in enumerate((1, 1, 2, 0)):
            name = f"Movie{k // 2}_{cls}_f_cm_np1_fr_med_{k}.avi"
            write_video(videos / cls / name, num_frames=num_frames)
            lines.append(f"{name} {tag} ")
        for split in (1, 2, 3):
            (ann / f"{cls}_test_split{split}.txt").write_text("\n".join(lines) + "\n")
    return videos, ann


def make_kinetics(root: Path, num_frames: int = 12) -> tuple[Path, Path]:
    """Three clips of two classes (one in a label folder with a space, one directly under root) and one missing."""
    videos = root / "videos"
    rows = [
        ("arm wrestling", "abc", 0, 10),
        ("arm wrestling", "def", 5, 15),
        ("zumba", "ghi", 20, 30),
        ("zumba", "missing", 0, 10),
    ]
    write_video(videos / "arm wrestling" / "abc_000000_000010.mp4", num_frames=num_frames)
    write_video(videos / "arm_wrestling" / "def_000005_000015.mp4", num_frames=num_frames)
    write_video(videos / "ghi_000020_000030.mp4", num_frames=num_frames)
    csv_path = root / "train.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for label, yid, t0, t1 in rows:
            writer.writerow([label, yid, t0, t1, "train"])
    return videos, csv_path
