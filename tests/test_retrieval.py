"""Retrieval: R@k on a hand-computed gallery, chunked = unchunked, centring, CoCLR / CACL features by hand."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

import videozoo
from videozoo.api import input_spec_of
from videozoo.data.decode import read_frames
from videozoo.data.synthetic import make_synthetic_dataset
from videozoo.eval.features import EmbedResult
from videozoo.eval.retrieval import (
    RetrievalProtocol,
    clip_features,
    evaluate_retrieval,
    extract_features,
    nearest_neighbours,
    recall_at_k,
    retrieval_sets,
)
from videozoo.eval.search import search
from videozoo.eval.video_predict import sample_clips


def tiny(name: str, *, num_classes: int = 0, **spec: object) -> torch.nn.Module:
    """A tiny registered model whose input spec is shrunk too (small crops keep the CPU tests fast)."""
    model = videozoo.create_model(name, num_classes=num_classes).eval()
    model.input_spec = dataclasses.replace(input_spec_of(model), **spec)
    return model


def first_video(root, label: str) -> str:
    return str(sorted((root / label).glob("*.mp4"))[0])


def unit(degrees: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(math.radians(degrees)), norm * math.sin(math.radians(degrees))]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """2 classes × 4 videos of 48 frames at 64²; split 1: 2 test + 2 train videos per class."""
    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, classes=("left", "right"), videos_per_class=4, frames=48, size=(64, 64))


# -- recall on hand-made features -----------------------------------------------------------------------
def test_recall_by_hand() -> None:
    # Gallery directions 0°, 30°, 90°, 180° (labels 0, 1, 1, 2), lengths varied: cosine ignores them.
    gallery = torch.tensor([unit(0, 1.0), unit(30, 5.0), unit(90, 0.2), unit(180, 3.0)])
    gallery_labels = [0, 1, 1, 2]
    # Query at 10° (label 1) ranks 0°, 30°, 90°, 180° -> labels 0, 1, ...: first hit at rank 2.
    # Query at 100° (label 2) ranks 90°, 30°, 180°, 0° -> labels 1, 1, 2: first hit at rank 3.
    # Query at 200° (label 2) ranks 180° first: hit at rank 1.
    # Query at 50° (label 0) ranks 30°, 90°, 0° -> labels 1, 1, 0: first hit at rank 3.
    queries = torch.tensor([unit(10), unit(100, 2.0), unit(200), unit(50)])
    recalls = recall_at_k(queries, [1, 2, 2, 0], gallery, gallery_labels, ks=(1, 2, 3, 4, 50))
    assert recalls == pytest.approx({"R@1": 0.25, "R@2": 0.5, "R@3": 1.0, "R@4": 1.0, "R@50": 1.0})
    values, indices = nearest_neighbours(queries, gallery, k=2)
    assert indices.tolist() == [[0, 1], [2, 1], [3, 2], [1, 2]]
    assert values[0].tolist() == pytest.approx([math.cos(math.radians(10)), math.cos(math.radians(20))])


def test_chunked_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(0)
    query, gallery = torch.randn(37, 16, generator=g), torch.randn(203, 16, generator=g)
    q_labels, g_labels = torch.randint(0, 10, (37,), generator=g), torch.randint(0, 10, (203,), generator=g)
    sims = F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T  # (37, 203): the direct computation
    direct_v, direct_i = sims.topk(20, dim=1)
    for chunk, gallery_chunk in ((5, 17), (1, 3), (1000, 10**6)):
        v, i = nearest_neighbours(query, gallery, k=20, chunk_size=chunk, gallery_chunk_size=gallery_chunk)
        assert torch.equal(i, direct_i)
        assert torch.allclose(v, direct_v, atol=1e-6)
    full = recall_at_k(query, q_labels, gallery, g_labels, chunk_size=10**6, gallery_chunk_size=10**6)
    chunked = recall_at_k(query, q_labels, gallery, g_labels, chunk_size=4, gallery_chunk_size=9)
    assert chunked == full
    hits = g_labels[direct_i] == q_labels[:, None]
    assert full["R@5"] == pytest.approx(hits[:, :5].any(dim=1).float().mean().item())


def test_mean_centring() -> None:
    # Everything sits near m = (0, 10). Seen from the origin the query (1, 10) points exactly like the
    # label-1 video (0.5, 5); seen from m it points like the label-0 video (3, 13) = m + (3, 3).
    gallery = torch.tensor([[3.0, 13.0], [0.5, 5.0], [-3.0, 7.0], [-0.5, 15.0]])  # mean exactly (0, 10)
    query, labels = torch.tensor([[1.0, 10.0]]), [0, 1, 2, 3]
    assert recall_at_k(query, [0], gallery, labels, ks=(1,))["R@1"] == 0.0
    assert recall_at_k(query, [0], gallery, labels, ks=(1,), center="gallery")["R@1"] == 1.0
    # "own" (CoCLR's code): each set minus its own mean, the same as centring by hand
    g = torch.Generator().manual_seed(1)
    q, gal = torch.randn(30, 8, generator=g) + 3, torch.randn(50, 8, generator=g) - 2
    q_labels, g_labels = torch.randint(0, 5, (30,), generator=g), torch.randint(0, 5, (50,), generator=g)
    by_hand = recall_at_k(q - q.mean(dim=0), q_labels, gal - gal.mean(dim=0), g_labels)
    assert recall_at_k(q, q_labels, gal, g_labels, center="own", chunk_size=7) == by_hand
    with pytest.raises(ValueError, match="center"):
        recall_at_k(q, q_labels, gal, g_labels, center="query")


def test_search_ranks_paths() -> None:
    index = EmbedResult(torch.tensor([unit(0), unit(30), unit(90), unit(180)]), ["a.mp4", "b.mp4", "c.mp4", "d.mp4"])
    [hits] = search(torch.tensor(unit(10)), index, k=2, center=False)
    assert [(h.rank, h.path) for h in hits] == [(1, "a.mp4"), (2, "b.mp4")]
    assert hits[0].score == pytest.approx(math.cos(math.radians(10)))
    [hits] = search(torch.tensor([unit(0)]), index, k=2, center=False, exclude=["a.mp4"])  # itself left out
    assert [h.path for h in hits] == ["b.mp4", "c.mp4"]
    with pytest.raises(ValueError, match="index"):
        search(torch.zeros(3), index)


# -- features from videos, checked against a direct computation -----------------------------------------
def test_coclr_window_average_by_hand(synthetic) -> None:
    model = tiny("r3d_18_tiny", frames=16, stride=1, resize=40, crop_size=32)
    path = first_video(synthetic, "left")
    got = extract_features(model, [path], protocol="coclr", batch_size=2, progress=False)
    transform = videozoo.transforms_for(model)
    windows = []
    for start in (0, 15, 30):  # 16-frame windows every 15 frames: 3 fit in 48 frames
        clip = transform(read_frames(path, list(range(start, start + 16))))  # (C, T, H, W)
        with torch.no_grad():
            windows.append(F.normalize(model(clip[None]), dim=1)[0])  # pooled, L2-normalised per window
    expected = torch.stack(windows).mean(dim=0)
    assert got.paths == [path] and got.features.shape == (1, model.num_features)
    assert torch.allclose(got.features[0], expected, atol=1e-5)


def test_pooled_features_ignore_a_head() -> None:
    bare = tiny("r3d_18_tiny", crop_size=32)
    headed = tiny("r3d_18_tiny", num_classes=7, crop_size=32)
    headed.load_state_dict(bare.state_dict(), strict=False)  # same backbone, plus a classifier
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(clip_features(headed, x), bare(x), atol=1e-6)
        assert headed(x).shape == (2, 7)


def test_cacl_conv5_features_by_hand(synthetic) -> None:
    model = tiny("c3d_tiny", resize=40, crop_size=32)  # CACL spec: 16 frames at stride 2
    path = first_video(synthetic, "right")
    starts = sample_clips(48, sampling="linspace", num_clips=3, num_frames=16, stride=2)[:, 0]
    assert starts.tolist() == [0, 8, 17]  # linspace(0, 48 - 31, 3), floored
    assert sample_clips(48, sampling="segments", num_clips=3, num_frames=16, stride=2)[:, 0].tolist() == [0, 5, 11]
    protocol = RetrievalProtocol(features="conv5", sampling="linspace", clips=3, normalize_clips=False, center=None)
    got = extract_features(model, [path], protocol=protocol, progress=False)
    transform = videozoo.transforms_for(model)
    rows = []
    for start in starts.tolist():
        clip = transform(read_frames(path, list(range(start, start + 32, 2))))[None]  # (1, C, 16, 32, 32)
        with torch.no_grad():
            fmap = model.forward_features(clip)  # (1, D, T', H', W')
        rows.append(F.max_pool3d(fmap, kernel_size=(1, 2, 2), stride=(1, 2, 2)).flatten())
    expected = torch.stack(rows).mean(dim=0)
    assert got.features.shape == (1, expected.numel())
    assert torch.allclose(got.features[0], expected, atol=1e-5)


def test_evaluate_retrieval_end_to_end(synthetic, tmp_path) -> None:
    from videozoo.data import UCF101

    ann = synthetic if (synthetic / "classInd.txt").is_file() else synthetic / "ucfTrainTestlist"
    test, train = (UCF101(synthetic, ann, split=1, train=train) for train in (False, True))
    model = tiny("r3d_18_tiny", frames=16, stride=1, resize=40, crop_size=32)
    kwargs = {
        "query_videos": [s.path for s in test.samples] + [str(tmp_path / "missing.mp4")],
        "query_labels": [*test.labels, 0],
        "gallery_videos": [s.path for s in train.samples],
        "gallery_labels": train.labels,
        "features_dir": tmp_path / "features",
        "progress": False,
    }
    results = evaluate_retrieval(model, out=tmp_path / "results.json", **kwargs)
    assert results["num_queries"] == 4 and results["num_gallery"] == 4
    assert list(results["failed"]) == [str(tmp_path / "missing.mp4")]
    recalls = [results[f"R@{k}"] for k in (1, 5, 10, 20, 50)]
    assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls)
    assert recalls[-1] == 1.0  # k clamps to the 4 gallery videos, which hold both classes
    assert json.loads((tmp_path / "results.json").read_text())["R@1"] == results["R@1"]
    assert (tmp_path / "features" / "query.safetensors").is_file()
    again = evaluate_retrieval(model, **kwargs)  # from the cached features
    assert again["R@1"] == results["R@1"] and again["num_queries"] == 4


def test_retrieval_sets_match_labels_by_class_name(synthetic, tmp_path) -> None:
    """A query folder holding only "right" labels it 0; against a left/right gallery it must read 1 (the union)."""
    import shutil

    from videozoo.data import VideoFolder

    (tmp_path / "right").mkdir()
    shutil.copy(first_video(synthetic, "right"), tmp_path / "right" / "clip.mp4")
    query, gallery = VideoFolder(tmp_path), VideoFolder(synthetic)
    assert query.labels == [0] and gallery.classes == ["left", "right"]
    split = retrieval_sets(query, gallery)
    assert split["query_videos"] == [str(tmp_path / "right" / "clip.mp4")] and split["query_labels"] == [1]
    assert split["gallery_videos"] == [s.path for s in gallery.samples]
    assert split["gallery_labels"] == [["left", "right"].index(p.split("/")[-2]) for p in split["gallery_videos"]]
    assert sorted(split["gallery_labels"]) == [0] * 4 + [1] * 4
    short = retrieval_sets(query, gallery, limit=3)
    assert len(short["gallery_videos"]) == 3 and short["query_labels"] == [1]
