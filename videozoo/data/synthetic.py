"""A synthetic action dataset written as real video files: the label is in the motion, never in the appearance.

Each video shows one or two textured shapes on a random textured background; every appearance is random, and
the class says only how the shapes move: translate left/right/up/down, rotate clockwise/counter-clockwise, zoom
in/out (and "oscillate", side to side, on request). So a model must use motion — optical flow, temporal order
(reverse "left" and it is "right") — to tell classes apart, and with ``audio=True`` a tone whose pitch follows the
motion (rising with the x position, y position, angle or scale; one band per kind of motion) carries the label
too. Tests and smoke recipes run on it on a CPU in seconds.

Layout (VideoFolder): ``root/<class>/<class>_<i:03d>_g<gg>_c<cc>.mp4``, plus ``root/labels.csv`` (``path,label``:
path relative to root, class name) and a UCF101-style split set beside them (``root`` is both the video root and
the annotation folder of ``UCF101``): ``classInd.txt`` (1-based), ``trainlist01.txt`` (``path label``),
``testlist01.txt`` (``path``). Videos come in groups of ``clips_per_group`` "clips of one source video" (same
appearance, different motion draws), named ``_gXX_cYY`` as UCF101's, so same-source positives exist; the split
keeps each group on one side (group 1 of every class is the test set, as UCF101 split 1 tests on groups 1-7).

Scenes. By default every group of every class has an appearance of its own. That keeps the label out of the
appearance, but a tiny network trained on a few hundred such videos memorises the appearances (which are all it
needs to tell videos apart) and does not generalise. With ``scenes=K`` group g of every class is filmed on scene
(g - 1) mod K: the same K backgrounds and objects, in the same poses, in every class. An
instance-discrimination objective must then tell videos apart by how they move, and held-out groups show scenes
the training groups showed too, in other classes, so a network that matches appearance retrieves the wrong class.

Colour cast. On shared scenes an *untrained* 3D CNN already retrieves by motion: query and gallery differ in
nothing else. ``colour_cast=c`` grades every video on its own (each channel scaled by ``exp(u)``, ``u`` uniform in
``[-c, c]``), drawn independently of the class: the nearest neighbour in colour is then of any class (an untrained
r3d_tiny falls from 0.88 to 0.47 R@1 at ``c=0.6``), and a network scores well only if it has learnt to look past
the colour at the motion (the CoCLR and STiCA smoke presets, which also cast their training clips on their own:
``VideoTrain(channel_gain=...)``).

Objects. ``object_size`` (radius range, fraction of the short side) and ``objects`` (fewest, most per scene) make the
motion larger: with few shared scenes and a cast, one small object per scene can leave the motion unlearnable within
a CPU budget at some seeds even from the labels (docs/benchmarks.md, "Across seeds").
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

CLASSES = ("left", "right", "up", "down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
MOTIONS = {  # class -> (kind, sign)
    "left": ("x", -1), "right": ("x", 1), "up": ("y", -1), "down": ("y", 1), "rotate_cw": ("angle", 1),
    "rotate_ccw": ("angle", -1), "zoom_in": ("scale", 1), "zoom_out": ("scale", -1), "oscillate": ("oscillate", 1),
}  # fmt: skip
PITCH_BANDS = {
    "x": (220.0, 440.0),
    "y": (500.0, 1000.0),
    "angle": (1100.0, 2200.0),
    "scale": (2400.0, 4800.0),
    "oscillate": (220.0, 440.0),
}  # Hz: the band names the kind of motion, the glide its direction


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    *,
    fps: float,
    audio: torch.Tensor | np.ndarray | None = None,
    sample_rate: int | None = None,
    codec: str = "mpeg4",
    audio_codec: str = "aac",
    bit_rate: int = 2_000_000,
) -> Path:
    """Write uint8 frames (T, C, H, W) (C = 3, or 1 for grey) as a video with PyAV, with an optional mono
    float audio track (samples,) in [-1, 1] at ``sample_rate``. H and W must be even (yuv420p)."""
    path = Path(path)
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(f"frames must be uint8 (T, C, H, W), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[-1], frames.shape[-2], "yuv420p"
        stream.bit_rate = bit_rate  # high for tiny frames: the textures must survive for flow to see them
        stream.codec_context.thread_count = 1  # one thread: identical bytes for identical input
        if audio is not None:  # every stream must exist before the first packet writes the header
            if sample_rate is None:
                raise ValueError("audio given without sample_rate")
            astream = container.add_stream(audio_codec, rate=sample_rate)
            astream.layout = "mono"
        for image in rearrange(frames, "t c h w -> t h w c").numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
        if audio is not None:
            wave = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, 0
            container.mux(astream.encode(frame))
            container.mux(astream.encode())
    return path


# -- rendering ------------------------------------------------------------------------------------------------
def _noise_texture(rng: np.random.Generator, height: int, width: int, cells: int, contrast: float) -> np.ndarray:
    """(H, W, 3) float texture in [0, 1]: a random colour plus smooth noise of ``cells`` cells per side."""
    base = rng.uniform(0.2, 0.8, 3)
    noise = rng.uniform(-1, 1, (cells, cells, 3)).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + contrast * noise, 0, 1)


def _sprite(rng: np.random.Generator, radius: int) -> np.ndarray:
    """(S, S, 4) RGBA float sprite: a textured disc, square, triangle or ellipse with an antialiased edge."""
    size = 2 * radius + 1
    mask = np.zeros((size * 4, size * 4), np.uint8)  # drawn 4x larger then shrunk: antialiased edge
    c, r = 2 * size, 4 * radius
    shape = rng.integers(4)
    if shape == 0:
        cv2.circle(mask, (c, c), r, 255, -1)
    elif shape == 1:
        side = int(r / math.sqrt(2)) + 2
        cv2.rectangle(mask, (c - side, c - side), (c + side, c + side), 255, -1)
    elif shape == 2:
        points = [(c + r * math.cos(a), c + r * math.sin(a)) for a in np.deg2rad([-90, 30, 150])]
        cv2.fillPoly(mask, [np.array(points, np.int32)], 255)
    else:
        cv2.ellipse(mask, (c, c), (r, int(r * rng.uniform(0.5, 0.8))), 0, 0, 360, 255, -1)
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    # textured inside, not flat: flow needs gradients to follow, and a flat shape moving shows only its edges
    texture = _noise_texture(rng, size, size, cells=int(rng.integers(4, 8)), contrast=rng.uniform(0.4, 0.6))
    return np.dstack([texture, alpha])


def _trajectory(
    kind: str, sign: int, pose: np.random.Generator, rng: np.random.Generator, frames: int, height: int, width: int
) -> dict:
    """Per-frame centre (x, y), angle (deg, clockwise on screen) and scale of one object, and the audio cue.

    The object's pose (its centre at mid-clip, its angle at the start) comes from ``pose``, the scene's generator:
    a static pose that differed per video would tell the videos of one scene apart without any motion. ``rng``
    draws the motion itself (speed, rate of turn, zoom factor)."""
    t = np.arange(frames, dtype=np.float64)
    mid = (frames - 1) / 2
    unit = min(height, width) / 64  # motion scales with the frame
    cx = width / 2 + pose.uniform(-0.1, 0.1) * width + np.zeros(frames)
    cy = height / 2 + pose.uniform(-0.1, 0.1) * height + np.zeros(frames)
    angle = pose.uniform(0, 360) + np.zeros(frames)
    scale = np.ones(frames)
    speed = rng.uniform(0.6, 1.0) * unit * 32 / max(frames, 2)  # px/frame: the path spans about half the frame
    if kind == "x":
        cx = cx + sign * speed * (t - mid)
    elif kind == "y":
        cy = cy + sign * speed * (t - mid)
    elif kind == "angle":
        angle = angle + sign * rng.uniform(5.0, 10.0) * 32 / max(frames, 2) * t
    elif kind == "scale":  # a camera zoom: objects grow and drift away from the zoom centre, the background too
        scale = np.exp(sign * math.log(rng.uniform(2.5, 4.0)) * (t - mid) / max(frames - 1, 1))
        cx, cy = width / 2 + scale * (cx - width / 2), height / 2 + scale * (cy - height / 2)
    elif kind == "oscillate":
        cx = cx + rng.uniform(0.15, 0.25) * width * np.sin(2 * np.pi * t / rng.uniform(8, 16) + rng.uniform(0, 6.3))
    cue = {
        "x": cx / width,
        "y": cy / height,
        "angle": (angle - angle.min()) / max(np.ptp(angle), 1e-6),
        "scale": (np.log(scale) - np.log(scale).min()) / max(np.ptp(np.log(scale)), 1e-6),
        "oscillate": cx / width,
    }[kind]
    return {"cx": cx, "cy": cy, "angle": angle, "scale": scale, "cue": np.clip(cue, 0, 1)}


def render_clip(
    label: str,
    *,
    frames: int,
    size: tuple[int, int],
    appearance_seed: Sequence[int],
    motion_seed: Sequence[int],
    colour_cast: float = 0.0,
    object_size: tuple[float, float] = (0.14, 0.22),
    objects: tuple[int, int] = (1, 2),
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (T, H, W, 3) frames of one video of class ``label``, and its per-frame audio cue in [0, 1].

    The scene (background, ``objects`` = (fewest, most) objects of radius ``object_size`` = (min, max) fractions
    of the short side, their pose) comes from ``appearance_seed``, the motion (speed, rate of turn, zoom factor)
    from ``motion_seed``, and so does the colour grade: each channel is scaled by ``exp(u)``, ``u`` uniform in
    ``[-colour_cast, colour_cast]`` (0: none)."""
    if colour_cast < 0:
        raise ValueError(f"colour_cast must be >= 0 (the half-width of the log channel gains), got {colour_cast}")
    if not 0 < object_size[0] <= object_size[1] <= 0.5:
        raise ValueError(
            f"object_size must be (min, max) radii with 0 < min <= max <= 0.5 of the short side, "
            f"got {tuple(object_size)}"
        )
    if not 1 <= objects[0] <= objects[1] <= 2:
        raise ValueError(f"objects must be (fewest, most) with 1 <= fewest <= most <= 2, got {tuple(objects)}")
    kind, sign = MOTIONS[label]
    height, width = size
    look, move = np.random.default_rng(list(appearance_seed)), np.random.default_rng(list(motion_seed))
    background = _noise_texture(look, height, width, cells=int(look.integers(4, 9)), contrast=look.uniform(0.1, 0.3))
    radius = max(3, int(min(height, width) * look.uniform(*object_size)))
    sprites = [_sprite(look, radius) for _ in range(int(look.integers(objects[0], objects[1] + 1)))]
    paths = [_trajectory(kind, sign, look, move, frames, height, width) for _ in sprites]
    if len(paths) == 2:  # keep two objects apart: one on each side of the motion's axis
        offset = 0.22 * (height if kind == "x" else width)
        for path, side in zip(paths, (-1, 1)):
            path["cy" if kind in ("x", "oscillate") else "cx"] += side * offset
    video = np.empty((frames, height, width, 3), np.float32)
    for t in range(frames):
        canvas = background
        if kind == "scale":  # the zoom reaches the background (about the frame centre), so flow diverges everywhere
            zoom = cv2.getRotationMatrix2D((width / 2, height / 2), 0, paths[0]["scale"][t])
            canvas = cv2.warpAffine(
                background, zoom, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
            )
        for sprite, path in zip(sprites, paths):
            centre = (radius, radius)
            matrix = cv2.getRotationMatrix2D(centre, -path["angle"][t], path["scale"][t])  # cv2: ccw-positive
            matrix[:, 2] += (path["cx"][t] - radius, path["cy"][t] - radius)
            warped = cv2.warpAffine(
                sprite, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            alpha = warped[..., 3:]
            canvas = canvas * (1 - alpha) + warped[..., :3] * alpha
        video[t] = canvas
    if colour_cast:  # drawn after the motion: a cast leaves the motion draws of the same seed as they were
        video = np.clip(video * np.exp(move.uniform(-colour_cast, colour_cast, 3)).astype(np.float32), 0, 1)
    return (video * 255 + 0.5).astype(np.uint8), paths[0]["cue"]


def tone(cue: np.ndarray, kind: str, *, fps: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A tone whose pitch follows the per-frame ``cue`` within the band of ``kind``, one sample per 1/sample_rate."""
    low, high = PITCH_BANDS[kind]
    samples = round(len(cue) / fps * sample_rate)
    times = np.arange(samples) / sample_rate * fps  # in frames
    freq = low + (high - low) * np.interp(times, np.arange(len(cue)), cue)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate + rng.uniform(0, 2 * np.pi)
    wave = np.sin(phase) + rng.uniform(0, 0.4) * np.sin(2 * phase)  # random timbre: a 2nd harmonic
    wave = 0.3 * wave / np.abs(wave).max() + rng.normal(0, 0.005, samples)
    return wave.astype(np.float32)


def make_synthetic_dataset(
    root: str | os.PathLike,
    *,
    classes: Sequence[str] = CLASSES,
    videos_per_class: int = 8,
    frames: int = 32,
    size: tuple[int, int] = (64, 64),
    fps: float = 16,
    audio: bool = False,
    seed: int = 0,
    codec: str = "mpeg4",
    clips_per_group: int = 2,
    sample_rate: int = 16000,
    scenes: int | None = None,
    colour_cast: float = 0.0,
    object_size: tuple[float, float] = (0.14, 0.22),
    objects: tuple[int, int] = (1, 2),
    progress: bool = False,
) -> Path:
    """Write the dataset (layout and ``scenes``: module docstring; ``colour_cast``, ``object_size`` and
    ``objects``: :func:`render_clip`) and return ``root``. Same ``seed`` -> same videos."""
    unknown = [c for c in classes if c not in MOTIONS]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; known: {sorted(MOTIONS)}")
    if scenes is not None and scenes < 1:
        raise ValueError(f"scenes must be a positive number of shared scenes or None (one per group), got {scenes}")
    root = Path(root)
    rows, groups = [], []
    jobs = [(ci, label, i) for ci, label in enumerate(classes) for i in range(videos_per_class)]
    for ci, label, i in tqdm(jobs, desc="synthetic videos", disable=not progress):
        group = i // clips_per_group + 1
        look = (seed, ci, group, 0) if scenes is None else (seed, (group - 1) % scenes, 3)
        video, cue = render_clip(
            label,
            frames=frames,
            size=size,
            appearance_seed=look,
            motion_seed=(seed, ci, i, 1),
            colour_cast=colour_cast,
            object_size=object_size,
            objects=objects,
        )
        wave = None
        if audio:
            wave = tone(
                cue, MOTIONS[label][0], fps=fps, sample_rate=sample_rate, rng=np.random.default_rng([seed, ci, i, 2])
            )
        rel = f"{label}/{label}_{i:03d}_g{group:02d}_c{i % clips_per_group + 1:02d}.mp4"
        write_video(
            root / rel,
            rearrange(torch.from_numpy(video), "t h w c -> t c h w"),
            fps=fps,
            audio=wave,
            sample_rate=sample_rate if audio else None,
            codec=codec,
        )
        rows.append((rel, label))
        groups.append((rel, group, ci + 1))
    _write_annotations(root, classes, rows, groups)
    return root


def _write_annotations(root: Path, classes: Sequence[str], rows: list, groups: list) -> None:
    # files, not folders, beside the class folders: a folder here would read as one more class
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    (root / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    test_groups = {1}
    (root / "trainlist01.txt").write_text("".join(f"{r} {c}\n" for r, g, c in groups if g not in test_groups))
    (root / "testlist01.txt").write_text("".join(f"{r}\n" for r, g, _ in groups if g in test_groups))
