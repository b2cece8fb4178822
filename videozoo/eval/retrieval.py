"""Nearest-neighbour video retrieval: test videos query the training videos, hit if any of the top k shares the class.

Two protocols, as the official code runs them (``RETRIEVAL_PROTOCOLS``):

* ``"coclr"`` (``TengdaHan/CoCLR``, ``eval/main_classifier.py``, ``test_retrieval``): the pooled backbone output
  of every sliding window (32 frames, step 15: ``dataset/lmdb_dataset.py``, ``frame_sampler``), L2-normalised per
  window (the linear-probe classifier's ``use_l2_norm``), averaged over the windows; then each set has *its own*
  mean subtracted (test features minus the test mean, train minus the train mean), rows re-normalised, cosine
  similarity, R@1,5,10,20,50 (``torch.any(train_label[topk] == test_label)``).
* ``"cacl"`` (``guoshengcv/CACL``, ``retrieve_videos.py``): the conv5 map before global pooling, max-pooled
  (1, 2, 2) and flattened (9216-d for C3D at 112²; ``return_conv=True`` in ``models/c3d.py``), averaged over 10
  clips of 16 frames at stride 2 starting at ``np.linspace(0, n - 32, 10)``, centre crop 112; cosine distance
  with no centring.

:func:`recall_at_k` and :func:`nearest_neighbours` work in chunks: a query block against a gallery block at a
time with a running top-k, so a Kinetics-size gallery (240k × 1024) never needs the query × gallery matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from videozoo.eval.features import EmbedResult, clip_features, load_features, save_features

__all__ = [
    "CENTER_MODES",
    "RETRIEVAL_PROTOCOLS",
    "RetrievalProtocol",
    "clip_features",
    "evaluate_retrieval",
    "extract_features",
    "nearest_neighbours",
    "recall_at_k",
    "retrieval_from_features",
    "retrieval_sets",
]

KS = (1, 5, 10, 20, 50)
CENTER_MODES = ("own", "gallery", None)


@dataclass(frozen=True, kw_only=True)
class RetrievalProtocol:
    """How a video becomes one retrieval feature, and how features are compared.

    ``features``: ``"pooled"`` (the backbone's pooled embedding) or ``"conv5"`` (pre-pool map → max-pool
    (1, 2, 2) → flatten). ``sampling`` / ``clips`` / ``step``: see :func:`videozoo.eval.video_predict.sample_clips`.
    ``normalize_clips``: L2-normalise each clip's feature before averaging. ``center``: ``"own"`` (each set minus
    its own mean: CoCLR's code), ``"gallery"`` (both minus the gallery mean: usable when queries arrive one by
    one) or ``None``.
    """

    features: str = "pooled"
    sampling: str = "sliding"
    clips: int = 10
    step: int = 15
    normalize_clips: bool = True
    center: str | None = "own"


RETRIEVAL_PROTOCOLS = {
    "coclr": RetrievalProtocol(features="pooled", sampling="sliding", step=15, normalize_clips=True, center="own"),
    "cacl": RetrievalProtocol(features="conv5", sampling="linspace", clips=10, normalize_clips=False, center=None),
}


def _protocol(protocol: str | RetrievalProtocol) -> RetrievalProtocol:
    if isinstance(protocol, RetrievalProtocol):
        return protocol
    if protocol not in RETRIEVAL_PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(RETRIEVAL_PROTOCOLS)} or a RetrievalProtocol")
    return RETRIEVAL_PROTOCOLS[protocol]


# -- features (the per-clip features: videozoo.eval.features.clip_features) -----------------------------
@torch.inference_mode()
def extract_features(
    model: nn.Module,
    videos: Sequence[str | Path],
    *,
    protocol: str | RetrievalProtocol = "coclr",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> EmbedResult:
    """One retrieval feature per video under ``protocol`` (module docstring); unreadable videos go to ``failed``.

    Clip length, stride / fps and preprocessing (centre crop) come from the model's input spec.
    """
    from videozoo.api import input_spec_of, transforms_for
    from videozoo.data.decode import VideoDecodeError, as_decode_error, open_video
    from videozoo.eval.video_predict import sample_clips, view_batches

    proto = _protocol(protocol)
    spec = input_spec_of(model)
    if spec.channels != "rgb":  # flow streams read stored flow frames, not video files
        raise ValueError(f"retrieval features are read from RGB video files; this model takes {spec.channels} input")
    transform = transforms_for(model)
    model = model.to(device).eval()
    rows, paths, failed = [], [], {}
    for path in tqdm(videos, desc=f"{_name(proto)} features", unit="video", disable=not progress):
        try:
            with as_decode_error(path):  # any failure of this one file: report it, go on with the others
                reader = open_video(path)
                indices = sample_clips(len(reader), sampling=proto.sampling, num_clips=proto.clips, step=proto.step,
                                       num_frames=spec.frames, stride=spec.stride, fps=spec.fps,
                                       native_fps=reader.fps)  # fmt: skip
            feats = torch.cat([
                clip_features(model, views.to(device), features=proto.features).float()  # (n, D)
                for views in view_batches(reader, indices, transform, clips_per_batch=batch_size)
            ])  # (N, D)  # fmt: skip
        except VideoDecodeError as exc:
            failed[str(path)] = str(exc.cause or exc)
            continue
        if proto.normalize_clips:
            feats = F.normalize(feats, dim=1)
        rows.append(feats.mean(dim=0).cpu())
        paths.append(str(path))
    empty = torch.empty(0, getattr(model, "num_features", 0))
    return EmbedResult(features=torch.stack(rows) if rows else empty, paths=paths, failed=failed)


def _name(proto: RetrievalProtocol) -> str:
    return next((k for k, v in RETRIEVAL_PROTOCOLS.items() if v == proto), "custom")


# -- search ----------------------------------------------------------------------------------------------
@torch.no_grad()
def nearest_neighbours(
    query: torch.Tensor,
    gallery: torch.Tensor,
    *,
    k: int,
    query_mean: torch.Tensor | None = None,
    gallery_mean: torch.Tensor | None = None,
    chunk_size: int = 1024,
    gallery_chunk_size: int = 32768,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine top-``k`` of each query in the gallery: similarities and gallery indices, both ``(Q, k)``, best first.

    ``query_mean`` / ``gallery_mean`` ``(D,)`` are subtracted before the cosine (centring). Memory is
    ``chunk_size × gallery_chunk_size`` similarities at a time; inputs stay where they are and are not copied
    whole (each block is centred and normalised on ``device``, default the query's).
    """
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(f"features must be (Q, D) and (M, D), got {tuple(query.shape)} and {tuple(gallery.shape)}")
    device = torch.device(device) if device is not None else query.device
    k = min(k, gallery.shape[0])

    def block(x: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        x = x.to(device, torch.float32)
        return F.normalize(x - mean.to(device, torch.float32) if mean is not None else x, dim=1)

    values, indices = [], []
    for q0 in range(0, query.shape[0], chunk_size):
        q = block(query[q0 : q0 + chunk_size], query_mean)  # (q, D)
        best_v = torch.full((q.shape[0], 0), -torch.inf, device=device)  # running top-k, (q, <=k)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=device)
        for g0 in range(0, gallery.shape[0], gallery_chunk_size):
            sims = q @ block(gallery[g0 : g0 + gallery_chunk_size], gallery_mean).T  # (q, g)
            v, i = sims.topk(min(k, sims.shape[1]), dim=1)  # this block's best
            merged_v, merged_i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i + g0], dim=1)
            best_v, pick = merged_v.topk(min(k, merged_v.shape[1]), dim=1)
            best_i = merged_i.gather(1, pick)
        values.append(best_v.cpu())
        indices.append(best_i.cpu())
    return torch.cat(values), torch.cat(indices)


def _means(query: torch.Tensor, gallery: torch.Tensor, center: str | None) -> tuple[Any, Any]:
    if center not in CENTER_MODES:
        raise ValueError(f"center must be one of {CENTER_MODES}, got {center!r}")
    if center is None:
        return None, None
    gallery_mean = gallery.float().mean(dim=0)  # (D,)
    return (query.float().mean(dim=0) if center == "own" else gallery_mean), gallery_mean


def recall_at_k(
    query_feats: torch.Tensor,
    query_labels: Sequence[int] | torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: Sequence[int] | torch.Tensor,
    *,
    ks: Sequence[int] = KS,
    center: str | None = None,
    chunk_size: int = 1024,
    gallery_chunk_size: int = 32768,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """``{"R@1": ..., "R@5": ...}``: the fraction of queries with a same-class video among their ``k`` nearest.

    Cosine similarity (rows L2-normalised), after centring by ``center`` (``"own"``: CoCLR's code, each set
    minus its own mean; ``"gallery"``: both minus the gallery mean; ``None``). Computed in chunks (see
    :func:`nearest_neighbours`); a ``k`` above the gallery size is clamped to it.
    """
    q_labels = torch.as_tensor(np.asarray(query_labels), dtype=torch.long).reshape(-1)
    g_labels = torch.as_tensor(np.asarray(gallery_labels), dtype=torch.long).reshape(-1)
    if q_labels.shape[0] != query_feats.shape[0] or g_labels.shape[0] != gallery_feats.shape[0]:
        raise ValueError("one label per feature row is needed for queries and gallery")
    query_mean, gallery_mean = _means(query_feats, gallery_feats, center)
    _, top = nearest_neighbours(
        query_feats,
        gallery_feats,
        k=max(ks),
        query_mean=query_mean,
        gallery_mean=gallery_mean,
        chunk_size=chunk_size,
        gallery_chunk_size=gallery_chunk_size,
        device=device,
    )  # (Q, k)
    hits = g_labels[top] == q_labels[:, None]  # (Q, k), best first
    return {f"R@{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def retrieval_from_features(
    query: EmbedResult,
    query_labels: Sequence[int],
    gallery: EmbedResult,
    gallery_labels: Sequence[int],
    *,
    protocol: str | RetrievalProtocol = "coclr",
    ks: Sequence[int] = KS,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """R@k of extracted features under ``protocol``'s centring; ``*_labels`` has one label per row (``.paths``)."""
    proto = _protocol(protocol)
    recalls = recall_at_k(
        query.features,
        query_labels,
        gallery.features,
        gallery_labels,
        ks=ks,
        center=proto.center,
        chunk_size=chunk_size,
        device=device,
    )
    return {
        **recalls,
        "protocol": {"name": _name(proto), **dataclasses.asdict(proto)},
        "num_queries": len(query.paths),
        "num_gallery": len(gallery.paths),
        "feature_dim": int(query.features.shape[1]),
        "failed": {**query.failed, **gallery.failed},
    }


def retrieval_sets(query: Any, gallery: Any, *, limit: int = 0) -> dict[str, list]:
    """The videos and labels of two datasets as the keywords of :func:`evaluate_retrieval`.

    ``query`` / ``gallery``: any :mod:`videozoo.data` dataset (``samples`` with ``path`` and ``label``, and
    ``classes``), e.g. a split's test and train sets: ``UCF101(root, train=False)``, ``UCF101(root, train=True)``.
    Labels are matched by class name, so two folders whose classes differ in order or number still agree (the
    labels index the sorted union of both class lists). ``limit``: only the first N videos of each set (0: all).
    """
    index = {name: i for i, name in enumerate(sorted(set(query.classes) | set(gallery.classes)))}
    sets = {}
    for name, dataset in (("query", query), ("gallery", gallery)):
        samples = dataset.samples[: limit or None]
        sets[f"{name}_videos"] = [s.path for s in samples]
        sets[f"{name}_labels"] = [index[dataset.classes[s.label]] for s in samples]
    return sets


def evaluate_retrieval(
    model: nn.Module,
    *,
    query_videos: Sequence[str | Path],
    query_labels: Sequence[int],
    gallery_videos: Sequence[str | Path],
    gallery_labels: Sequence[int],
    protocol: str | RetrievalProtocol = "coclr",
    ks: Sequence[int] = KS,
    batch_size: int = 16,
    chunk_size: int = 1024,
    device: str | torch.device = "cpu",
    features_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract features of both sets under ``protocol``, then R@k (queries against the gallery).

    ``features_dir``: save ``query.safetensors`` / ``gallery.safetensors`` there and reuse them on the next run
    (as the official CoCLR script caches its features). ``out``: also write the results as JSON.
    """
    from videozoo.eval.metrics import write_json

    sets = {}
    for name, videos, labels in (("query", query_videos, query_labels), ("gallery", gallery_videos, gallery_labels)):
        if len(videos) != len(labels):
            raise ValueError(f"{len(videos)} {name} videos but {len(labels)} labels")
        cached = Path(features_dir) / f"{name}.safetensors" if features_dir is not None else None
        if cached is not None and cached.is_file():
            result = load_features(cached)
        else:
            result = extract_features(
                model, videos, protocol=protocol, batch_size=batch_size, device=device, progress=progress
            )
            if cached is not None:
                save_features(result, cached, model_name=str(getattr(model, "zoo_name", "")))
        label_of = {str(v): int(y) for v, y in zip(videos, labels)}
        sets[name] = (result, [label_of[p] for p in result.paths])
    (query, q_labels), (gallery, g_labels) = sets["query"], sets["gallery"]
    results = retrieval_from_features(
        query, q_labels, gallery, g_labels, protocol=protocol, ks=ks, chunk_size=chunk_size
    )
    results["model"] = getattr(model, "zoo_name", type(model).__name__)
    if out is not None:
        write_json(out, results)
    return results
