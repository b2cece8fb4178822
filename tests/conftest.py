"""Shared fixtures. Tests run on the CPU with tiny models and tiny clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
MEDIA_FILES = {
    "mp4": "arm_wrestling.mp4",  # H.264, 340x256, 28 fps, 280 frames, no audio
    "avi": "mpeg4_mp3audio.avi",  # MPEG-4 Part 2, 320x240, 25 fps, 164 frames, MP3 44.1 kHz
    "mkv": "flipping_a_pancake.mkv",  # H.264 in Matroska, 426x240, 30 fps, 310 frames, Opus 48 kHz
}

# Tiny tensors: one thread avoids the thread-pool overhead that makes small ops 5-10x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """``../shared/media`` beside the checkout; a clear failure (never a skip) when it is missing."""
    missing = [name for name in MEDIA_FILES.values() if not (MEDIA / name).is_file()]
    if missing:
        pytest.fail(
            f"test media missing: {', '.join(missing)} not found in {MEDIA}. The tests expect the "
            "project's shared/ folder beside the checkout (shared/media/*.mp4|avi|mkv)."
        )
    return MEDIA


@pytest.fixture(scope="session")
def media(media_dir: Path) -> dict[str, Path]:
    return {key: media_dir / name for key, name in MEDIA_FILES.items()}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
