"""``videozoo demo``: retrieval by motion with the weights that ship inside videozoo, against random initialisation.

It writes synthetic motion videos (:mod:`videozoo.data.synthetic`, with the settings of the CoCLR smoke data), and
every held-out video (group 1 of each class) looks for its nearest neighbours among the others, twice: with
``coclr_r3d_tiny_synthetic_rgb``, a tiny R3D trained by ``recipes/coclr.py --preset smoke`` and packaged in
``videozoo/assets/``, and with the same architecture at random initialisation. The class is in the motion only and
every video has its own colour cast, so an untrained network finds videos of the same colour; the trained one has
learnt to look at the motion. Prints R@1 and R@5 of both and writes ``retrieval.png`` (for both networks: the
class of every query's nearest neighbour, and R@1 per class) and ``results.json`` into the output folder.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEMO_MODEL = "coclr_r3d_tiny_synthetic_rgb"
# The CoCLR smoke preset's data (recipes/coclr.py, "smoke"): two scenes shared by all classes, two large objects,
# a colour cast per video; group 1 of each class (clips_per_group videos) is held out as the queries.
SMOKE_DATA = dict(frames=10, size=(64, 64), clips_per_group=4, scenes=2, colour_cast=0.6, object_size=(0.22, 0.30),
                  objects=(2, 2))  # fmt: skip
# The weights were trained on seed 0's videos. Another seed draws scenes, objects, casts and motions they never saw.
DEFAULT_SEED = 1
KS = (1, 5)


def run_demo(*, out_dir: Path, device: str = "cpu", seed: int | None = None, videos_per_class: int = 16) -> int:
    """Write the videos, retrieve with both networks, print the table, write the PNG and the JSON; returns 0.

    ``seed`` draws the videos and the random initialisation (default ``DEFAULT_SEED``); ``videos_per_class``
    (groups of 4, the first held out) must be at least 12, see ``make_videos``.
    """
    # 8 x 32 x 32 clips are too small for a thread pool to pay, and on a busy machine threads wait for each other:
    # 7 s with one thread against 46 s with torch's two, on 2 cores shared with other work
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed = DEFAULT_SEED if seed is None else seed
        return _run(out_dir=Path(out_dir), device=device, seed=seed, videos_per_class=videos_per_class)
    finally:
        torch.set_num_threads(previous)


def _run(*, out_dir: Path, device: str, seed: int, videos_per_class: int) -> int:
    import videozoo

    started = time.perf_counter()
    sets = make_videos(out_dir / "clips", seed=seed, videos_per_class=videos_per_class)
    print(f"{len(sets['query_videos'])} held-out query videos, {len(sets['gallery_videos'])} gallery videos of "
          f"{len(sets['classes'])} motion classes in {out_dir / 'clips'} (seed {seed})")  # fmt: skip

    pretrained = videozoo.load(DEMO_MODEL)
    torch.manual_seed(seed)
    models = {"pretrained": pretrained, "random init": videozoo.load(DEMO_MODEL, pretrained=False)}
    results = {name: evaluate(model, sets, device=device) for name, model in models.items()}

    print_table(results, sets)
    png = plot(results, sets, out_dir / "retrieval.png")
    summary = {
        "model": DEMO_MODEL,
        "weights": pretrained.zoo_weights,
        "seed": seed,
        "data": {**SMOKE_DATA, "videos_per_class": videos_per_class, "classes": sets["classes"],
                 "num_queries": len(sets["query_videos"]), "num_gallery": len(sets["gallery_videos"])},
        "results": results,
        "png": str(png),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    out = write_atomic(out_dir / "results.json", (json.dumps(summary, indent=2) + "\n").encode())
    print(f"\nfigure: {png}\nresults: {out} ({summary['seconds']:.0f} s)")
    return 0


def make_videos(root: Path, *, seed: int, videos_per_class: int) -> dict[str, Any]:
    """Write the videos and return the query (held-out group) and gallery sets with their labels."""
    from videozoo.data import UCF101
    from videozoo.data.synthetic import make_synthetic_dataset
    from videozoo.eval.retrieval import retrieval_sets

    # Group g is filmed on scene (g - 1) mod 2. With two groups per class the held-out group 1 and the gallery share
    # no scene, and the tiny network, which has seen two scenes in its life, retrieves no better than random init.
    group = SMOKE_DATA["clips_per_group"]
    if videos_per_class < 3 * group:
        raise ValueError(f"videos_per_class must be at least {3 * group} (three groups of {group}: the held-out group "
                         "and two gallery groups, one on each of the two scenes)")  # fmt: skip
    make_synthetic_dataset(root, videos_per_class=videos_per_class, seed=seed, **SMOKE_DATA)
    queries, gallery = UCF101(root, root, train=False), UCF101(root, root, train=True)
    return {**retrieval_sets(queries, gallery), "classes": sorted(set(queries.classes) | set(gallery.classes))}


def evaluate(model: torch.nn.Module, sets: dict[str, Any], *, device: str) -> dict[str, Any]:
    """R@k, R@1 per class, and ``nearest_class[i][j]``: how many queries of class i have a nearest video of class j."""
    from videozoo.eval.retrieval import RetrievalProtocol, extract_features, nearest_neighbours, recall_at_k

    # recipes/coclr.py's evaluation: 4 uniform clips per video, each L2-normalised, averaged; each set centred
    protocol = RetrievalProtocol(sampling="uniform", clips=4, normalize_clips=True, center="own")
    feats = {s: extract_features(model, sets[f"{s}_videos"], protocol=protocol, device=device, progress=False)
             for s in ("query", "gallery")}  # fmt: skip
    for s, result in feats.items():
        if result.failed:  # freshly written files: a failure here is a bug, not a bad video to skip
            raise RuntimeError(f"could not read {len(result.failed)} {s} videos: {result.failed}")
    q_labels, g_labels = torch.tensor(sets["query_labels"]), torch.tensor(sets["gallery_labels"])
    query, gallery = feats["query"].features, feats["gallery"].features
    recalls = recall_at_k(query, q_labels, gallery, g_labels, ks=KS, center="own")
    _, top = nearest_neighbours(query, gallery, k=1, query_mean=query.mean(dim=0), gallery_mean=gallery.mean(dim=0))
    nearest = g_labels[top[:, 0]]  # (Q,) the class of each query's nearest gallery video (same centring)
    num_classes = len(sets["classes"])
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long).index_put_(
        (q_labels, nearest), torch.ones_like(q_labels), accumulate=True)  # fmt: skip
    per_class = {c: (confusion[i, i] / confusion[i].sum()).item() for i, c in enumerate(sets["classes"])}
    return {**recalls, "per_class_R@1": per_class, "nearest_class": confusion.tolist()}


def print_table(results: dict[str, dict[str, Any]], sets: dict[str, Any]) -> None:
    import videozoo

    chance = 1 / len(sets["classes"])
    print(f"\n{DEMO_MODEL}: {videozoo.model_info(DEMO_MODEL)['description']}.")
    print("retrieval by motion, held-out queries against the gallery:")
    print(f"  {'weights':<13}" + "".join(f"{f'R@{k}':>8}" for k in KS))
    for name, r in results.items():
        print(f"  {name:<13}" + "".join(f"{r[f'R@{k}']:8.3f}" for k in KS))
    print(f"  (R@1 by chance: {chance:.3f}; R@k: a video of the query's class among its k nearest)")


def plot(results: dict[str, dict[str, Any]], sets: dict[str, Any], path: Path) -> Path:
    """Nearest-neighbour classes of both networks side by side, then R@1 per class; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    classes = sets["classes"]
    fig = Figure(figsize=(15, 4.8), dpi=100)
    FigureCanvasAgg(fig)  # the Agg canvas directly: no display needed, the global backend untouched
    axes = fig.subplots(1, 3)
    for ax, (name, r) in zip(axes, results.items()):
        draw_confusion(ax, r["nearest_class"], classes, title=f"{name}: R@1 {r['R@1']:.2f}")
    x = np.arange(len(classes))
    for i, (name, r) in enumerate(results.items()):
        axes[2].bar(x + (i - 0.5) * 0.4, [r["per_class_R@1"][c] for c in classes], width=0.4, label=name)
    axes[2].axhline(1 / len(classes), color="grey", linestyle=":", label="chance")
    axes[2].set_xticks(x, classes, rotation=45, ha="right")
    axes[2].set(ylim=(0, 1.15), ylabel="R@1", title="R@1 per class of the held-out queries")
    axes[2].legend(loc="upper center", ncol=3, fontsize=8)
    fig.suptitle(f"{DEMO_MODEL} (trained by the CoCLR smoke recipe) against the same network at random init")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return write_atomic(path, buffer.getvalue())


def draw_confusion(ax: Any, counts: list[list[int]], classes: list[str], *, title: str) -> None:
    """Rows: the query's class; columns: the class of its nearest gallery video. All on the diagonal = R@1 1."""
    counts = np.asarray(counts)
    top = max(counts.sum(axis=1).max(), 1)  # a full row: every query of the class lands on one class
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color="white" if n > top / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(title=title, xlabel="class of the nearest gallery video", ylabel="held-out query's class")


def write_atomic(path: Path, data: bytes) -> Path:
    """Write through a temporary sibling and a rename, so an interrupted demo never leaves half a PNG or JSON.

    Not ``tempfile.mkstemp``: its mode 0600 would make these two files unreadable to others, unlike the videos.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed
    return path
