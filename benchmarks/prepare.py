"""Random training clips from a prepared video (`videozoo prepare`) against the long-GOP original it came from.

Generates a clip encoded as a YouTube download is: H.264 (x264, preset veryfast, B-frames) with x264's default
keyframe interval of 250 frames; by default 1280x720, 300 frames (10 s) at 30 fps of a panning textured scene with a
moving object and sensor noise. Prepares it at ``--short-side`` with each keyframe interval of ``--intervals`` (one
thread: one worker's share of a pool), then times random training clips on each file as a DataLoader worker reads
them: ``read_clip`` of 16 frames at stride 2 from a random start, one decoder thread.

* original, full size      the original decoded at 1280x720
* original, decode_size N  the original resized by the decoder to short side N: the best a loader does unprepared
* prepared, K = k          the prepared file (short side N), a keyframe every k frames

Clips per CPU-second = 1 / median CPU time (``time.process_time``, all threads of this process) per clip: on a
machine shared with other jobs wall-clock rates swing by 2x from run to run, CPU time much less. The same random
starts for every file, in rounds over the files; once with a new reader per clip (``cache=False``: a loader over a
large dataset, whose 8 cached readers per worker almost never hold the next video), once with one cached reader per
file. Also each prepared file's size and how many frames ``prepare`` got through per CPU-second.

    python benchmarks/prepare.py [--size 1280x720] [--frames 300] [--short-side 160] [--intervals 250,64,32,16,8]
                                 [--clips 30] [--rounds 3] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videozoo.data.decode import clear_reader_cache, read_clip  # noqa: E402
from videozoo.data.prepare import prepare_video  # noqa: E402

CLIP_FRAMES, CLIP_STRIDE = 16, 2


def write_source(path: Path, *, width: int, height: int, frames: int, fps: int = 30) -> Path:
    """A panning textured scene, a moving disc and noise, H.264 with x264's default keyframe interval (250)."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.uniform(0, 255, (height // 8 + 8, width // 8 + 8, 3)).astype(np.float32),
                         (width * 2, height * 2), interpolation=cv2.INTER_CUBIC)  # fmt: skip
    texture += rng.normal(0, 12, texture.shape).astype(np.float32)  # fine detail that costs bits
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x, y = int(i * width / frames), int(i * height / (2 * frames))
            image = texture[y : y + height, x : x + width].copy()
            centre = (int(width * (0.2 + 0.6 * i / frames)), height // 2)
            cv2.circle(image, centre, height // 6, (240, 40, 40), -1)
            image += rng.normal(0, 3, image.shape).astype(np.float32)  # sensor noise
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def clips_per_second(files: list[tuple[Path, int | None]], starts: list[int], *, cache: bool,
                     rounds: int) -> list[float]:  # fmt: skip
    """Clips per CPU-second on each ``(path, decode size)``: 1 / median CPU time per clip over ``rounds`` passes
    through the files (each pass reads every start from one file, then the next one). ``cache=False`` opens the
    file for every clip; ``cache=True`` reuses one reader per file."""
    times: list[list[float]] = [[] for _ in files]
    for _ in range(rounds):
        for i, (path, size) in enumerate(files):
            clear_reader_cache()
            read_clip(path, start=starts[0], num_frames=CLIP_FRAMES, stride=CLIP_STRIDE, size=size)  # warm up
            for start in starts:
                t = time.process_time()
                read_clip(path, start=start, num_frames=CLIP_FRAMES, stride=CLIP_STRIDE, size=size, cache=cache)
                times[i].append(time.process_time() - t)
    clear_reader_cache()
    return [1.0 / statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720", help="WxH of the generated original")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--intervals", default="250,64,32,16,8", help="keyframe intervals to prepare with")
    parser.add_argument("--clips", type=int, default=30, help="random clips per file and round")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the files")
    parser.add_argument("--work", default=None, help="folder for the files (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="videozoo_prepare_bench_"))
    work.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    original = write_source(work / "original.mp4", width=width, height=height, frames=args.frames)
    print(f"original {width}x{height}, {args.frames} frames: written in {time.perf_counter() - t:.1f} s")
    span = (CLIP_FRAMES - 1) * CLIP_STRIDE + 1
    rng = np.random.default_rng(1)
    starts = [int(s) for s in rng.integers(0, args.frames - span + 1, args.clips)]

    rows = [
        {"file": f"original {width}x{height}, full size", "path": original, "size": None},
        {"file": f"original {width}x{height}, decode_size {args.short_side}", "path": original,
         "size": args.short_side},
    ]  # fmt: skip
    for interval in [int(k) for k in args.intervals.split(",")]:
        t = time.process_time()
        result = prepare_video(original, work / f"prepared_k{interval}.mp4", short_side=args.short_side,
                               keyframe_interval=interval, threads=1, overwrite=True)  # fmt: skip
        rows.append({"file": f"prepared {result.size[1]}x{result.size[0]}, K = {interval}",
                     "path": Path(result.dst), "size": None, "frames": result.frames,
                     "prepare_frames_per_cpu_s": result.frames / (time.process_time() - t)})  # fmt: skip
    files = [(row["path"], row["size"]) for row in rows]
    fresh = clips_per_second(files, starts, cache=False, rounds=args.rounds)
    cached = clips_per_second(files, starts, cache=True, rounds=args.rounds)
    for row, rate, rate_cached in zip(rows, fresh, cached):
        row.update(clips_per_s=rate, clips_per_s_cached_reader=rate_cached, bytes=row["path"].stat().st_size,
                   path=str(row["path"]))  # fmt: skip
        row.setdefault("frames", args.frames)

    print(f"\n{platform.processor() or platform.machine()}, random {CLIP_FRAMES}-frame clips at stride {CLIP_STRIDE}, "
          f"{args.clips} starts x {args.rounds} rounds per file, one decoder thread\n")  # fmt: skip
    print("| file | clips/CPU-s, reader per clip | vs original | cached reader | size | prepare frames/CPU-s |")
    print("|---|---|---|---|---|---|")
    base = rows[1]["clips_per_s"]
    for row in rows:
        encode = f"{row['prepare_frames_per_cpu_s']:.0f}" if "prepare_frames_per_cpu_s" in row else "-"
        print(f"| {row['file']} | {row['clips_per_s']:.1f} | {row['clips_per_s'] / base:.1f}x | "
              f"{row['clips_per_s_cached_reader']:.1f} | {row['bytes'] / 1e6:.2f} MB | {encode} |")  # fmt: skip
    out = {"size": args.size, "frames": args.frames, "short_side": args.short_side, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
