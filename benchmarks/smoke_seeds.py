"""A recipe's smoke run at several seeds: retrieval R@1 of the pretrained backbone against its random init.

One seed says little: the seed draws the synthetic dataset, the initialisation, the data order and the crops, and
the smoke figures of docs/benchmarks.md swing by tenths between seeds. This runs
``python recipes/<recipe>.py --preset smoke --seed S`` for every seed (``--jobs`` at a time, one thread and one
loader worker each, so two jobs fill a 2-core machine), reads each run's ``results.json`` and prints a table:

    python benchmarks/smoke_seeds.py --recipe stica --seeds 0,1,2 --jobs 2 --json stica_seeds.json
    python benchmarks/smoke_seeds.py --recipe coclr --seeds 0,1,2 -- --coclr_epochs 12   # after --: recipe keys

Runs go to ``--runs`` (default ``runs/smoke_seeds/<recipe>_seed<S>``, plus a hash of the recipe keys after ``--``);
a finished run there is read, not re-run, unless ``--fresh``. CoCLR reports its RGB and flow backbones as two rows
per seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("coclr", "cacl", "stica")
QUIET = ["--progress", "false", "--workers", "1"]


def run_seed(recipe: str, seed: int, run_dir: Path, extra: list[str], *, fresh: bool) -> dict:
    """Run (or read) one smoke run; return its results.json (``wall_time_s`` included), or the output's tail."""
    results = run_dir / "results.json"
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if not results.is_file():
        script = str(ROOT / "recipes" / f"{recipe}.py")
        command = [sys.executable, script, "--preset", "smoke", "--seed", str(seed), "--run_dir", str(run_dir), *QUIET]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core per run
        done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"seed": seed, "error": (done.stdout + done.stderr)[-2000:]}
    return {"seed": seed, **json.loads(results.read_text())}


def rows(run: dict) -> list[tuple[str, dict]]:
    """(backbone name, {"pretrained": {...}, "random_init": {...}}) per evaluated backbone of one run."""
    retrieval = run.get("retrieval", {})
    if "pretrained" in retrieval:  # CACL, STiCA: one backbone
        return [("video", retrieval)]
    return list(retrieval.items())  # CoCLR: {"rgb": {...}, "flow": {...}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=RECIPES, required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--runs", default="runs/smoke_seeds", help="parent folder of the run dirs")
    parser.add_argument("--fresh", action="store_true", help="delete and re-run finished runs")
    parser.add_argument("--json", help="also write the runs and the table here")
    parser.add_argument("extra", nargs="*", help="after --: recipe keys for every run (e.g. -- --epochs 10)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    # runs with other recipe keys get other folders (results.json names the keys: "command")
    tag = f"_{hashlib.sha1(' '.join(args.extra).encode()).hexdigest()[:8]}" if args.extra else ""

    def one(seed: int) -> dict:
        run_dir = Path(args.runs) / f"{args.recipe}_seed{seed}{tag}"
        return run_seed(args.recipe, seed, run_dir, args.extra, fresh=args.fresh)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # threads only wait on the recipe processes
        runs = list(pool.map(one, seeds))
    failed = [run for run in runs if "error" in run]
    for run in failed:
        print(f"seed {run['seed']} failed:\n{run['error']}", file=sys.stderr)

    table = [{"seed": run["seed"], "backbone": name, "seconds": run["wall_time_s"], **r}
             for run in runs if "error" not in run for name, r in rows(run)]  # fmt: skip
    print(f"\n{args.recipe} smoke {' '.join(args.extra)}".rstrip())
    print("| seed | backbone | R@1 pretrained | R@1 random init | R@5 pretrained | R@5 random init | seconds |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        pre, rnd = row["pretrained"], row["random_init"]
        recalls = " | ".join(f"{r[k]:.3f}" for k in ("R@1", "R@5") for r in (pre, rnd))
        print(f"| {row['seed']} | {row['backbone']} | {recalls} | {row['seconds']:.0f} |")
    for name in dict.fromkeys(row["backbone"] for row in table):
        mine = [row for row in table if row["backbone"] == name]
        pre, rnd = (mean(row[k]["R@1"] for row in mine) for k in ("pretrained", "random_init"))
        wins = sum(row["pretrained"]["R@1"] > row["random_init"]["R@1"] for row in mine)
        print(f"| mean | {name} | {pre:.3f} | {rnd:.3f} | | | above random init at {wins} of {len(mine)} seeds |")
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "args": vars(args)}
        Path(args.json).write_text(json.dumps({"meta": meta, "table": table, "runs": runs}, indent=2, default=str))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
