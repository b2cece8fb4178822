"""Video-level features: sample clips, preprocess with the model's own transform, embed, average.

Used by ``videozoo embed``, the demo, and retrieval/linear-probe evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "EmbedResult",
    "clip_features",
    "describe_failures",
    "embed_videos",
    "input_report",
    "load_features",
    "save_features",
]


@dataclass
class EmbedResult:
    features: torch.Tensor  # (N, D) float32, one row per readable video
    paths: list[str]
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it was skipped (missing, unreadable, ...)
    model: str = ""  # the model that made the features (kept in the file so search can check it)
    padded: dict[str, str] = field(default_factory=dict)  # path -> note: embedded, but its clips are mostly padding


def clip_features(model: nn.Module, clips: torch.Tensor, *, features: str = "pooled") -> torch.Tensor:
    """``(B, C, T, H, W)`` clips → ``(B, D)`` features, whether or not a classifier head is set.

    ``"pooled"``: the backbone's own pooling of :meth:`forward_features` (what ``forward`` gives without a head).
    ``"conv5"``: CACL's ``return_conv`` feature, ``max_pool3d((1, 2, 2))`` of the pre-pool map, flattened.
    """
    if features == "pooled":
        if not getattr(model, "num_classes", 0):
            return model(clips)  # (B, D)
        return model.pool(model.forward_features(model.check_input(clips)))  # (B, D), the head skipped
    if features == "conv5":
        fmap = model.forward_features(model.check_input(clips))  # (B, D, T', H', W')
        if fmap.ndim != 5:
            raise ValueError(f"conv5 features need a (B, D, T, H, W) map, got {tuple(fmap.shape)}")
        fmap = F.max_pool3d(fmap, kernel_size=(1, 2, 2), stride=(1, 2, 2))  # (B, D, T', H'/2, W'/2)
        return rearrange(fmap, "b d t h w -> b (d t h w)")
    raise ValueError(f"features must be 'pooled' or 'conv5', got {features!r}")


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

    Clip length, frame stride / fps and preprocessing come from the model's input spec. A video that
    fails in any way (missing, not a video, shorter than its header says, ...) is reported in ``failed``
    and skipped; the others go on. A video supplying less than half of a clip's frames is embedded from
    looped frames and noted in ``padded``. Raises ``ValueError`` without videos and
    :class:`~videozoo.data.decode.NoReadableVideoError` (a ``RuntimeError``) when none could be read, rather than
    return an empty result.
    """
    from videozoo.api import input_spec_of, transforms_for
    from videozoo.data.decode import NoReadableVideoError, VideoDecodeError, as_decode_error

    spec = input_spec_of(model)
    if spec.channels != "rgb":
        raise ValueError(
            f"embed_videos reads RGB frames; {getattr(model, 'zoo_name', 'this model')} takes {spec.channels} input"
        )
    if not videos:
        raise ValueError("no videos to embed")
    transform = transforms_for(model)
    model = model.to(device).eval()
    rows, paths, failed, padded = [], [], {}, {}
    for path in tqdm(videos, desc="embedding", unit="video", disable=not progress):
        try:
            with as_decode_error(path):
                batch, note = _clips(path, spec=spec, transform=transform, clips=clips)
        except VideoDecodeError as exc:
            failed[str(path)] = str(exc.cause or exc)
            continue
        if note:
            padded[str(path)] = note
        rows.append(clip_features(model, batch.to(device)).float().mean(dim=0).cpu())  # pooled, head skipped
        paths.append(str(path))
    if not rows:
        raise NoReadableVideoError(f"none of the {len(failed)} videos could be read: {describe_failures(failed)}")
    return EmbedResult(features=torch.stack(rows), paths=paths, failed=failed, padded=padded)


def _clips(path: str | Path, *, spec: Any, transform: Any, clips: int) -> tuple[torch.Tensor, str | None]:
    """``clips`` uniform clips of one video, preprocessed ``(N, C, T, H, W)``, and a note if they are mostly padding."""
    from videozoo.data.decode import open_video
    from videozoo.data.sampling import short_clip_note, uniform_clips

    reader = open_video(path)
    kw = {"num_frames": spec.frames, "stride": spec.stride, "fps": spec.fps, "native_fps": reader.fps}
    indices = uniform_clips(len(reader), num_clips=clips, **kw)  # (N, T)
    batch = torch.stack([transform(reader.get_frames(idx)) for idx in indices])  # (N, C, T, H, W)
    return batch, short_clip_note(len(reader), **kw)


def input_report(failed: dict[str, str], padded: dict[str, str], *, total: int, action: str) -> list[str]:
    """Lines for the user: the videos skipped (with why) and those used although mostly padding.

    ``action`` says what the skipped videos missed (``"embedded"``, ``"searched"``, ...). Empty when all is well.
    """
    lines = []
    if failed:
        lines.append(f"skipped {len(failed)} of {total} videos (not {action}):")
        lines += [f"  {path}: {why}" for path, why in failed.items()]
    if padded:
        lines.append(f"warning: {len(padded)} of {total} videos supply less than half of a clip's frames; "
                     "their clips are mostly padding:")  # fmt: skip
        lines += [f"  {path}: {note}" for path, note in padded.items()]
    return lines


def describe_failures(failed: dict[str, str], limit: int = 5) -> str:
    """``path (cause); ...`` for the first ``limit`` failures, then how many more: one line for an error message."""
    listed = "; ".join(f"{path} ({why})" for path, why in list(failed.items())[:limit])
    return listed + (f"; ... and {len(failed) - limit} more" if len(failed) > limit else "")


def save_features(result: EmbedResult, path: str | Path, *, model_name: str = "") -> Path:
    """Write features to ``.safetensors`` (paths in the metadata) or ``.npz`` (paths as an array).

    The videos that were skipped (``failed``) and padded (``padded``) are kept too, as JSON, so the file says
    which of its inputs it lacks. A result without features is refused: an empty index is of no use.
    """
    path = Path(path)
    if path.suffix not in (".npz", ".safetensors"):
        raise ValueError(f"feature files are .safetensors or .npz, got {path.name!r}")
    if result.features.ndim != 2 or result.features.shape[0] == 0:
        raise ValueError(f"no features to write to {path} ({len(result.failed)} videos failed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    failed, padded = json.dumps(result.failed), json.dumps(result.padded)
    if path.suffix == ".npz":
        np.savez(path, features=result.features.numpy(), paths=np.array(result.paths), model=model_name,
                 failed=failed, padded=padded)  # fmt: skip
    else:
        from safetensors.torch import save_file

        meta = {"paths": json.dumps(result.paths), "model": model_name, "failed": failed, "padded": padded}
        save_file({"features": result.features.contiguous()}, str(path), metadata=meta)
    return path


def load_features(path: str | Path) -> EmbedResult:
    """Read a file written by :func:`save_features` (files from before ``failed``/``padded`` were kept read too)."""
    path = Path(path)
    if path.suffix == ".npz":
        data = np.load(path)
        meta = {key: str(data[key]) for key in ("model", "failed", "padded") if key in data.files}
        features, paths = torch.from_numpy(data["features"]), [str(p) for p in data["paths"]]
    else:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta, features = f.metadata(), f.get_tensor("features")
        paths = json.loads(meta["paths"])
    return EmbedResult(features, paths, failed=json.loads(meta.get("failed", "{}")), model=meta.get("model", ""),
                       padded=json.loads(meta.get("padded", "{}")))  # fmt: skip
