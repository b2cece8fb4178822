"""Video-level prediction: clips × crops averaged as a direct loop computes it; failures; the evaluation files."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

import videozoo
from tests.data_fixtures import write_two_stream_video, write_video
from videozoo.api import input_spec_of
from videozoo.data.decode import VideoReader, open_video, read_frames
from videozoo.data.sampling import sliding_windows, uniform_clips
from videozoo.data.synthetic import make_synthetic_dataset
from videozoo.data.transforms import VideoEval
from videozoo.eval.metrics import read_predictions_csv
from videozoo.eval.video_predict import default_average, evaluate_videos, predict_videos, video_scores

SPEC = {"frames": 8, "stride": 2, "resize": 40, "crop_size": 32}


def tiny(name: str = "r3d_18_tiny", *, num_classes: int = 5, **spec: object) -> torch.nn.Module:
    """A tiny registered classifier with a shrunk input spec (small crops keep the CPU tests fast)."""
    model = videozoo.create_model(name, num_classes=num_classes).eval()
    model.input_spec = dataclasses.replace(input_spec_of(model), **{**SPEC, **spec})
    with torch.no_grad():  # larger logits than the near-zero init, so that probabilities and logits differ
        model.reset_head(num_classes)
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(50)
    return model


@pytest.mark.parametrize("average", ["prob", "logit"])
def test_clips_times_crops_equal_a_direct_loop(media, average) -> None:
    model = tiny()
    path = str(media["mp4"])
    # batch_size 4 with 3 crops: one clip per forward pass, so the batching is exercised too
    pred = predict_videos(model, [path], clips=3, crops=3, topk=5, average=average, batch_size=4, progress=False)[0]
    spec = input_spec_of(model)
    crop3 = VideoEval(resize=spec.resize, crop_size=spec.crop_size, mean=spec.mean, std=spec.std, num_crops=3)
    logits = []
    for clip in uniform_clips(len(open_video(path)), num_clips=3, num_frames=8, stride=2):
        for crop in crop3(read_frames(path, clip)):  # (3, C, T, H, W) -> one crop at a time
            with torch.no_grad():
                logits.append(model(crop[None])[0])
    logits = torch.stack(logits)  # (9, K)
    expected = logits.softmax(dim=1).mean(dim=0) if average == "prob" else logits.mean(dim=0)
    assert pred.error is None and pred.num_views == 9 and pred.average == average
    assert torch.allclose(pred.scores, expected, atol=1e-5)
    probs = expected if average == "prob" else expected.softmax(dim=0)
    assert [i for i, _, _ in pred.top] == probs.argsort(descending=True).tolist()
    assert [p for _, _, p in pred.top] == pytest.approx(probs.sort(descending=True).values.tolist(), abs=1e-5)


def test_sliding_windows_and_other_files(media) -> None:
    model = tiny(frames=32, stride=1)
    path = str(media["avi"])  # 164 frames: 32-frame windows every 15 frames start at 0, 15, ..., 120
    scores, views = video_scores(model, path, crops=1, sampling="sliding", step=15, average="prob")
    assert views == len(sliding_windows(164, num_frames=32, step=15)) == 9
    assert scores.shape == (5,) and scores.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_failures_names_and_format(media, tmp_path) -> None:
    model = tiny(num_classes=3)
    model.class_names = ["walk", "run", "jump"]
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    preds = predict_videos(model, [str(bad), str(media["mkv"])], clips=2, crops=1, topk=2, progress=False)
    assert preds[0].scores is None and preds[0].error and "cannot read" in preds[0].format()
    assert preds[1].error is None and len(preds[1].top) == 2
    assert {name for _, name, _ in preds[1].top} <= {"walk", "run", "jump"}
    assert preds[1].format().splitlines()[1].lstrip().startswith("1. ")


def test_needs_a_classifier_and_known_average(media) -> None:
    with pytest.raises(ValueError, match="no classifier"):
        predict_videos(videozoo.create_model("r3d_18_tiny"), [str(media["mp4"])], progress=False)
    with pytest.raises(ValueError, match="average"):
        predict_videos(tiny(), [str(media["mp4"])], average="median", progress=False)
    named = {"coclr_s3d_ucf101_rgb": "prob", "cacl_c3d_ucf101": "logit", "stica_r2plus1d_k400": "logit"}
    for name, average in named.items():
        model = torch.nn.Linear(1, 1)
        model.zoo_name = name
        assert default_average(model) == average


def test_evaluate_writes_csv_png_json(tmp_path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", classes=("left", "right"), videos_per_class=2, frames=24)
    rows = list(csv.DictReader((root / "labels.csv").read_text().splitlines()))
    classes = ["left", "right"]
    paths, labels = [str(root / r["path"]) for r in rows], [classes.index(r["label"]) for r in rows]
    model = tiny(num_classes=2)
    results = evaluate_videos(
        model,
        paths,
        labels,
        class_names=classes,
        clips=2,
        crops=1,
        ks=(1, 2),
        out_dir=tmp_path / "eval",
        progress=False,
    )
    out = tmp_path / "eval"
    predictions = read_predictions_csv(out / "predictions.csv")
    assert [p["path"] for p in predictions] == paths and [p["label"] for p in predictions] == labels
    top1 = sum(p["pred"] == p["label"] for p in predictions) / len(predictions)
    assert results["top1"] == pytest.approx(top1) and results["top2"] == 1.0
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert saved["num_videos"] == 4 and saved["num_failed"] == 0 and set(saved["per_class_accuracy"]) == set(classes)
    assert saved["protocol"] == {"clips": 2, "crops": 1, "sampling": "uniform", "average": "prob"}


def test_any_failure_of_one_video_is_reported_and_the_rest_predicted(media, tmp_path, monkeypatch) -> None:
    """Issue #17: the two-stream file predicts; an IndexError of a file shorter than it claims is its own error."""
    two = write_two_stream_video(tmp_path / "two.mp4")
    liar = write_video(tmp_path / "liar.avi", num_frames=30)
    get_frames = VideoReader.get_frames

    def shorter_than_it_claims(self, indices):
        if self.path == str(liar):
            raise IndexError("frame indices 20..27 outside 0..19")
        return get_frames(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames", shorter_than_it_claims)
    preds = predict_videos(tiny(), [str(liar), str(two), str(media["avi"])], clips=4, crops=1, progress=False)
    assert "IndexError: frame indices 20..27" in preds[0].error and preds[0].scores is None
    assert [p.error for p in preds[1:]] == [None, None] and preds[1].num_views == 4


def test_videos_shorter_than_half_a_clip_are_counted(tmp_path) -> None:
    """8 frames at stride 2 span 15: a 3-frame video supplies 2 of them, the rest is looped padding."""
    short = write_video(tmp_path / "v" / "short.avi", num_frames=3)
    fine = write_video(tmp_path / "v" / "fine.avi", num_frames=20)
    model = tiny(num_classes=2)
    results = evaluate_videos(model, [str(short), str(fine)], [0, 1], clips=2, crops=1, ks=(1,), progress=False)
    assert results["num_padded"] == 1 and list(results["padded"]) == [str(short)]
    assert results["padded"][str(short)].startswith("3 frames supply 2 of the 8 frames")
    assert results["num_videos"] == 2 and results["num_failed"] == 0  # used, not skipped
    pred = predict_videos(model, [str(short)], clips=1, crops=1, progress=False)[0]
    assert "mostly padding: 3 frames supply 2" in pred.format().splitlines()[0]
