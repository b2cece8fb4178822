"""GDT's released R(2+1)D-18 checkpoints ``gdt_K400.pth``, ``gdt_HT100M.pth``, ``gdt_IG65M.pth``.

Paper: Patrick, Asano, Kuznetsova, Fong, Henriques, Zweig, Vedaldi. On Compositions of Transformations in
Contrastive Self-Supervised Learning (GDT). ICCV 2021.

``main_gdt.py`` saves ``{model, optimizer, lr_scheduler, epoch, args}`` (``utils.save_checkpoint``), ``model``
being the state dict of ``model.GDT`` (audio-visual) or ``model.TextVid_GDT`` (video-text, the HowTo100M script),
without ``module.``:

==========================================  ===========================================================
``video_network.base.*``                     R(2+1)D-18 in torchvision's names: the backbone, kept
                                             (``fc.*``, torchvision's classifier, dropped if present:
                                             GDT replaces it by an identity)
``audio_network.base.*`` (audio-visual)      ResNet-9 audio network, kept as ``audio_backbone``;
                                             its unused 1000-way ``fc.*`` is dropped
``mlp_v.*``, ``mlp_a.*``                     projection heads (``MLP``: weights at ``block_forward.{2,4,8}``,
                                             or one ``nn.Linear`` with ``--use_mlp False``), kept as
                                             ``video_head`` / ``audio_head``
``text_network.*``, ``mlp_t.*`` (video-text) word2vec text encoder and its head: dropped (no text tower)
==========================================  ===========================================================

``optimizer`` (SGD state), ``lr_scheduler`` (a dict holding the wrapped scheduler *object*, which pickles the SGD
optimizer object with it) and ``args`` (an ``argparse.Namespace``) are dropped; they load through inert stand-ins
(see :mod:`videozoo.hub.converters.base`). ``epoch`` and the model-defining arguments are recorded.
"""

from __future__ import annotations

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

__all__ = ["convert_gdt", "take_audio_network", "take_projection", "take_video_network"]

TOP_LEVEL = {
    "model": "the model",
    "optimizer": "SGD optimizer state",
    "lr_scheduler": "LR scheduler state (holds a pickled scheduler and optimizer object)",
    "epoch": "training epoch (recorded)",
    "args": "training arguments (argparse.Namespace)",
}
# Arguments of main_gdt.py that define the saved model; recorded in config.json.
MODEL_ARGS = ("model", "vid_base_arch", "aud_base_arch", "use_mlp", "dataset", "num_sec", "clip_len", "target_fps")


def convert_gdt(checkpoint: Any, *, source: str) -> Converted:
    """Convert a GDT release / ``main_gdt.py`` checkpoint (see the module docstring for the layout)."""
    top = check_top_level(checkpoint, known=TOP_LEVEL, required=["model"], source=source, fmt="GDT")
    state, had_module = strip_module_prefix(state_dict_of(top["model"], source=source, where="'model'"))
    ledger = KeyLedger(state, source=source, fmt="GDT", prefix="module." if had_module else "")

    backbone = take_video_network(ledger)
    heads = {"video_head": take_projection(ledger, "mlp_v.", source=source)}
    if ledger.has("audio_network."):
        variant = "audio-visual"
        heads["audio_backbone"] = take_audio_network(ledger)
        heads["audio_head"] = take_projection(ledger, "mlp_a.", source=source)
    elif ledger.has("text_network."):
        variant = "video-text"
        ledger.drop("text_network.", why="word2vec text encoder of the video-text model (videozoo has no text tower)")
        ledger.drop("mlp_t.", why="projection head of the text encoder")
    else:
        raise ConversionError(
            f"{source}: a GDT checkpoint holds audio_network.* (audio-visual) or text_network.* "
            "(video-text) beside the video network; this one holds neither"
        )
    ledger.finish()

    args = getattr(top.get("args"), "state", None) or {}
    info = {"epoch": jsonable(top.get("epoch"))}
    if isinstance(args, dict):
        info["training_args"] = {k: jsonable(args[k]) for k in MODEL_ARGS if k in args}
    return Converted(
        format="gdt",
        variant=variant,
        arch="r2plus1d_18",
        state_dict=backbone,
        heads=heads,
        dropped={**ledger.dropped, **top_level_dropped(top, TOP_LEVEL, converted="model")},
        info=info,
        official_names=ledger.names["backbone"],
    )


# ------------------------------------------------------------------------------------------------
# parts shared with STiCA, whose model (Stica_TransformerFMCrop) has the same networks and heads
# ------------------------------------------------------------------------------------------------
def take_video_network(ledger: KeyLedger) -> dict[str, torch.Tensor]:
    """``video_network.base.*``: R(2+1)D-18 with torchvision's names, which videozoo's ``r2plus1d_18`` keeps."""
    ledger.drop(
        ["video_network.base.fc.weight", "video_network.base.fc.bias"],
        exact=True,
        required=False,
        why="torchvision's classifier, replaced by an identity in GDT's forward",
    )
    return ledger.take({"video_network.base.": ""}, what="backbone")


def take_audio_network(ledger: KeyLedger) -> HeadWeights:
    """``audio_network.base.*``: the ResNet-9 audio network (``backbones/audio.py``), without its unused ``fc``."""
    ledger.drop(
        ["audio_network.base.fc.weight", "audio_network.base.fc.bias"],
        exact=True,
        required=False,
        why="the audio ResNet's 1000-way classifier, never applied",
    )
    audio = ledger.take({"audio_network.base.": ""}, what="audio network")
    return HeadWeights(
        builder="videozoo.backbones.audio:resnet9_audio",
        config={},
        state_dict=audio,
        description="ResNet-9 audio encoder on log-filterbanks (512-d)",
    )


def take_projection(ledger: KeyLedger, prefix: str, *, source: str) -> HeadWeights:
    """A GDT/STiCA projection: ``MLP`` (``block_forward.{2,4,8}``) as GDTHead, or a single linear layer."""
    p = f"{prefix}block_forward."
    if ledger.has(p):
        head = ledger.take({f"{p}2.": "fc1.", f"{p}4.": "bn.", f"{p}8.": "fc2."}, what=prefix)
        if ledger.has(p):
            raise ConversionError(
                f"{source}: {ledger.prefix}{prefix}block_forward has layers other than the "
                "official MLP's 2 (linear), 4 (batch norm) and 8 (linear)"
            )
        try:
            hidden, in_dim = head["fc1.weight"].shape
            out_dim = head["fc2.weight"].shape[0]
        except (KeyError, ValueError):
            raise ConversionError(
                f"{source}: {ledger.prefix}{prefix}* is not the official MLP (found {sorted(head)})"
            ) from None
        return HeadWeights(
            builder="videozoo.heads.projection:GDTHead",
            config={"in_dim": int(in_dim), "hidden_dim": int(hidden), "out_dim": int(out_dim)},
            state_dict=head,
            description="GDT/STiCA projection: dropout → linear → BN → ReLU → dropout → linear → L2",
        )
    head = ledger.take({f"{prefix}weight": "proj.weight", f"{prefix}bias": "proj.bias"}, what=prefix)
    if set(head) != {"proj.weight", "proj.bias"}:
        raise ConversionError(f"{source}: {ledger.prefix}{prefix}* is neither the official MLP nor a linear layer")
    out_dim, in_dim = head["proj.weight"].shape
    return HeadWeights(
        builder="videozoo.heads.projection:MLPHead",
        config={"in_dim": int(in_dim), "out_dim": int(out_dim)},
        state_dict=head,
        description="GDT linear projection (--use_mlp False) → L2",
    )
