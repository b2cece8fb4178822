"""Training-clip throughput of videozoo.data, one worker, on the real media in ../shared/media.

A training clip = 16 frames at stride 2 from a random start, decoded at short side 128 and augmented to
112² (STiCA's train preset from videozoo.data.transforms). Per video file, in the same run, timed in turn:

* ours            read_clip (decord random access, reader cached per worker) + augmentation
* ours, no cache  the same, opening the file for every clip
* ours, PyAV      the same through the PyAV fallback (seek to the keyframe, decode forward)
* (a) whole file  PyAV decodes the whole file, the clip is sliced out, same augmentation: the naive loader
* (b) ceiling     the decoder's own sequential decode of the same frames: decord decodes the clip's whole
                  31-frame span in order from the clip's start (its keyframe seek included), at the same
                  size, no augmentation. No reader of that clip can decode less.

Also the decoder's pure sequential frames/s through each file (no seeking: not reachable by random clips of
long-GOP files, listed for scale), then TV-L1 and RAFT flow frames/s (videozoo.data.flow) on 240×320 frames.
Targets: ours >= 3x (a), >= 0.5x (b). Rates are 1 / median time per call.

    python benchmarks/data.py [--rounds 5] [--json] [--no-flow]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videozoo.data.decode import output_size, probe_video, read_clip  # noqa: E402
from videozoo.data.sampling import clip_indices, clip_span  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
FILES = ["arm_wrestling.mp4", "mpeg4_mp3audio.avi", "flipping_a_pancake.mkv"]


def train_transform(crop: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    try:
        from videozoo.data.transforms import preset

        return preset("stica", crop_size=crop), "videozoo.data.transforms.preset('stica')"
    except ImportError:  # the transforms not written yet: resize + centre crop
        import torchvision.transforms.v2.functional as F

        def fallback(clip: torch.Tensor) -> torch.Tensor:
            return F.center_crop(clip, [crop, crop]).float().div(255).permute(1, 0, 2, 3)

        return fallback, "centre crop (fallback)"


def interleaved(fns: dict[str, Callable[[int], object]], rounds: int, seed: int = 0) -> dict[str, float]:
    """Calls per second of each ``fn(i)``: 1 / median time of one call, the methods timed in turn in a random
    order every round (after one warm-up call each), so that a busy machine slows them all alike."""
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(0)
    for i in range(rounds):
        for k in rng.permutation(list(fns)):
            start = time.perf_counter()
            fns[k](i + 1)
            times[k].append(time.perf_counter() - start)
    return {k: 1.0 / float(np.median(v)) for k, v in times.items()}


def bench_file(path: Path, args: argparse.Namespace, transform: Callable) -> dict:
    import decord
    import torchvision.transforms.v2.functional as F

    info = probe_video(path)
    span = clip_span(args.frames, stride=args.stride)
    h, w = output_size(info.height, info.width, args.size)
    reader = decord.VideoReader(str(path), width=w, height=h, num_threads=1)  # the decoder of (b)
    n = len(reader)
    starts = np.random.default_rng(1).integers(0, n - span + 1, args.rounds + 1)

    def ours(i: int, **kw: object) -> torch.Tensor:
        clip = read_clip(path, start=int(starts[i]), num_frames=args.frames, stride=args.stride, size=args.size, **kw)
        return transform(clip)

    def whole_file(i: int) -> torch.Tensor:
        with av.open(str(path)) as c:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])  # (N, H, W, C)
        idx = clip_indices(len(frames), start=int(starts[i]), num_frames=args.frames, stride=args.stride)
        clip = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)
        return transform(F.resize(clip, [args.size], antialias=True))  # the same input size as ours

    def span_decode(i: int) -> object:
        return reader.get_batch(list(range(int(starts[i]), int(starts[i]) + span))).asnumpy()

    rates = interleaved(
        {
            "ours": ours,
            "ours_no_cache": lambda i: ours(i, cache=False),
            "ours_pyav": lambda i: ours(i, backend="pyav"),
            "a_whole_file": whole_file,
            "b_ceiling": span_decode,
        },
        args.rounds,
    )
    start = time.perf_counter()
    reader.seek(0)
    for _ in range(n):
        reader.next()
    sequential_fps = n / (time.perf_counter() - start)
    row = {"file": path.name, "frames": n, "codec": info.codec, "size": f"{info.width}x{info.height}", **rates}
    row["sequential_decode_fps"] = sequential_fps
    row["ours_vs_a"] = row["ours"] / row["a_whole_file"]
    row["ours_vs_b"] = row["ours"] / row["b_ceiling"]
    return row


def bench_flow() -> dict:
    from videozoo.data import flow

    frames = read_clip(MEDIA / "mpeg4_mp3audio.avi", start=40, num_frames=3)  # (3, 3, 240, 320)
    out = {"flow_frames": "240x320"}
    start = time.perf_counter()
    flow.tvl1_flow(frames)
    out["tvl1_fps"] = 2 / (time.perf_counter() - start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: same speed as trained ones
        raft = flow.load_raft(small=True)
    flow.raft_flow(frames[:2], model=raft)  # warm-up
    start = time.perf_counter()
    flow.raft_flow(frames, model=raft)
    out["raft_small_cpu_fps"] = 2 / (time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="timed calls per method and file (default 5)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=128, help="decode short side (default 128)")
    p.add_argument("--crop", type=int, default=112)
    p.add_argument("--no-flow", action="store_true", help="skip the TV-L1/RAFT lines")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker
    cv2.setNumThreads(1)
    missing = [f for f in FILES if not (MEDIA / f).is_file()]
    if missing:
        sys.exit(f"benchmark media missing in {MEDIA}: {missing}")
    transform, transform_name = train_transform(args.crop)
    rows = [bench_file(MEDIA / f, args, transform) for f in FILES]
    keys = ("ours", "ours_no_cache", "ours_pyav", "a_whole_file", "b_ceiling")
    mean = {k: 1 / np.mean([1 / r[k] for r in rows]) for k in keys}  # clips/s over an equal mix of the files
    mean.update(ours_vs_a=mean["ours"] / mean["a_whole_file"], ours_vs_b=mean["ours"] / mean["b_ceiling"])
    result = {
        "clip": f"{args.frames} frames, stride {args.stride}, decoded at short side {args.size}, "
        f"augmented to {args.crop}x{args.crop} by {transform_name}",
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
        "files": rows,
        "all": mean,
    }
    if not args.no_flow:
        result["flow"] = bench_flow()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"training clips/s per worker: {result['clip']}")
    head = f"{'file':<24}{'ours':>8}{'no cache':>10}{'PyAV':>8}{'(a)':>8}{'(b)':>8}{'vs (a)':>9}{'vs (b)':>9}"
    print(head)
    for r in [*rows, {"file": "all (equal mix)", **mean}]:
        print(
            f"{r['file']:<24}{r['ours']:>8.1f}{r['ours_no_cache']:>10.1f}{r['ours_pyav']:>8.1f}"
            f"{r['a_whole_file']:>8.1f}{r['b_ceiling']:>8.1f}{r['ours_vs_a']:>8.1f}x{r['ours_vs_b']:>8.2f}x"
        )
    print("sequential decode, frames/s: " + ", ".join(f"{r['file']} {r['sequential_decode_fps']:.0f}" for r in rows))
    print(
        f"target: ours >= 3x (a) whole-file PyAV decode: {'met' if mean['ours_vs_a'] >= 3 else 'NOT met'}; "
        f"ours >= 0.5x (b) sequential-decode ceiling: {'met' if mean['ours_vs_b'] >= 0.5 else 'NOT met'}"
    )
    if "flow" in result:
        f = result["flow"]
        print(
            f"flow {f['flow_frames']}: TV-L1 {f['tvl1_fps']:.1f} frames/s (CPU, 1 thread), "
            f"RAFT-small {f['raft_small_cpu_fps']:.1f} frames/s (CPU)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
