"""`videozoo --help`, `--version`, `list` and `info` answer without importing the heavy libraries.

Structural, not timed: importing torch alone takes seconds, so a command that does not import it starts fast on any
machine. The figures are benchmarks/startup.py's (docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import videozoo
from videozoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "av", "cv2", "decord", "timm", "torchvision", "torchaudio")

# What the installed `videozoo` script does, then a report of the heavy modules that got imported.
PROBE = f"""
import sys
from videozoo.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:  # --help and --version leave through argparse
    status = exit.code
print("HEAVY:", *sorted(m for m in {HEAVY!r} if m in sys.modules))
print("STATUS:", status)
"""


def _run(*argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The probe's result, and the heavy modules it reports."""
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    report = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")]
    assert report, result.stdout + result.stderr
    return result, set(report[-1].split()[1:])


@pytest.mark.parametrize(
    ("argv", "status"),
    [(["--help"], 0), (["--version"], 0), (["list"], 0), (["info", "s3d"], 0), (["info", "coclr_s3d_k400_rbg"], 2)],
    ids=["help", "version", "list", "info", "info-unknown"],
)
def test_answers_without_heavy_imports(argv: list[str], status: int) -> None:
    result, heavy = _run(*argv)
    assert f"STATUS: {status}" in result.stdout.splitlines(), result.stdout + result.stderr
    assert not heavy, f"`videozoo {' '.join(argv)}` imported {sorted(heavy)}"


def test_version_names_the_package_version() -> None:
    result, _ = _run("--version")
    assert result.stdout.splitlines()[0] == f"videozoo {videozoo.__version__}"


@pytest.mark.parametrize(
    ("command", "option"),
    [("convert", "--to"), ("publish", "--repo"), ("flow", "--method"), ("finetune", "--backbone-lr")],
)
def test_arguments_defined_elsewhere_come_with_their_command(command: str, option: str, capsys) -> None:
    """convert, publish, flow and finetune (FinetuneConfig's fields) take their arguments from their own (heavy)
    modules, loaded when they run."""
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0 and option in capsys.readouterr().out


def test_startup_benchmark_prints_its_table() -> None:
    """benchmarks/startup.py, whose figures docs/benchmarks.md quotes, runs end to end (one run per command)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--runs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| `videozoo")]
    assert len(rows) == 4 and all(row.endswith("| 0 | none |") for row in rows), done.stdout
