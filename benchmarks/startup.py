"""Startup time of the `videozoo` command: how long `--help`, `--version`, `list` and `info` take to answer.

Each command runs ``--runs`` times, each in a fresh interpreter (``python -m videozoo.cli ARGS``, what the installed
``videozoo`` script runs), and the median and the fastest wall time are printed as a Markdown table, with the heavy
libraries the command imported. ``import torch`` alone is timed the same way, for scale.

    python benchmarks/startup.py --runs 7
    python benchmarks/startup.py --runs 7 --python /path/to/other/venv/bin/python   # another checkout, to compare

Figures: docs/benchmarks.md. tests/test_cli_startup.py checks the imports (not the times) on every test run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = (("--help",), ("--version",), ("list",), ("info", "coclr_s3d_k400_rgb"))
HEAVY = ("torch", "torchvision", "torchaudio", "av", "cv2", "decord", "timm")
# The command as the installed script runs it, then which heavy libraries it left imported (on stderr).
PROBE = f"""
import sys
from videozoo.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(m for m in {HEAVY!r} if m in sys.modules) or "none", file=sys.stderr)
"""
# Not the checkout: `python -m` looks in the working directory first, and the interpreter's own videozoo is timed.
CWD = tempfile.gettempdir()


def wall_times(argv: list[str], runs: int) -> tuple[list[float], int]:
    """Seconds from process start to exit, ``runs`` times (output discarded), and the last exit status."""
    times, status = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        status = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=CWD).returncode
        times.append(time.perf_counter() - start)
    return times, status


def heavy_imports(python: str, args: tuple[str, ...]) -> str:
    done = subprocess.run([python, "-c", PROBE, *args], capture_output=True, text=True, cwd=CWD)
    return done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command (median reported)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter whose videozoo is timed")
    args = parser.parse_args()

    print(f"python {args.python}, {args.runs} runs each, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")  # fmt: skip
    print("| command | median (s) | fastest (s) | exit status | heavy imports |")
    print("|---|---|---|---|---|")
    for args_ in COMMANDS:
        times, status = wall_times([args.python, "-m", "videozoo.cli", *args_], args.runs)
        print(row(f"`videozoo {' '.join(args_)}`", times, status, heavy_imports(args.python, args_)))
    times, status = wall_times([args.python, "-c", "import torch"], args.runs)
    print(row("`python -c 'import torch'` (for scale)", times, status, "torch"))


def row(label: str, times: list[float], status: int, heavy: str) -> str:
    return f"| {label} | {statistics.median(times):.2f} | {min(times):.2f} | {status} | {heavy} |"


if __name__ == "__main__":
    main()
