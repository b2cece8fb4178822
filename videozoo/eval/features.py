"""Video-level features: sample clips, preprocess with the model's own transform, embed, average.

Used by ``videozoo embed``, the demo, and retrieval/linear-probe evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["EmbedResult", "embed_videos", "load_features", "save_features"]


@dataclass
class EmbedResult:
    features: torch.Tensor  # (N, D) float32, one row per readable video
    paths: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read
    model: str = ""  # the model that made the features (kept in the file so search can check it)


@torch.inference_mode()
def embed_videos(
    model: nn.Module,
    videos: Sequence[str | Path],
    *,
    clips: int = 4,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> EmbedResult:
    """Embed each video as the mean of its ``clips`` uniformly spaced clips' pooled features.

    The pooled backbone embedding is used even when the model has a classifier head.

    Clip length, frame stride / fps and preprocessing come from the model's input spec. A video
    that cannot be decoded is reported in ``failed`` and skipped; the others go on.
    """
    from videozoo.api import input_spec_of, transforms_for
    from videozoo.data.decode import VideoDecodeError, open_video
    from videozoo.data.sampling import uniform_clips
    from videozoo.eval.retrieval import clip_features

    spec = input_spec_of(model)
    if spec.channels != "rgb":
        raise ValueError(
            f"embed_videos reads RGB frames; {getattr(model, 'zoo_name', 'this model')} takes {spec.channels} input"
        )
    transform = transforms_for(model)
    model = model.to(device).eval()
    rows, paths, failed = [], [], {}
    for path in tqdm(videos, desc="embedding", unit="video", disable=not progress):
        try:
            reader = open_video(path)
            indices = uniform_clips(
                len(reader),
                num_clips=clips,
                num_frames=spec.frames,
                stride=spec.stride,
                fps=spec.fps,
                native_fps=reader.fps,
            )  # (N, T)
            batch = torch.stack([transform(reader.get_frames(idx)) for idx in indices])  # (N, C, T, H, W)
        except VideoDecodeError as exc:
            failed[str(path)] = str(exc)
            continue
        rows.append(clip_features(model, batch.to(device)).float().mean(dim=0).cpu())  # pooled, head skipped
        paths.append(str(path))
    features = torch.stack(rows) if rows else torch.empty(0, getattr(model, "num_features", 0))
    return EmbedResult(features=features, paths=paths, failed=failed)


def save_features(result: EmbedResult, path: str | Path, *, model_name: str = "") -> Path:
    """Write features to ``.safetensors`` (paths in the metadata) or ``.npz`` (paths as an array)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, features=result.features.numpy(), paths=np.array(result.paths), model=model_name)
    elif path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {"paths": json.dumps(result.paths), "model": model_name}
        save_file({"features": result.features.contiguous()}, str(path), metadata=meta)
    else:
        raise ValueError(f"feature files are .safetensors or .npz, got {path.name!r}")
    return path


def load_features(path: str | Path) -> EmbedResult:
    """Read a file written by :func:`save_features`."""
    path = Path(path)
    if path.suffix == ".npz":
        data = np.load(path)
        paths = [str(p) for p in data["paths"]]
        return EmbedResult(torch.from_numpy(data["features"]), paths, model=str(data["model"]))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        return EmbedResult(f.get_tensor("features"), json.loads(meta["paths"]), model=meta.get("model", ""))
