"""Find the nearest videos of a collection: query features against an index written by ``videozoo embed``.

The index is an :class:`~videozoo.eval.features.EmbedResult` (``load_features("features.safetensors")``).
Similarity is the cosine after subtracting the index mean (on by default: pooled features after a ReLU all
point the same way, so raw cosines crowd near 1; CoCLR's retrieval centres for the same reason). Chunked like
:func:`videozoo.eval.retrieval.nearest_neighbours`, so an index of any size is searched in bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from videozoo.eval.features import EmbedResult
from videozoo.eval.retrieval import nearest_neighbours

__all__ = ["SearchHit", "SearchResults", "search", "search_videos"]


@dataclass(frozen=True)
class SearchHit:
    """One result: its rank (1 = nearest), the indexed video's path and its cosine similarity."""

    rank: int
    path: str
    score: float


@dataclass
class SearchResults:
    """What :func:`search_videos` found: the hits of each readable query, and the queries it skipped."""

    hits: dict[str, list[SearchHit]]  # query path -> its hits, best first, in input order
    failed: dict[str, str] = field(default_factory=dict)  # query path -> why it could not be embedded
    padded: dict[str, str] = field(default_factory=dict)  # query path -> note: searched, but mostly padding


def search(
    query_features: torch.Tensor,
    index: EmbedResult,
    *,
    k: int = 10,
    center: bool = True,
    exclude: Sequence[str | None] | None = None,
    chunk_size: int = 1024,
) -> list[list[SearchHit]]:
    """The ``k`` nearest indexed videos of each query, best first: one list per row of ``query_features``.

    ``query_features``: ``(D,)`` or ``(Q, D)``, made by the same model and clip sampling as the index.
    ``exclude``: per query, a path to leave out of its results (the query itself when it is in the index).
    """
    query = query_features.reshape(1, -1) if query_features.ndim == 1 else query_features  # (Q, D)
    if index.features.ndim != 2 or index.features.shape[0] == 0:
        raise ValueError("the index holds no features")
    if query.shape[1] != index.features.shape[1]:
        raise ValueError(
            f"query features are {query.shape[1]}-d but the index is {index.features.shape[1]}-d: "
            "embed the query with the model that built the index"
        )
    excluded = [_norm(p) for p in exclude] if exclude is not None else [None] * query.shape[0]
    if len(excluded) != query.shape[0]:
        raise ValueError(f"{len(excluded)} exclude entries for {query.shape[0]} queries")
    mean = index.features.float().mean(dim=0) if center else None  # (D,) both sides: the index mean
    extra = 1 if any(p is not None for p in excluded) else 0  # room for the dropped self-match
    scores, rows = nearest_neighbours(
        query, index.features, k=k + extra, query_mean=mean, gallery_mean=mean, chunk_size=chunk_size
    )  # (Q, k + extra)
    results = []
    for skip, values, ids in zip(excluded, scores.tolist(), rows.tolist()):
        hits = [(index.paths[i], v) for v, i in zip(values, ids) if skip is None or _norm(index.paths[i]) != skip]
        results.append([SearchHit(rank, path, score) for rank, (path, score) in enumerate(hits[:k], 1)])
    return results


def search_videos(
    model: nn.Module,
    videos: Sequence[str | Path],
    index: EmbedResult,
    *,
    k: int = 10,
    clips: int = 4,
    center: bool = True,
    exclude_self: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SearchResults:
    """Embed ``videos`` as ``videozoo embed`` does (:func:`~videozoo.eval.features.embed_videos`) and search.

    Use the ``clips`` the index was built with. ``exclude_self`` drops a query's own file from its results.
    A query that cannot be read is skipped and listed in ``failed`` (the others are searched); none readable
    raises :class:`~videozoo.data.decode.NoReadableVideoError`, as :func:`~videozoo.eval.features.embed_videos` does.
    """
    from videozoo.eval.features import embed_videos

    queries = embed_videos(model, videos, clips=clips, device=device, progress=progress)
    exclude = list(queries.paths) if exclude_self else None
    hits = search(queries.features, index, k=k, center=center, exclude=exclude)
    return SearchResults(hits=dict(zip(queries.paths, hits)), failed=queries.failed, padded=queries.padded)


def _norm(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.realpath(path)
