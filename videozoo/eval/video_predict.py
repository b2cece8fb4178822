"""Video-level prediction: N clips × M spatial crops per video, scores averaged as each paper did.

What the official test code averages (read in the released repositories):

* CoCLR (``TengdaHan/CoCLR``, ``eval/main_classifier.py``, ``test_10crop``): softmax probabilities, over all
  sliding windows (32 frames, step ``32 // 2 - 1 = 15``) and then over the 10 crops → ``average="prob"``.
* CACL (``guoshengcv/CACL``, ``train_finetune.py``, ``test``): raw logits over 10 clips whose starts are
  ``np.linspace(0, n - 32, 10)``, centre crop 112 → ``average="logit"``, ``sampling="linspace"``.
* STiCA / GDT (``facebookresearch/GDT``, ``eval_video.py`` ``evaluate`` + ``utils.py``
  ``aggregrate_video_accuracy``): the dict is called ``softmaxes`` but holds the raw model outputs, so logits
  are averaged over 10 clips × 3 crops; clip ``i`` starts at ``int(delta * i / 10)``, ``delta = n - clip``
  (``datasets/decoder.py``) → ``average="logit"``, ``sampling="segments"``.

:data:`TEST_PROTOCOLS` holds these as keyword sets; ``average=None`` picks the model's own paper's rule
(:func:`default_average`). Averaging over clips and crops together equals averaging per crop, then over
crops, because every crop sees the same clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "AVERAGES",
    "SAMPLINGS",
    "TEST_PROTOCOLS",
    "VideoPrediction",
    "default_average",
    "evaluate_videos",
    "predict_videos",
    "sample_clips",
    "video_scores",
    "view_batches",
]

AVERAGES = ("prob", "logit")
SAMPLINGS = ("uniform", "linspace", "segments", "sliding")
TEST_PROTOCOLS: dict[str, dict[str, Any]] = {
    "coclr": {"sampling": "sliding", "step": 15, "crops": 10, "average": "prob"},  # main_classifier.py
    "cacl": {"sampling": "linspace", "clips": 10, "crops": 1, "average": "logit"},  # train_finetune.py
    "stica": {"sampling": "segments", "clips": 10, "crops": 3, "average": "logit"},  # GDT eval_video.py
}
_METHOD_AVERAGE = {"coclr": "prob", "infonce": "prob", "cacl": "logit", "stica": "logit", "gdt": "logit"}


def default_average(model: nn.Module) -> str:
    """The averaging of the paper the model comes from (name prefix); ``"prob"`` for anything else.

    ``"prob"`` for unknown models follows mmaction2/SlowFast, which average softmax scores.
    """
    method = str(getattr(model, "zoo_name", "")).split("_", 1)[0]
    return _METHOD_AVERAGE.get(method, "prob")


# -- clips -----------------------------------------------------------------------------------------------
def sample_clips(
    num_video_frames: int,
    *,
    sampling: str = "uniform",
    num_clips: int = 10,
    num_frames: int = 16,
    stride: int = 1,
    fps: float | None = None,
    native_fps: float | None = None,
    step: int = 15,
) -> np.ndarray:
    """Frame indices ``(N, T)`` of the test clips of one video.

    ``sampling``:

    * ``"uniform"``: ``num_clips`` clips centred in equal segments (mmaction2; :func:`~videozoo.data.uniform_clips`);
    * ``"linspace"``: starts ``linspace(0, last_start, num_clips)``, first and last clip at the video's ends (CACL;
      the official last start is ``n - frames·stride``, one frame before ours when ``stride`` > 1);
    * ``"segments"``: starts ``floor(last_start · i / num_clips)`` (GDT / STiCA);
    * ``"sliding"``: every window ``step`` frames apart, ``num_clips`` ignored (CoCLR;
      :func:`~videozoo.data.sliding_windows`).

    A video shorter than one clip gives clips from frame 0, padded by looping.
    """
    from videozoo.data.sampling import clip_indices, clip_span, sliding_windows, uniform_clips

    kw = {"num_frames": num_frames, "stride": stride, "fps": fps, "native_fps": native_fps}
    if sampling == "uniform":
        return uniform_clips(num_video_frames, num_clips=num_clips, **kw)
    if sampling == "sliding":
        return sliding_windows(num_video_frames, step=step, **kw)
    last = max(0, num_video_frames - clip_span(num_frames, stride=stride, fps=fps, native_fps=native_fps))
    if sampling == "linspace":
        starts = np.floor(np.linspace(0, last, num_clips) + 1e-9).astype(np.int64)
    elif sampling == "segments":
        starts = (last * np.arange(num_clips)) // num_clips
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return np.stack([clip_indices(num_video_frames, start=int(s), **kw) for s in starts])


def view_batches(
    reader: Any, indices: np.ndarray, transform: Callable[[torch.Tensor], torch.Tensor], *, clips_per_batch: int
) -> Iterator[torch.Tensor]:
    """Float batches ``(n·M, C, T, H, W)`` of the clips at ``indices`` ``(N, T)``, each in its M crops.

    Decodes ``clips_per_batch`` clips at a time so that a long video's windows never sit in memory together.
    Rows are clip-major: clip 0's M crops, then clip 1's. Any failure to read or preprocess the clips is a
    :class:`~videozoo.data.VideoDecodeError` naming the file, so callers looping over videos report it and go on.
    """
    from videozoo.data.decode import as_decode_error

    for first in range(0, len(indices), clips_per_batch):
        chunk = indices[first : first + clips_per_batch]  # (n, T)
        with as_decode_error(reader.path):
            frames = reader.get_frames(chunk.reshape(-1))  # (n·T, C, H, W) uint8
            clips = rearrange(frames, "(n t) c h w -> n t c h w", n=len(chunk))
            views = torch.stack([transform(clip) for clip in clips])  # (n, M, C, T, H, W), or (n, C, T, H, W)
        if views.ndim == 5:
            views = views[:, None]
        yield rearrange(views, "n m c t h w -> (n m) c t h w")


# -- prediction ------------------------------------------------------------------------------------------
def _check_classifier(model: nn.Module, average: str | None) -> str:
    if not getattr(model, "num_classes", 0):
        raise ValueError(
            "the model has no classifier head (num_classes = 0): load a fine-tuned model, or use "
            "videozoo.eval.features.embed_videos / `videozoo embed` for features"
        )
    average = average or default_average(model)
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    return average


@torch.inference_mode()
def video_scores(
    model: nn.Module,
    path: str | Path,
    *,
    clips: int = 10,
    crops: int = 3,
    sampling: str = "uniform",
    step: int = 15,
    average: str | None = None,
    batch_size: int = 30,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, int]:
    """One video's averaged scores ``(K,)`` and the number of views (clips × crops) averaged.

    ``average="prob"`` averages softmax probabilities, ``"logit"`` the raw logits (module docstring: who does
    which). Clip length, stride / fps and preprocessing come from the model's input spec; ``transform`` replaces
    the preprocessing (it must give ``crops`` crops). Raises :class:`~videozoo.data.VideoDecodeError` for any
    failure of the file (see :func:`view_batches`).
    """
    from videozoo.api import input_spec_of, transforms_for
    from videozoo.data.decode import as_decode_error, open_video

    average = _check_classifier(model, average)
    spec = input_spec_of(model)
    transform = transform or transforms_for(model, num_crops=crops)
    with as_decode_error(path):
        reader = open_video(path)
        indices = sample_clips(len(reader), sampling=sampling, num_clips=clips, num_frames=spec.frames,
                               stride=spec.stride, fps=spec.fps, native_fps=reader.fps, step=step)  # fmt: skip
    outputs = [
        model(views.to(device)).float()  # (n·M, K)
        for views in view_batches(reader, indices, transform, clips_per_batch=max(1, batch_size // crops))
    ]
    logits = torch.cat(outputs)  # (N·M, K)
    scores = logits.softmax(dim=1) if average == "prob" else logits
    return scores.mean(dim=0).cpu(), logits.shape[0]


@dataclass
class VideoPrediction:
    """The prediction for one video.

    ``scores``: averaged probabilities or logits ``(K,)`` (``average`` says which), ``None`` if the video could
    not be read (``error`` says why). ``top``: ``(class index, class name, probability)``, best first; with
    logit averaging the probability is the softmax of the averaged logits. ``padded``: set when the video
    supplies less than half of a clip's frames, so that its clips are mostly padding (it says how many).
    """

    path: str
    scores: torch.Tensor | None
    average: str
    num_views: int = 0
    top: list[tuple[int, str, float]] = field(default_factory=list)
    error: str | None = None
    padded: str | None = None

    def format(self) -> str:
        """Human-readable lines: the path, then one line per top class."""
        if self.error is not None:
            return f"{self.path}: cannot read ({self.error})"
        lines = [f"{self.path}  ({self.num_views} views, {self.average} averaged)"]
        if self.padded:
            lines[0] += f"  [mostly padding: {self.padded}]"
        lines += [f"  {rank}. {name:<30} {prob:7.2%}" for rank, (_, name, prob) in enumerate(self.top, 1)]
        return "\n".join(lines)


def predict_videos(
    model: nn.Module,
    paths: Sequence[str | Path],
    *,
    clips: int = 10,
    crops: int = 3,
    topk: int = 5,
    average: str | None = None,
    sampling: str = "uniform",
    step: int = 15,
    batch_size: int = 30,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> list[VideoPrediction]:
    """Top classes of a fine-tuned model for each video, in input order.

    A video that fails in any way (missing, unreadable, shorter than its header says) carries ``error`` and the
    others go on; one whose clips are mostly padding carries ``padded``. Class names come from
    ``model.class_names`` (set by :func:`videozoo.load` from the saved config), else indices. Defaults: 10
    uniform clips × 3 crops (STiCA's test); see :data:`TEST_PROTOCOLS` for each paper's.
    """
    from videozoo.data.decode import VideoDecodeError

    average = _check_classifier(model, average)
    model = model.to(device).eval()
    names = getattr(model, "class_names", None)
    results = []
    for path in tqdm(paths, desc="predicting", unit="video", disable=not progress):
        try:
            scores, views = video_scores(
                model,
                path,
                clips=clips,
                crops=crops,
                sampling=sampling,
                step=step,
                average=average,
                batch_size=batch_size,
                device=device,
            )
        except VideoDecodeError as exc:
            results.append(VideoPrediction(str(path), None, average, error=str(exc.cause or exc)))
            continue
        probs = scores if average == "prob" else scores.softmax(dim=0)
        top = probs.topk(min(topk, probs.shape[0]))
        results.append(VideoPrediction(
            str(path), scores, average, views,
            [(i, names[i] if names else str(i), p) for p, i in zip(top.values.tolist(), top.indices.tolist())],
            padded=_short_clip_note(model, path),
        ))  # fmt: skip
    return results


def _short_clip_note(model: nn.Module, path: str | Path) -> str | None:
    """Whether the video's clips for ``model`` are mostly padding (``None`` if not); the reader is cached."""
    from videozoo.api import input_spec_of
    from videozoo.data.decode import open_video
    from videozoo.data.sampling import short_clip_note

    spec, reader = input_spec_of(model), open_video(path)
    return short_clip_note(len(reader), num_frames=spec.frames, stride=spec.stride, fps=spec.fps,
                           native_fps=reader.fps)  # fmt: skip


def evaluate_videos(
    model: nn.Module,
    paths: Sequence[str | Path],
    labels: Sequence[int],
    *,
    class_names: Sequence[str] | None = None,
    clips: int = 10,
    crops: int = 3,
    average: str | None = None,
    sampling: str = "uniform",
    step: int = 15,
    ks: Sequence[int] = (1, 5),
    batch_size: int = 30,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Video-level accuracy of a fine-tuned model on labelled videos: top-k, mean and per-class accuracy.

    With ``out_dir``: ``predictions.csv``, ``confusion_matrix.png`` and ``results.json`` are written there.
    Unreadable videos are listed under ``"failed"`` and left out of the accuracy (a published number counts
    every test video: check ``num_failed``); videos whose clips are mostly padding are counted in
    ``num_padded`` and listed under ``"padded"``. From a dataset: ``paths=[s.path for s in ds.samples]``,
    ``labels=ds.labels``, ``class_names=ds.classes``. Not one readable video raises
    :class:`~videozoo.data.decode.NoReadableVideoError`.
    """
    from videozoo.data.decode import NoReadableVideoError
    from videozoo.eval import metrics

    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} videos but {len(labels)} labels")
    predictions = predict_videos(
        model,
        paths,
        clips=clips,
        crops=crops,
        topk=max(ks),
        average=average,
        sampling=sampling,
        step=step,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    kept = [(p, y) for p, y in zip(predictions, labels) if p.scores is not None]
    if not kept:
        raise NoReadableVideoError(f"none of the {len(paths)} videos could be read")
    scores = torch.stack([p.scores for p, _ in kept])  # (N, K)
    truth = [int(y) for _, y in kept]
    names = list(class_names) if class_names is not None else getattr(model, "class_names", None)
    results = {
        **metrics.classification_report(scores, truth, class_names=names, ks=ks),
        "protocol": {"clips": clips, "crops": crops, "sampling": sampling, "average": predictions[0].average},
        "model": getattr(model, "zoo_name", type(model).__name__),
        "num_failed": len(predictions) - len(kept),
        "failed": {p.path: p.error for p in predictions if p.error is not None},
        "num_padded": sum(p.padded is not None for p in predictions),
        "padded": {p.path: p.padded for p in predictions if p.padded is not None},
    }
    if out_dir is not None:
        out = Path(out_dir)
        video_paths = [p.path for p, _ in kept]
        metrics.write_predictions_csv(
            out / "predictions.csv", paths=video_paths, scores=scores, labels=truth, class_names=names, topk=max(ks)
        )
        matrix = metrics.confusion_matrix(scores.argmax(dim=1), truth, num_classes=scores.shape[1])
        metrics.plot_confusion_matrix(
            matrix,
            out / "confusion_matrix.png",
            class_names=names,
            title=f"{results['model']}: top-1 {results['top1']:.1%}",
        )
        metrics.write_json(out / "results.json", results)
    return results
