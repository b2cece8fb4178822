"""The contract every pretraining method honours, and the encoder (backbone → projection head) they share.

A method is an ``nn.Module`` that receives its backbone(s) and owns everything else of the pretraining:
heads, momentum copies, queues, the loss (DESIGN.md, "Contracts"):

* ``forward(batch, **schedule) -> {"loss": scalar tensor, "logs": {name: detached 0-d tensor}}``. ``batch`` is
  the collated dict of :class:`videozoo.data.VideoDataset` (``video``, ``flow``, ``label``, ``source_id`` ...),
  already on the right device: a method never calls ``.cuda()`` / ``.to()`` on its input. Values that change
  over training (EMA momentum, temperature schedules) come in as keyword arguments, so the trainer owns the
  schedule and a resumed run reproduces it.
* ``export_backbone()`` — the only way a trained encoder leaves a method: a copy of the online backbone,
  head removed, in eval mode, ready for :func:`videozoo.save_pretrained`.
* Backbones are used through their contract only (``num_features``, ``forward``, ``reset_head``,
  ``forward_features``); a method never reaches into ``.fc``. Any backbone works.
* Everything a resumed run needs (queues, pointers, step counters) lives in parameters and buffers, so
  ``state_dict()`` is the whole state.
* GPU speed (docs/training.md): nothing in ``forward`` waits for the device (no ``.item()``, ``bool(tensor)`` or
  blocking copies), and randomness drawn on the host (CoCLR's coin, CACL's frame orders, STiCA's crop boxes) is
  drawn in one ``torch.compiler.disable`` function per step from a host copy of the step count
  (:func:`track_host_steps`), so a compiled step is one or two graphs that never recompile.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from einops import rearrange
from torch import nn

__all__ = ["Encoder", "Method", "advance_steps", "split_views", "track_host_steps"]


class Encoder(nn.Module):
    """A backbone followed by a projection head: ``x (B, C, T, H, W) -> head(backbone(x))``.

    The backbone's classifier is removed (``reset_head(0)``, dropout off), so ``backbone(x)`` is its pooled
    embedding ``(B, num_features)``, the input of every projection head; pooling stays the backbone's own,
    which is what makes the encoder work for any backbone (3D CNNs, frame transformers, audio networks).
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        backbone.reset_head(0, dropout=0.0)
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (B, dim)


class Method(nn.Module):
    """Base class of the pretraining methods: the contract above and :meth:`export_backbone`.

    Subclasses set ``self.backbone`` (or a property of that name) to the online backbone and implement
    :meth:`forward`.
    """

    backbone: nn.Module

    def forward(self, batch: dict[str, Any], **schedule: Any) -> dict[str, Any]:
        raise NotImplementedError

    def export_backbone(self) -> nn.Module:
        """A copy of the online backbone, head removed, trainable, in eval mode, on the method's device.

        The copy keeps the registry identity (``zoo_name``, ``zoo_arch``, ``zoo_config``) of the backbone the
        method was given, so ``videozoo.save_pretrained(method.export_backbone(), path)`` writes weights that
        ``videozoo.load(path)`` reads back.
        """
        backbone = copy.deepcopy(self.backbone)
        backbone.reset_head(0)
        backbone.requires_grad_(True)
        return backbone.eval()


def split_views(x: torch.Tensor, *, num_views: int = 2) -> tuple[torch.Tensor, ...]:
    """(B, V, C, T, H, W) -> V tensors (B, C, T, H, W): the views of a multi-view batch, in order.

    Any trailing layout works (``b v c f t`` spectrograms too); ``V`` must equal ``num_views``.
    """
    if x.ndim < 3 or x.shape[1] != num_views:
        raise ValueError(
            f"expected a batch of {num_views} views (B, {num_views}, C, T, H, W), got {tuple(x.shape)}; build the "
            f"dataset with num_views={num_views}"
        )
    return tuple(rearrange(x, "b v ... -> v b ..."))


def track_host_steps(module: nn.Module, buffer: str = "num_steps") -> None:
    """Give ``module`` a host copy ``_host_steps`` of its step-count buffer, for step-seeded host randomness.

    Reading the buffer (``int(module.num_steps)``) would wait for the GPU at every step and break a compiled graph.
    The copy is read only inside ``torch.compiler.disable`` functions, which advance it together with the buffer
    (:func:`advance_steps`), and is set again from the buffer after every ``load_state_dict`` (a resumed run
    continues the sequence).
    """
    module._host_steps = int(getattr(module, buffer))
    module.register_load_state_dict_post_hook(functools.partial(_reload_host_steps, buffer=buffer))


def _reload_host_steps(module: nn.Module, incompatible_keys: Any, *, buffer: str) -> None:
    module._host_steps = int(getattr(module, buffer))


def advance_steps(module: nn.Module, buffer: str = "num_steps") -> None:
    """A training step is under way: the buffer (in the state dict) and its host copy move on together."""
    module._host_steps += 1
    getattr(module, buffer).add_(1)
