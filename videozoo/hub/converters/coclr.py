"""CoCLR and InfoNCE S3D checkpoints (TengdaHan/CoCLR, ``main_nce.py`` / ``main_coclr.py``).

Paper: Han, Xie, Zisserman. Self-supervised Co-training for Video Representation Learning. NeurIPS 2020.

The released files (``CoCLR-ucf101-rgb-128-s3d-ep182.tar``, ``InfoNCE-ucf101-rgb-128-s3d-ep399.pth.tar``, ...)
are what the training scripts save: ``{epoch, state_dict, best_acc, optimizer, iteration}``, the state dict of the
whole MoCo-style model, without a ``module.`` prefix:

=============================================  =======================================================
``encoder_q.0.*``                               S3D backbone, kept. Every layer appears twice (``Conv_1a.*``
                                                and ``block1.0.*`` are one module): the copies are checked
                                                equal, the named one is kept
``encoder_q.2.*``, ``encoder_q.4.*``            projection head (1x1x1 convs 1024→1024→128), kept as
                                                :class:`~videozoo.heads.CoCLRHead`
``encoder_k.*``                                 momentum (key) encoder: dropped
``queue`` (128, K), ``queue_ptr``               MoCo queue: dropped
``sampler.*`` (CoCLR only)                      the frozen encoder of the *other* modality: dropped
``queue_second``, ``queue_vname``,              CoCLR's second-view queue, source-video ids and (unused)
``queue_label`` (CoCLR only)                    labels: dropped
=============================================  =======================================================

UberNCE (``main_nce.py --model ubernce``, not released) saves ``queue_label`` as its only extra buffer and converts
too. ``optimizer`` (Adam state), ``best_acc`` and ``iteration`` are dropped; ``epoch`` is recorded.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from videozoo.hub.converters.base import (
    ConversionError,
    Converted,
    HeadWeights,
    KeyLedger,
    check_top_level,
    jsonable,
    state_dict_of,
    strip_module_prefix,
    top_level_dropped,
)

__all__ = ["BLOCK_ALIASES", "convert_coclr"]

TOP_LEVEL = {  # what the training scripts save → what it is
    "epoch": "training epoch (recorded)",
    "state_dict": "the model",
    "best_acc": "best pretext-task accuracy",
    "optimizer": "Adam optimizer state",
    "iteration": "training step",
}
# CoCLR's S3D registers each layer a second time inside blockN (an nn.Sequential); index 0 of blocks 2-5 is a
# max-pool, which has no parameters. The named copy is what videozoo's S3D keeps (backbones/s3d.py).
BLOCK_ALIASES = {
    "block1.0": "Conv_1a",
    "block2.1": "Conv_2b",
    "block2.2": "Conv_2c",
    "block3.1": "Mixed_3b",
    "block3.2": "Mixed_3c",
    "block4.1": "Mixed_4b",
    "block4.2": "Mixed_4c",
    "block4.3": "Mixed_4d",
    "block4.4": "Mixed_4e",
    "block4.5": "Mixed_4f",
    "block5.1": "Mixed_5b",
    "block5.2": "Mixed_5c",
}
# Buffers beside the encoders, per training script; exactly one of these sets must be present.
VARIANT_BUFFERS = {
    "infonce": ("queue", "queue_ptr"),
    "ubernce": ("queue", "queue_ptr", "queue_label"),
    "coclr": ("queue", "queue_ptr", "queue_second", "queue_vname", "queue_label"),
}
_BLOCK = re.compile(r"(block\d+\.\d+)\.(.+)")


def convert_coclr(checkpoint: Any, *, source: str) -> Converted:
    """Convert a CoCLR / InfoNCE / UberNCE training checkpoint (see the module docstring for the layout)."""
    top = check_top_level(checkpoint, known=TOP_LEVEL, required=["state_dict"], source=source, fmt="CoCLR/InfoNCE")
    state, had_module = strip_module_prefix(state_dict_of(top["state_dict"], source=source, where="'state_dict'"))
    ledger = KeyLedger(state, source=source, fmt="CoCLR/InfoNCE", prefix="module." if had_module else "")

    buffers = {k for k in state if "." not in k}
    variant = "coclr" if ledger.has("sampler.") else ("ubernce" if "queue_label" in buffers else "infonce")
    expected = set(VARIANT_BUFFERS[variant])
    if buffers != expected:
        raise ConversionError(
            f"{source}: a {variant} checkpoint holds the buffers {sorted(expected)}; this one holds {sorted(buffers)}"
            + (f" (unexpected: {sorted(buffers - expected)})" if buffers - expected else "")
        )

    if ledger.has("encoder_q.0.") and any("gating" in k for k in state if k.startswith("encoder_q.0.")):
        raise ConversionError(
            f"{source}: an S3D-G backbone (--net s3dg: self-gating weights); the registry's CoCLR "
            "models are plain S3D, as the released checkpoints"
        )
    queue_size, dim = (int(n) for n in reversed(state["queue"].shape)) if "queue" in state else (None, None)
    backbone_all = ledger.take({"encoder_q.0.": ""}, what="backbone")
    backbone = _drop_block_copies(backbone_all, source=source)
    ledger.dropped[f"{ledger.prefix}encoder_q.0.block1-5.* ({len(backbone_all) - len(backbone)} tensors)"] = (
        "second copies of the named S3D layers, verified equal"
    )
    head = ledger.take({"encoder_q.2.": "conv1.", "encoder_q.4.": "conv2."}, what="projection head")
    ledger.drop("encoder_k.", why="momentum (key) encoder")
    ledger.drop(["queue", "queue_ptr"], why="MoCo queue of keys and its pointer", exact=True)
    if variant == "coclr":
        ledger.drop("sampler.", why="frozen encoder of the other modality, used to mine positives")
        ledger.drop(
            ["queue_second", "queue_vname", "queue_label"],
            exact=True,
            why="CoCLR's queue of other-modality keys, source-video ids and labels",
        )
    elif variant == "ubernce":
        ledger.drop(["queue_label"], why="UberNCE's queue of labels", exact=True)
    ledger.finish()

    return Converted(
        format="coclr",
        variant=variant,
        arch="s3d",
        state_dict=backbone,
        heads={"projection": _projection_head(head, source=source)},
        dropped={**ledger.dropped, **top_level_dropped(top, TOP_LEVEL, converted="state_dict")},
        info={"epoch": jsonable(top.get("epoch")), "queue_size": queue_size, "dim": dim},  # read from `queue`
        official_names=ledger.names["backbone"],
    )


def _drop_block_copies(backbone: dict[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
    """Keep the named layers; every ``blockN.i.*`` key must be an equal copy of its named twin."""
    kept: dict[str, torch.Tensor] = {}
    for key, value in backbone.items():
        match = _BLOCK.fullmatch(key)
        if match is None:
            kept[key] = value
            continue
        block, rest = match.groups()
        if block not in BLOCK_ALIASES:
            raise ConversionError(f"{source}: encoder_q.0.{key} is not a copy of any named S3D layer")
        twin = f"{BLOCK_ALIASES[block]}.{rest}"
        if twin not in backbone:
            raise ConversionError(f"{source}: encoder_q.0.{key} has no named twin encoder_q.0.{twin}")
        if backbone[twin].shape != value.shape or not torch.equal(backbone[twin], value):
            raise ConversionError(
                f"{source}: encoder_q.0.{key} and encoder_q.0.{twin} are one module in CoCLR's "
                "S3D but differ in this file: it was edited after saving"
            )
    return kept


def _projection_head(head: dict[str, torch.Tensor], *, source: str) -> HeadWeights:
    try:
        hidden, in_dim = head["conv1.weight"].shape[:2]
        out_dim = head["conv2.weight"].shape[0]
    except (KeyError, ValueError):
        raise ConversionError(
            f"{source}: the projection head encoder_q.2/4 has keys {sorted(head)}, expected conv weights and biases"
        ) from None
    return HeadWeights(
        builder="videozoo.heads.projection:CoCLRHead",
        config={"in_dim": int(in_dim), "hidden_dim": int(hidden), "out_dim": int(out_dim)},
        state_dict=head,
        description="CoCLR projection: pool → 1x1x1 conv → ReLU → 1x1x1 conv → L2 (the pretraining embedding)",
    )
