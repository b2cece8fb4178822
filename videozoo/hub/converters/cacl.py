"""Checkpoints saved by CACL's official training script (guoshengcv/CACL, ``train_pretrain.py``).

Paper: Guo et al. Cross-Architecture Self-supervised Video Representation Learning (CACL). CVPR 2022. No weights
were released; the script saves ``moco.state_dict()`` itself (no wrapper dict, no optimizer), the model being
``models/vmoco_with_transformer.py``'s ``MoCo_Transformer`` under DistributedDataParallel, so every key starts
with ``module.``:

=========================================  ==============================================================
``encoder_q.base_network.*``                the 3D CNN (C3D, R3D or R(2+1)D in VCOP's names, which videozoo
                                            keeps): the backbone, kept
``encoder_q.contrast_fc1.*``                linear 1024→128 on the two clips' features: ``contrast_head``
``encoder_q.fc7.*``, ``encoder_q.fc8.*``    shuffle-degree classifier 1024→512→16: ``order_head``
``encoder_k.*``                             momentum copy of the CNN and its heads: dropped
``encoder_transformer.*``,                  the video-transformer branch (frozen ResNet-50 per frame, 6 ViT
``encoder_transformer_k.*``                 blocks) and its momentum copy: dropped
``queue`` (128, 6400), ``queue_ptr``        MoCo queue: dropped
=========================================  ==============================================================

Which CNN it is follows from the first layer's keys (``conv1.weight`` with a bias: C3D;
``conv1.temporal_spatial_conv``: R3D; ``conv1.spatial_conv``: R(2+1)D).
"""

from __future__ import annotations

from typing import Any

from videozoo.hub.converters.base import (
    ConversionError,
    Converted,
    HeadWeights,
    KeyLedger,
    state_dict_of,
    strip_module_prefix,
)

__all__ = ["convert_cacl"]

_ARCH_BY_FIRST_KEY = {
    "conv1.temporal_spatial_conv.weight": "r3d",
    "conv1.spatial_conv.weight": "r21d",
    "conv1.bias": "c3d",  # C3D's convs keep their bias; the ResNets' have none
}


def convert_cacl(checkpoint: Any, *, source: str) -> Converted:
    """Convert a CACL ``train_pretrain.py`` checkpoint (see the module docstring for the layout)."""
    state, had_module = strip_module_prefix(state_dict_of(checkpoint, source=source, where="the checkpoint"))
    ledger = KeyLedger(state, source=source, fmt="CACL", prefix="module." if had_module else "")

    queue = state.get("queue")
    shapes = {"queue_size": int(queue.shape[1]), "dim": int(queue.shape[0])} if queue is not None else {}
    backbone = ledger.take({"encoder_q.base_network.": ""}, what="backbone")
    arch = next((a for key, a in _ARCH_BY_FIRST_KEY.items() if key in backbone), None)
    if arch is None:
        raise ConversionError(
            f"{source}: encoder_q.base_network.* is none of CACL's C3D, R3D or R(2+1)D "
            f"(its first keys: {sorted(backbone)[:4]})"
        )
    contrast = ledger.take({"encoder_q.contrast_fc1.": "proj."}, what="contrast head")
    order = ledger.take({"encoder_q.fc7.": "fc1.", "encoder_q.fc8.": "fc2."}, what="shuffle-degree head")
    ledger.drop("encoder_k.", why="momentum (key) copy of the CNN and its heads")
    ledger.drop("encoder_transformer.", why="video-transformer branch (frame ResNet-50 + ViT blocks)")
    ledger.drop("encoder_transformer_k.", why="momentum copy of the video-transformer branch")
    ledger.drop(["queue", "queue_ptr"], exact=True, why="MoCo queue of CNN and transformer keys and its pointer")
    ledger.finish()

    try:
        heads = {
            "contrast_head": HeadWeights(
                builder="videozoo.heads.projection:MLPHead",
                config={
                    "in_dim": int(contrast["proj.weight"].shape[1]),
                    "out_dim": int(contrast["proj.weight"].shape[0]),
                },
                state_dict=contrast,
                description="CACL contrastive embedding: [f(clip), f(shuffled clip)] → linear → L2",
            ),
            "order_head": HeadWeights(
                builder="videozoo.heads.projection:MLPHead",
                config={
                    "in_dim": int(order["fc1.weight"].shape[1]),
                    "hidden_dim": int(order["fc1.weight"].shape[0]),
                    "out_dim": int(order["fc2.weight"].shape[0]),
                    "normalize": False,
                },
                state_dict=order,
                description="CACL shuffle-degree logits: [f(clip), f(shuffled clip)] → linear → ReLU → linear",
            ),
        }
    except (KeyError, ValueError):
        raise ConversionError(f"{source}: encoder_q.contrast_fc1/fc7/fc8 are not CACL's linear heads") from None
    return Converted(
        format="cacl",
        variant=arch,
        arch=arch,
        state_dict=backbone,
        heads=heads,
        dropped=ledger.dropped,
        info={"module_prefix": had_module, **shapes},
        official_names=ledger.names["backbone"],
    )
