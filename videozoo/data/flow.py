"""Optical flow for two-stream training (CoCLR, Han et al., NeurIPS 2020): extraction, storage, reading.

TV-L1 (Zach, Pock, Bischof, "A duality based approach for realtime TV-L1 optical flow", DAGM 2007) with OpenCV's
default parameters on consecutive grey frames, as CoCLR; RAFT (Teed & Deng, ECCV 2020) from torchvision as the
fast GPU option. CoCLR's storage: each flow field clipped to ±20 px, quantised to uint8 = round((f + 20) * 255 / 40)
and saved as a 3-channel JPEG (R = x, G = y, B = 128).

Store layout (read by the datasets): ``<dst>/<video path relative to src, no extension>/flow_%05d.jpg`` (for a
single video file ``src``: ``<dst>/<its name, no extension>/``); file i holds the flow from frame i to frame i + 1
(a video of N frames has N - 1 files), at the video's stored resolution or with its short side resized to ``size``
exactly as ``read_clip(size=...)`` resizes RGB. A folder is complete only when it holds ``.done`` (JSON: frames,
height, width, method): frames are written into ``<name>.partial`` and the folder is renamed into place after
``.done``, so an interrupted run leaves nothing that looks finished, and a rerun skips every finished video.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from videozoo.data.decode import VIDEO_EXTENSIONS, is_video_file, open_video

FLOW_BOUND = 20.0  # px; CoCLR clips flow to ±20 before quantising
DONE = ".done"
PARTIAL = ".partial"
_CHUNK = 64  # frames decoded at a time: bounded memory for long videos


# -- flow fields ----------------------------------------------------------------------------------------------
def _grey(frames: torch.Tensor) -> np.ndarray:
    """uint8 (T, C, H, W) -> (T, H, W) grey numpy, ITU-R 601 like cv2.COLOR_RGB2GRAY."""
    array = rearrange(frames, "t c h w -> t h w c").cpu().numpy()
    if array.shape[-1] == 1:
        return np.ascontiguousarray(array[..., 0])
    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in array])


def tvl1_flow(frames: torch.Tensor, *, tvl1: cv2.DenseOpticalFlow | None = None) -> torch.Tensor:
    """TV-L1 flow between consecutive frames: uint8 (T, C, H, W) RGB or grey -> float (T - 1, 2, H, W) in pixels.

    Channel 0 is x (right positive), 1 is y (down positive). OpenCV's ``DualTVL1OpticalFlow_create()`` defaults,
    as CoCLR. Needs opencv-contrib (``cv2.optflow``).
    """
    if frames.shape[0] < 2:
        raise ValueError(f"flow needs at least 2 frames, got {frames.shape[0]}")
    tvl1 = tvl1 or cv2.optflow.DualTVL1OpticalFlow_create()
    grey = _grey(frames)
    flows = [tvl1.calc(grey[i], grey[i + 1], None) for i in range(len(grey) - 1)]  # each (H, W, 2)
    return torch.from_numpy(rearrange(np.stack(flows), "t h w c -> t c h w").copy())


def quantise_flow(flow: torch.Tensor, bound: float = FLOW_BOUND) -> torch.Tensor:
    """float (T, 2, H, W) px -> uint8 (T, 3, H, W) = round((clip(f, ±bound) + bound) * 255 / (2 bound)), B = 128."""
    q = torch.round((flow.clamp(-bound, bound) + bound) * (255.0 / (2 * bound))).to(torch.uint8)
    third = torch.full_like(q[:, :1], 128)
    return torch.cat([q, third], dim=1)


def dequantise_flow(flow: torch.Tensor, bound: float = FLOW_BOUND) -> torch.Tensor:
    """uint8 (T, 2 or 3, H, W) -> float (T, 2, H, W) px; the inverse of :func:`quantise_flow` up to 40/255 px."""
    return flow[:, :2].float() * (2 * bound / 255.0) - bound


def load_raft(
    *, small: bool = True, weights: str | os.PathLike | dict | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """torchvision's RAFT (small or large), in eval mode on ``device``.

    Pretrained weights cannot be downloaded from here: pass ``weights`` (a path to a state dict saved with
    ``torch.save(model.state_dict())`` — e.g. ``Raft_Small_Weights.C_T_V2`` fetched where there is network — or the
    dict itself). Without them the network is randomly initialised and its output is NOT optical flow: fine for
    shape tests and timing, useless for training.
    """
    from torchvision.models.optical_flow import raft_large, raft_small

    model = (raft_small if small else raft_large)(weights=None, progress=False)
    if weights is None:
        warnings.warn("RAFT has random weights (none given): its output is not optical flow", stacklevel=2)
    else:
        state = weights if isinstance(weights, dict) else torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval().to(device)


@torch.inference_mode()
def raft_flow(
    frames: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    small: bool = True,
    weights: str | os.PathLike | dict | None = None,
    model: torch.nn.Module | None = None,
    num_flow_updates: int = 12,
    batch_size: int = 8,
) -> torch.Tensor:
    """RAFT flow between consecutive frames: uint8 (T, 3, H, W) -> float (T - 1, 2, H, W) px on the CPU.

    Pass ``model`` (from :func:`load_raft`) to reuse one network over many calls; otherwise one is built from
    ``small``/``weights`` (random weights warn: see :func:`load_raft`). Frames are edge-padded to sides that are
    multiples of 8 and at least 128 px (RAFT's correlation pyramid), and the flow is cropped back.
    """
    if frames.shape[0] < 2:
        raise ValueError(f"flow needs at least 2 frames, got {frames.shape[0]}")
    model = model if model is not None else load_raft(small=small, weights=weights, device=device)
    device = next(model.parameters()).device
    h, w = frames.shape[-2:]
    # RAFT works at 1/8 resolution with a 4-level correlation pyramid: sides a multiple of 8 and at least 128
    pad_h, pad_w = max(128, h + (-h) % 8) - h, max(128, w + (-w) % 8) - w
    x = frames.to(device).float().div(127.5).sub(1.0)  # [-1, 1], RAFT's input range
    x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    out = []
    for i in range(0, x.shape[0] - 1, batch_size):
        first, second = x[i : i + batch_size + 1][:-1], x[i + 1 : i + batch_size + 1]
        out.append(model(first, second, num_flow_updates=num_flow_updates)[-1][..., :h, :w].float().cpu())
    return torch.cat(out)


# -- the flow store -------------------------------------------------------------------------------------------
def flow_dir(dst: str | os.PathLike, src: str | os.PathLike, video: str | os.PathLike) -> Path:
    """``<dst>/<video relative to src without extension>``: where a video's flow frames live."""
    return Path(dst) / Path(video).relative_to(src).with_suffix("")


def flow_info(video_flow_dir: str | os.PathLike) -> dict:
    """The ``.done`` record of a finished folder: frames (flow files), height, width, method, ..."""
    marker = Path(video_flow_dir) / DONE
    if not marker.is_file():
        raise FileNotFoundError(f"{video_flow_dir}: no {DONE} marker; flow extraction did not finish for this video")
    return json.loads(marker.read_text())


def read_flow_clip(video_flow_dir: str | os.PathLike, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """uint8 (T, 3, H, W) flow frames aligned with RGB frame ``indices``: index i reads flow i -> i + 1, and the
    last frame of the video (which has no successor) repeats the last flow. Dequantise with
    :func:`dequantise_flow`, or feed as an image clip (CoCLR normalises it like RGB)."""
    folder = Path(video_flow_dir)
    count = flow_info(folder)["frames"]
    wanted = [min(max(int(i), 0), count - 1) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
    by_index = {i: _read_jpeg(folder / f"flow_{i:05d}.jpg") for i in sorted(set(wanted))}
    return torch.stack([by_index[i] for i in wanted])


def _read_jpeg(path: Path) -> torch.Tensor:
    """A flow JPEG as uint8 (3, H, W) R, G, B. Read by OpenCV, which wrote it: torchvision's image decoders
    (``decode_jpeg``, ``decode_image``) warn that they are deprecated from torchvision 0.29 on."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:  # OpenCV says neither "missing" nor "corrupt"
        raise OSError(f"cannot read {path}: {'not a JPEG' if path.is_file() else 'no such file'}")
    return torch.from_numpy(rearrange(bgr[..., ::-1], "h w c -> c h w").copy())


def _write_jpeg(path: Path, flow_q: np.ndarray, quality: int) -> None:
    """flow_q (3, H, W) uint8 as x, y, 128 -> JPEG with R = x, G = y, B = 128 (OpenCV writes BGR)."""
    bgr = np.ascontiguousarray(rearrange(flow_q[::-1], "c h w -> h w c"))
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"cannot write {path}")


def _frames_in_chunks(path: Path, size: int | tuple[int, int] | None) -> Iterator[torch.Tensor]:
    """All frames of a video, ``_CHUNK`` at a time, decoded by videozoo.data.decode (the reader the datasets use,
    so flow frame i is RGB frame i) with its resizing rule."""
    reader = open_video(path, size=size, cache=False)
    try:
        for start in range(0, len(reader), _CHUNK):
            yield reader.get_frames(range(start, min(start + _CHUNK, len(reader))))
    finally:
        reader.close()


def _extract_one(video: str, out_dir: str, method: str, size, quality: int, raft: torch.nn.Module | None) -> int:
    """Extract one video into ``<out_dir>.partial``, mark it done, rename it into place; returns flow frames."""
    final, partial = Path(out_dir), Path(out_dir + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)  # debris of an interrupted run
    partial.mkdir(parents=True)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create() if method == "tvl1" else None
    count, previous, height, width = 0, None, 0, 0
    for chunk in _frames_in_chunks(Path(video), size):
        frames = chunk if previous is None else torch.cat([previous, chunk])
        previous = chunk[-1:]
        if frames.shape[0] < 2:
            continue
        flow = tvl1_flow(frames, tvl1=tvl1) if tvl1 is not None else raft_flow(frames, model=raft)
        height, width = flow.shape[-2:]
        for q in quantise_flow(flow).numpy():
            _write_jpeg(partial / f"flow_{count:05d}.jpg", q, quality)
            count += 1
    if count == 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ValueError("fewer than 2 frames: no flow")
    record = {
        "frames": count,
        "height": height,
        "width": width,
        "method": method,
        "size": size,
        "jpeg_quality": quality,
        "video": os.path.basename(video),
    }
    (partial / DONE).write_text(json.dumps(record))
    if final.exists():  # an older unfinished folder without .done
        shutil.rmtree(final)
    os.rename(partial, final)  # atomic on POSIX: the folder appears complete or not at all
    return count


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one video per process: threads inside each would only fight over the cores
    torch.set_num_threads(1)


def _worker(job: tuple) -> tuple[str, int | None, str | None]:
    video, out_dir, method, size, quality = job
    try:
        return video, _extract_one(video, out_dir, method, size, quality, None), None
    except Exception as err:  # one broken video must not stop the folder
        return video, None, f"{type(err).__name__}: {err}"


@dataclass
class FlowSummary:
    """What :func:`extract_flow_folder` did; ``failed`` maps a video to its error."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    flow_frames: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        rate = self.flow_frames / self.seconds if self.seconds else 0.0
        return (
            f"{len(self.done)} extracted ({self.flow_frames} flow frames, {rate:.1f}/s), "
            f"{len(self.skipped)} already done, {len(self.failed)} failed"
        )


def extract_flow_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    method: str = "tvl1",
    workers: int | None = None,
    size: int | tuple[int, int] | None = None,
    progress: bool = True,
    jpeg_quality: int = 95,
    device: str | torch.device = "cpu",
    raft_weights: str | os.PathLike | dict | None = None,
) -> FlowSummary:
    """Extract flow for every video under the folder ``src``, or for ``src`` itself when it is a video file, into the
    store at ``dst`` (layout: module docstring).

    ``method``: "tvl1" (CPU, ``workers`` processes, each decoding its own videos; default all cores) or "raft"
    (one process on ``device``, ``raft_weights`` as :func:`load_raft`). Finished videos (``.done``) are skipped, so
    an interrupted run is resumed by running it again. Videos that fail are reported in the summary, not raised.
    """
    if method not in ("tvl1", "raft"):
        raise ValueError(f"method must be 'tvl1' or 'raft', got {method!r}")
    src, dst = Path(src), Path(dst)
    root, videos = _videos_to_extract(src, dst)
    targets: dict[Path, Path] = {}
    for video in videos:
        out = flow_dir(dst, root, video)
        if out in targets:
            raise ValueError(f"{video} and {targets[out]} would share the flow folder {out}; rename one")
        targets[out] = video
    summary, start = FlowSummary(), time.perf_counter()
    jobs = []
    for out, video in targets.items():
        if (out / DONE).is_file():
            summary.skipped.append(str(video))
        else:
            jobs.append((str(video), str(out), method, size, jpeg_quality))
    bar = tqdm(total=len(jobs), desc=f"flow ({method})", unit="video", disable=not progress)
    results: Iterator[tuple[str, int | None, str | None]]
    if method == "raft":
        raft = load_raft(weights=raft_weights, device=device)
        results = (_run_raft(job, raft) for job in jobs)
    elif (workers or os.cpu_count() or 1) <= 1 or len(jobs) <= 1:
        results = (_worker(job) for job in jobs)
    else:
        pool = ProcessPoolExecutor(workers or os.cpu_count(), mp_context=_pool_context(), initializer=_worker_init)
        results = _pool_results(pool, jobs)
    for video, frames, error in results:
        if error is None:
            summary.done.append(video)
            summary.flow_frames += frames
        else:
            summary.failed[video] = error
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _videos_to_extract(src: Path, dst: Path) -> tuple[Path, list[Path]]:
    """The folder the store's paths are relative to, and the videos: ``src`` itself when it is a file (whatever its
    extension: it was named on purpose), else every file with a video extension under it, outside ``dst``."""
    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such video file or folder of videos")
    return src, sorted(p for p in src.rglob("*") if p.is_file() and is_video_file(p) and dst not in p.parents)


def _pool_context() -> mp.context.BaseContext:
    """Not fork: a child forked from a process whose OpenCV (or torch) thread pool has run inherits its locks but
    not its threads and hangs in the first parallel call. A forkserver starts clean, imports this module once,
    and forks each worker from that clean state; spawn where there is no forkserver."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _pool_results(pool: ProcessPoolExecutor, jobs: list[tuple]) -> Iterator[tuple]:
    with pool:
        futures = [pool.submit(_worker, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def _run_raft(job: tuple, raft: torch.nn.Module) -> tuple[str, int | None, str | None]:
    video, out_dir, method, size, quality = job
    try:
        return video, _extract_one(video, out_dir, method, size, quality, raft), None
    except Exception as err:
        return video, None, f"{type(err).__name__}: {err}"


# -- `videozoo flow SRC DST` --------------------------------------------------------------------------------------
def add_flow_arguments(parser) -> None:
    """The arguments of ``videozoo flow``, for the CLI's sub-parser."""
    parser.add_argument("src", help="a video file, or a folder of videos (searched recursively)")
    parser.add_argument("dst", help="flow store: <dst>/<video path without extension>/flow_%%05d.jpg")
    parser.add_argument("--method", choices=("tvl1", "raft"), default="tvl1", help="TV-L1 on CPUs, or RAFT on --device")
    parser.add_argument("--workers", type=int, default=None, help="TV-L1 processes (default: all cores)")
    parser.add_argument("--size", type=int, default=None, help="resize the short side first (default: stored size)")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--device", default="cpu", help="RAFT's device, e.g. cuda")
    parser.add_argument("--raft-weights", default=None, help="RAFT state dict file (random weights otherwise)")


def run_flow_command(args) -> int:
    """Run ``videozoo flow`` from parsed arguments (``quiet``: the CLI's no-progress flag); exit status 1 when some
    videos failed (listed on stderr). A run with no flow to show, now or from before (every video failed, or none
    was found), raises :class:`~videozoo.data.decode.NoReadableVideoError`: the input is wrong, not one file."""
    import sys

    from videozoo.data.decode import NoReadableVideoError

    summary = extract_flow_folder(
        args.src,
        args.dst,
        method=args.method,
        workers=args.workers,
        size=args.size,
        progress=not args.quiet,
        jpeg_quality=args.jpeg_quality,
        device=args.device,
        raft_weights=args.raft_weights,
    )
    print(summary)
    for video, error in summary.failed.items():
        print(f"failed: {video}: {error}", file=sys.stderr)
    if not (summary.done or summary.skipped):
        why = "no video could be read (listed above)" if summary.failed else \
            f"it holds no video file ({', '.join(VIDEO_EXTENSIONS)})"  # fmt: skip
        raise NoReadableVideoError(f"no flow from {args.src}: {why}")
    return 1 if summary.failed else 0
