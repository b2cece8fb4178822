"""Shuffle orders of a given edit distance: videozoo's construction against rejection sampling (CACL, CVPR 2022).

CACL's shuffle-degree labels should be uniform over the 16 distances of a 16-frame clip (0, 2..16).
``videozoo.methods.cacl.permutation_with_distance`` builds an order with the requested distance in one pass.
The alternative is to draw shuffles and keep one whose distance is the target, with two proposals:

* ``randperm``: a uniformly random order (most land at distance 13-16; distance 2 has ~1e-11 probability);
* ``official``: CACL's dataset shuffle (n ~ U{1..T}, then n random positions permuted), which reaches small
  distances often and the largest rarely.

For each, the proposal rate (shuffles + Levenshtein per second) is measured and its acceptance probability per
distance estimated from ``--draws`` proposals; samples/s per distance = rate · acceptance. A distance never hit in
``--draws`` proposals is reported as an upper bound. "uniform labels" = samples/s when every label is drawn in
turn (harmonic mean over distances: zero as soon as one distance is out of reach).

    python benchmarks/cacl_permutation.py [--length 16] [--draws 200000] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from videozoo.methods.cacl import edit_distance, permutation_with_distance  # noqa: E402
from videozoo.methods.shuffle import _positions_order, achievable_distances  # noqa: E402

try:  # the fastest Levenshtein at hand for the rejection baseline (a C++ library), else the pure-Python DP
    from rapidfuzz.distance import Levenshtein

    def distance(order: list[int]) -> int:
        return Levenshtein.distance(list(range(len(order))), order)

    DISTANCE = "rapidfuzz"
except ImportError:

    def distance(order: list[int]) -> int:
        return edit_distance(range(len(order)), order)

    DISTANCE = "videozoo edit_distance (pure Python)"


def construction_rates(length: int, seconds: float) -> dict[int, float]:
    """samples/s of permutation_with_distance for every achievable distance."""
    generator, rates = torch.Generator().manual_seed(0), {}
    for d in achievable_distances(length):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(100):
                permutation_with_distance(length, d, generator=generator)
            n += 100
        rates[d] = n / elapsed
    return rates


def rejection(length: int, draws: int, proposal: str) -> tuple[float, Counter]:
    """Proposals per second and the histogram of their distances."""
    generator, hist = torch.Generator().manual_seed(0), Counter()
    start = time.perf_counter()
    for _ in range(draws):
        order = (
            torch.randperm(length, generator=generator).tolist()
            if proposal == "randperm"
            else _positions_order(length, generator)
        )
        hist[distance(order)] += 1
    return draws / (time.perf_counter() - start), hist


def harmonic(rates: list[float]) -> float:
    return 0.0 if min(rates) <= 0 else len(rates) / sum(1 / r for r in rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--draws", type=int, default=200_000, help="proposals per rejection baseline")
    parser.add_argument("--seconds", type=float, default=0.3, help="timing per distance for the construction")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    distances = achievable_distances(args.length)
    ours = construction_rates(args.length, args.seconds)
    results = {"length": args.length, "levenshtein": DISTANCE, "python": platform.python_version(),
               "torch": torch.__version__, "construction": ours, "rejection": {}}  # fmt: skip
    for proposal in ("randperm", "official"):
        rate, hist = rejection(args.length, args.draws, proposal)
        per_d = {d: rate * hist[d] / args.draws for d in distances}
        results["rejection"][proposal] = {"proposals_per_s": rate, "histogram": dict(sorted(hist.items())),
                                          "samples_per_s": per_d}  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"length {args.length}; rejection: {args.draws} proposals each, Levenshtein by {DISTANCE}")
    rej = results["rejection"]
    print(f"{'distance':>8} {'videozoo/s':>12} {'randperm/s':>12} {'official/s':>12}")
    for d in distances:
        cells = []
        for proposal in ("randperm", "official"):
            value, bound = rej[proposal]["samples_per_s"][d], rej[proposal]["proposals_per_s"] / args.draws
            cells.append(f"{value:12.1f}" if value else f"{'<' + format(bound, '.2g'):>12}")  # never hit
        print(f"{d:>8} {ours[d]:12.0f} {cells[0]} {cells[1]}")
    print(
        f"{'uniform':>8} {harmonic(list(ours.values())):12.0f} "
        f"{harmonic(list(rej['randperm']['samples_per_s'].values())):12.1f} "
        f"{harmonic(list(rej['official']['samples_per_s'].values())):12.1f}   (samples/s, every label in turn)"
    )


if __name__ == "__main__":
    main()
