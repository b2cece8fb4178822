"""``videozoo demo``: the zoo's main job on an embedded default that needs no download.

Lists the zoo, generates a few short synthetic videos (moving shapes whose motion is the label),
decodes them and embeds them with a zoo backbone, then prints what a user needs to see: the
models, the input spec, the features and how similar same-motion clips are.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

DEMO_MODEL = "r2plus1d_18"


def run_demo(*, out_dir: Path, device: str = "cpu") -> int:
    import videozoo
    from videozoo.data.synthetic import make_synthetic_dataset
    from videozoo.eval.features import embed_videos, save_features

    pretrained = videozoo.list_models(pretrained=True)
    backbones = videozoo.list_models(pretrained=False)
    print(f"videozoo {videozoo.__version__}: {len(pretrained)} pretrained models, {len(backbones)} backbones")
    for name in pretrained:
        info = videozoo.model_info(name)
        print(f"  {name:<24} {info['weights_status']:<32} {info['input_spec_summary']}")
    print(f"  backbones: {', '.join(backbones)}")

    root = make_synthetic_dataset(
        out_dir / "clips", classes=("left", "right"), videos_per_class=2, frames=32, size=(64, 64), seed=0
    )
    videos = sorted(root.glob("*/*.mp4"))
    print(f"\ngenerated {len(videos)} synthetic videos in {root} (classes: left, right)")

    torch.manual_seed(0)
    model = videozoo.load(DEMO_MODEL, pretrained=False).eval()
    print(
        f"embedding them with {DEMO_MODEL} ({videozoo.model_info(DEMO_MODEL)['input_spec_summary']}); "
        "random weights: no weights are published yet, `videozoo info NAME` says how to get them"
    )
    start = time.perf_counter()
    result = embed_videos(model, videos, clips=2, device=device, progress=False)
    seconds = time.perf_counter() - start
    out = save_features(result, out_dir / "features.safetensors", model_name=DEMO_MODEL)
    feats = torch.nn.functional.normalize(result.features, dim=1)
    print(f"features: {tuple(result.features.shape)} in {seconds:.1f} s -> {out}")
    print("cosine similarity between the clips:")
    labels = [p.parent.name for p in videos]
    for i, row in enumerate(feats @ feats.T):
        print(f"  {labels[i]:>5} " + " ".join(f"{v:6.3f}" for v in row.tolist()))
    return 0
