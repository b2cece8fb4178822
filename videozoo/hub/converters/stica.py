"""Checkpoints saved by STiCA's official training script (facebookresearch/GDT, ``main_stica.py``).

Paper: Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi. Space-Time Crop & Attend: Improving Cross-modal
Video Representation Learning (STiCA). ICCV 2021. No STiCA weights were released; this converts what the script
writes, ``{epoch, state_dict, optimizer}`` (plus ``amp`` with ``--use_fp16``), where ``state_dict`` is the
DistributedDataParallel-wrapped ``model.Stica_TransformerFMCrop``, every key starting with ``module.``:

====================================  ==================================================================
``video_network.base.*``               R(2+1)D-18 (pre-pool map, no classifier): the backbone, kept
``audio_network.base.*``               ResNet-9 audio network, kept as ``audio_backbone`` (``fc.*`` dropped)
``video_pooling.2.*``                  transformer pooling (``src/transformer.py``; index 2 of
                                       Sequential(AdaptiveAvgPool3d, TransposeSqueeze, TransformerPooling)),
                                       kept as ``pooling``: :class:`~videozoo.heads.TransformerPooling` keeps the
                                       official names. Absent with ``--num_layer 0`` (average pooling)
``mlp_v.*``, ``mlp_a.*``               projection heads, kept as ``video_head`` / ``audio_head`` (GDTHead)
====================================  ==================================================================

The pooling's width, FFN width, depth and value/output projections are read from the weights. The number of
attention heads (``--num_head``) and of time steps the official ``AdaptiveAvgPool3d`` resamples the map to before
attending (``--transformer_time_dim``) are not in the weights: they are read from the checkpoint's ``args`` when it
has them (``main_stica.py`` itself saves none), else taken from the ``heads``/``time_steps`` arguments, else: 4
heads (``main_stica.py:680`` default) and no resampling, the pooling attending over the map's own T steps. That is
what a correctly configured run did: ``TransposeSqueeze`` (``model.py:346``) reshapes the pooled map into
``duration`` steps (4 for ``--num_sec 1``, 30 frames; 8 for ``--num_sec 2``, 60 frames), so ``transformer_time_dim``
must equal the map's T; ``args`` where they differ (the default 4 with ``--num_sec 2``: samples mixed by the
reshape) are refused. ``--positional_emb True`` checkpoints (``pos_embs``, ``pos_ids``) are refused: videozoo's
pooling has no positional embedding, as STiCA's default.
"""

from __future__ import annotations

import re
from typing import Any

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
from videozoo.hub.converters.gdt import take_audio_network, take_projection, take_video_network

__all__ = ["convert_stica"]

TOP_LEVEL = {
    "epoch": "training epoch (recorded)",
    "state_dict": "the model",
    "optimizer": "SGD optimizer state",
    "amp": "apex mixed-precision loss scaler (--use_fp16)",
    "args": "training arguments (argparse.Namespace), when saved with the weights: read for the pooling",
}
OFFICIAL_HEADS = 4  # main_stica.py:680 --num_head default
DURATION = {1: 4, 2: 8, 3: 12, 4: 15}  # model.py:304-315: --num_sec -> the map's time steps (TransposeSqueeze)
_LAYER = re.compile(r"transformer\.(\d+)\.")


def convert_stica(
    checkpoint: Any, *, source: str, heads: int | None = None, time_steps: int | None = None
) -> Converted:
    """Convert a ``main_stica.py`` checkpoint; the pooling's heads and time steps come from its ``args`` if saved,
    else from ``heads``/``time_steps``, else 4 heads and the map's own steps (module docstring)."""
    top = check_top_level(checkpoint, known=TOP_LEVEL, required=["state_dict"], source=source, fmt="STiCA")
    state, had_module = strip_module_prefix(state_dict_of(top["state_dict"], source=source, where="'state_dict'"))
    ledger = KeyLedger(state, source=source, fmt="STiCA", prefix="module." if had_module else "")
    pooling_args = _pooling_args(top.get("args"), source=source, heads=heads, time_steps=time_steps)

    backbone = take_video_network(ledger)
    parts = {
        "audio_backbone": take_audio_network(ledger),
        "pooling": _take_pooling(
            ledger, source=source, heads=pooling_args["heads"], time_steps=pooling_args["time_steps"]
        ),
        "video_head": take_projection(ledger, "mlp_v.", source=source),
        "audio_head": take_projection(ledger, "mlp_a.", source=source),
    }
    ledger.finish()
    return Converted(
        format="stica",
        variant="transformer" if parts["pooling"].config["depth"] else "average-pooling",
        arch="r2plus1d_18",
        state_dict=backbone,
        heads=parts,
        dropped={**ledger.dropped, **top_level_dropped(top, TOP_LEVEL, converted="state_dict")},
        info={"epoch": jsonable(top.get("epoch")), "module_prefix": had_module, "pooling": pooling_args},
        official_names=ledger.names["backbone"],
    )


def _pooling_args(args: Any, *, source: str, heads: int | None, time_steps: int | None) -> dict[str, Any]:
    """Heads and time steps of the pooling, and where each came from: ``args``, the caller, or the default."""
    saved = getattr(args, "state", None) or (args if isinstance(args, dict) else None) or {}
    if not isinstance(saved, dict):
        saved = {}
    out: dict[str, Any] = {}
    if "num_head" in saved:
        out |= {"heads": int(saved["num_head"]), "heads_from": "args.num_head"}
    elif heads is not None:
        out |= {"heads": heads, "heads_from": "given"}
    else:
        out |= {"heads": OFFICIAL_HEADS, "heads_from": "main_stica.py:680 default (not in the weights)"}
    if "transformer_time_dim" in saved:
        steps = int(saved["transformer_time_dim"])
        num_sec = saved.get("num_sec")
        if num_sec in DURATION and DURATION[num_sec] != steps:
            raise ConversionError(
                f"{source}: args.transformer_time_dim={steps} with args.num_sec={num_sec}, whose map has "
                f"{DURATION[num_sec]} steps: the official TransposeSqueeze mixed samples of the batch when it was "
                f"trained (run main_stica.py with --transformer_time_dim {DURATION[num_sec]})"
            )
        out |= {"time_steps": steps, "time_steps_from": "args.transformer_time_dim"}
    elif time_steps is not None:
        out |= {"time_steps": time_steps, "time_steps_from": "given"}
    else:
        out |= {"time_steps": None, "time_steps_from": "the map's own steps (4 for 30 frames, 8 for 60)"}
    return out


def _take_pooling(ledger: KeyLedger, *, source: str, heads: int, time_steps: int | None) -> HeadWeights:
    if ledger.has("video_pooling.2.pos_embs.") or ledger.has("video_pooling.2.pos_ids"):
        raise ConversionError(
            f"{source} was trained with --positional_emb True (video_pooling.2.pos_embs): "
            "videozoo's TransformerPooling has no positional embedding, as STiCA's default"
        )
    pooling = ledger.take({"video_pooling.2.": ""}, what="pooling", required=False)
    layers = sorted({int(m.group(1)) for k in pooling if (m := _LAYER.match(k))})
    if any(not _LAYER.match(k) for k in pooling) or layers != list(range(len(layers))):
        raise ConversionError(
            f"{source}: video_pooling.2.* is not the official TransformerPooling (keys {sorted(pooling)[:6]}...)"
        )
    config: dict[str, Any] = {"depth": len(layers)}
    if layers:
        dim = pooling["transformer.0.mha.q_lin.weight"].shape[0]
        config |= {
            "dim": int(dim),
            "heads": heads,
            "time_steps": time_steps,
            "ffn_dim": int(pooling["transformer.0.ffn.lin1.weight"].shape[0]),
            "value_output_proj": "transformer.0.mha.v_lin.weight" in pooling,
        }
    return HeadWeights(
        builder="videozoo.heads.temporal:TransformerPooling",
        config=config,
        state_dict=pooling,
        description="STiCA's transformer temporal pooling (post-norm, query/key projections, token 0)"
        if layers
        else "average pooling (--num_layer 0)",
    )
