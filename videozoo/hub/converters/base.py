"""What every converter shares: a load that runs no code from the file, a ledger of every key, the result.

Official checkpoints are pickles written by ``torch.save``. They are read with ``torch.load(weights_only=True)``:
nothing in the file is imported or called. Training scripts also pickle a little non-tensor training state next
to the weights (GDT: its ``argparse.Namespace`` and an LR scheduler holding the SGD optimizer object); for those
few, named globals the unpickler is given *inert stand-ins* (:data:`TRAINING_STATE_GLOBALS`): plain records that
store what the pickle hands them and run no code. Converters drop these entries; any other global is refused.

Every key of the official state dict must be claimed, by :meth:`KeyLedger.take` (kept, renamed) or
:meth:`KeyLedger.drop` (dropped, with the reason); a key nobody claims is an error that names it.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videozoo.hub.errors import WeightsFormatError, WeightsNotFoundError

__all__ = [
    "HEAD_BUILDERS",
    "TRAINING_STATE_GLOBALS",
    "ConversionError",
    "Converted",
    "HeadWeights",
    "KeyLedger",
    "UnsafeCheckpointError",
    "check_top_level",
    "jsonable",
    "load_official_checkpoint",
    "state_dict_of",
    "strip_module_prefix",
    "top_level_dropped",
]

_MAX_LISTED = 8


class ConversionError(WeightsFormatError):
    """An official checkpoint does not have the layout its converter expects (the message names the keys)."""


class UnsafeCheckpointError(WeightsFormatError):
    """``torch.load(weights_only=True)`` refused a file: unpickling it would need code, not just weights."""


# ------------------------------------------------------------------------------------------------
# loading without unpickling code
# ------------------------------------------------------------------------------------------------
class _Inert:
    """Stands in for a training-state object (an optimizer, a scheduler, argparse arguments) during unpickling.

    It accepts whatever the pickle gives it (constructor arguments, ``__setstate__`` state) and does nothing else,
    so loading never runs the class's own code. ``state`` keeps the pickled attributes for reporting.
    """

    pickled_as = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.pickled_as} (not unpickled)>"


def _plain_dict(*args: Any) -> dict:
    """``collections.defaultdict(factory)`` becomes a plain dict: the factory is never called."""
    return {}


# global name → what official checkpoints hold it for. Only these get a stand-in.
TRAINING_STATE_GLOBALS: dict[str, str] = {
    "argparse.Namespace": "the training arguments (GDT's `args`)",
    "torch.optim.sgd.SGD": "an optimizer object inside a pickled LR scheduler (GDT)",
    "torch.optim.adam.Adam": "an optimizer object inside a pickled LR scheduler",
    "torch.optim.lr_scheduler.MultiStepLR": "the scheduler wrapped by GDT's GradualWarmupScheduler",
    "torch.optim.lr_scheduler.CosineAnnealingLR": "the scheduler wrapped by GDT's GradualWarmupScheduler",
    "torch.optim.lr_scheduler.StepLR": "a pickled LR scheduler",
    "numpy.core.multiarray.scalar": "a numpy number (an accuracy saved as np.float64)",
    "numpy._core.multiarray.scalar": "a numpy number (an accuracy saved as np.float64)",
    "numpy.dtype": "the dtype of a numpy number",
    "collections.defaultdict": "an optimizer's per-parameter state (read as a plain dict)",
    "builtins.dict": "the default factory of that defaultdict",
}


def _stand_ins() -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for name in TRAINING_STATE_GLOBALS:
        if name == "collections.defaultdict":
            out.append((_plain_dict, name))
        elif name == "builtins.dict":
            out.append((dict, name))
        else:
            out.append((type(name.rsplit(".", 1)[1], (_Inert,), {"pickled_as": name}), name))
    return out


def load_official_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with inert stand-ins for training state.

    Raises :class:`UnsafeCheckpointError` when the file needs any other global (code, not weights), and
    :class:`~videozoo.hub.WeightsFormatError` when it is not a ``torch.save`` file at all.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(f"official checkpoint {path} does not exist")
    if not path.is_file():
        raise WeightsFormatError(f"official checkpoint {path} is a directory, not a torch.save file")
    try:
        with torch.serialization.safe_globals(_stand_ins()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"unrecognized function ([^\s]+)", text)
        if found is None:  # not a global: the bytes are no torch.save pickle (an HTML page, a truncated file)
            reason = re.search(r"WeightsUnpickler error: \s*(.+?)\s*(?:\n\n|$)", text, re.S)
            raise WeightsFormatError(
                f"{path} is not a torch.save checkpoint (unpickling stops at: "
                f"{reason.group(1) if reason else text.splitlines()[0]})"
            ) from None
        raise UnsafeCheckpointError(
            f"refused to load {path}: unpickling it needs {found.group(1)}, which is code, not weights. videozoo "
            "reads official checkpoints with torch.load(weights_only=True) and allows only stand-ins for the "
            f"training state official scripts save ({', '.join(sorted(TRAINING_STATE_GLOBALS))}). If you trust "
            "the file, re-save its weights alone and convert that: torch.save({'state_dict': torch.load(f, "
            "weights_only=False)['state_dict']}, 'weights.pth')."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsFormatError(f"{path} could not be read as a torch.save checkpoint: {err}") from err


# ------------------------------------------------------------------------------------------------
# checkpoint structure
# ------------------------------------------------------------------------------------------------
def check_top_level(
    checkpoint: Any, *, known: Mapping[str, str], required: Iterable[str], source: str, fmt: str
) -> dict[str, Any]:
    """The checkpoint as a dict, after checking it has ``required`` entries and nothing outside ``known``."""
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"{source}: a {fmt} checkpoint is a dict, found {type(checkpoint).__name__}")
    missing = [k for k in required if k not in checkpoint]
    unknown = [str(k) for k in checkpoint if k not in known]
    if missing or unknown:
        raise ConversionError(
            f"{source} is not a {fmt} checkpoint as the official script saves it: "
            + "; ".join(
                filter(
                    None,
                    [
                        f"missing {missing}" if missing else "",
                        f"unexpected top-level entries {unknown}" if unknown else "",
                    ],
                )
            )
            + f". Expected {sorted(known)}."
        )
    return dict(checkpoint)


def top_level_dropped(top: Mapping[str, Any], known: Mapping[str, str], *, converted: str) -> dict[str, str]:
    """The top-level entries other than the converted state dict and the recorded epoch, as dropped."""
    return {f"top-level '{k}'": known[k] for k in top if k not in (converted, "epoch")}


def state_dict_of(value: Any, *, source: str, where: str) -> dict[str, torch.Tensor]:
    """``value`` as ``{str: Tensor}``; anything else is an error naming the entry."""
    if not isinstance(value, Mapping) or not value:
        raise ConversionError(f"{source}: {where} should be a non-empty state dict, found {type(value).__name__}")
    bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{source}: {where} holds non-tensor entries: {_listing([str(k) for k in bad])}")
    return dict(value)


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Remove ``module.`` when every key has it (a DistributedDataParallel model was saved)."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}, True
    return dict(state_dict), False


def roots(state_dict: Mapping[str, Any]) -> set[str]:
    return {k.split(".", 1)[0] for k in state_dict}


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# ------------------------------------------------------------------------------------------------
# key accounting
# ------------------------------------------------------------------------------------------------
class KeyLedger:
    """Claims every key of an official state dict exactly once: kept (renamed) or dropped (with a reason).

    ``names[what]`` maps each kept key's new name back to its name in the file (``prefix``, e.g. ``module.``,
    included), so later shape errors can name the key as the user sees it.
    """

    def __init__(self, state_dict: Mapping[str, torch.Tensor], *, source: str, fmt: str, prefix: str = "") -> None:
        self.state_dict = dict(state_dict)
        self.left = dict.fromkeys(state_dict)  # insertion-ordered set
        self.source, self.fmt, self.prefix = source, fmt, prefix
        self.dropped: dict[str, str] = {}  # "pattern (n tensors)" → why
        self.names: dict[str, dict[str, str]] = {}  # what → {new key: key in the file}

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.left)

    def take(self, renames: Mapping[str, str], *, what: str, required: bool = True) -> dict[str, torch.Tensor]:
        """Claim the keys under each old prefix of ``renames`` and return them under the new prefix."""
        out: dict[str, torch.Tensor] = {}
        names = self.names.setdefault(what, {})
        for key in list(self.left):
            for old, new in renames.items():
                if key.startswith(old):
                    out[new + key[len(old) :]] = self.state_dict[key]
                    names[new + key[len(old) :]] = self.prefix + key
                    del self.left[key]
                    break
        if required and not out:
            raise ConversionError(
                f"{self.source}: no {what} ({', '.join(p + '*' for p in renames)}) in this {self.fmt} checkpoint"
            )
        return out

    def drop(self, prefixes: str | Iterable[str], *, why: str, exact: bool = False, required: bool = True) -> int:
        """Claim the keys under ``prefixes`` (or equal to them, ``exact``) as dropped, recording ``why``."""
        prefixes = [prefixes] if isinstance(prefixes, str) else list(prefixes)
        claimed = [k for k in self.left if any(k == p if exact else k.startswith(p) for p in prefixes)]
        if required and exact and len(claimed) != len(prefixes):
            absent = [p for p in prefixes if p not in claimed]
            raise ConversionError(f"{self.source}: a {self.fmt} checkpoint holds {absent}, this one does not")
        if required and not claimed:
            raise ConversionError(f"{self.source}: no {why} ({', '.join(prefixes)}) in this {self.fmt} checkpoint")
        for k in claimed:
            del self.left[k]
        if claimed:
            pattern = ", ".join(self.prefix + p + ("" if exact else "*") for p in prefixes)
            self.dropped[f"{pattern} ({len(claimed)} tensors)"] = why
        return len(claimed)

    def finish(self) -> None:
        """Raise, naming them, if any key was claimed by nobody."""
        if self.left:
            keys = [self.prefix + k for k in self.left]
            raise ConversionError(
                f"{self.source}: {len(keys)} unexpected keys for a {self.fmt} checkpoint: {_listing(keys)}. "
                "The converter knows every key the official script saves; a key it does not know means another "
                "model definition or version, so nothing is guessed."
            )


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
# The modules a release's heads are rebuilt with (see HeadWeights.build).
HEAD_BUILDERS = frozenset(
    {
        "videozoo.heads.projection:CoCLRHead",
        "videozoo.heads.projection:GDTHead",
        "videozoo.heads.projection:MLPHead",
        "videozoo.heads.temporal:TransformerPooling",
        "videozoo.backbones.audio:resnet9_audio",
    }
)


@dataclass
class HeadWeights:
    """A module that came with a release (projection head, pooling, audio network) and its weights.

    ``builder`` is ``"module:callable"`` called with ``config`` as keyword arguments, like the registry's builders.
    """

    builder: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    description: str = ""

    def build(self, *, weights: bool = True) -> nn.Module:
        """The module with these weights (``weights=False``: its architecture only), in eval mode."""
        from videozoo.hub.weights import load_state_dict_strict

        if self.builder not in HEAD_BUILDERS:  # a heads file names its builders: never import anything else
            raise WeightsFormatError(f"unknown head builder {self.builder!r}; known: {sorted(HEAD_BUILDERS)}")
        module_name, _, fn = self.builder.partition(":")
        module = getattr(importlib.import_module(module_name), fn)(**self.config)
        if weights:
            load_state_dict_strict(module, self.state_dict)
        return module.eval()


@dataclass
class Converted:
    """An official checkpoint in videozoo's names: the backbone, the heads, and what was left out and why."""

    format: str  # the converter: coclr, gdt, stica, cacl
    variant: str  # what the checkpoint turned out to be, e.g. "coclr" / "infonce", "audio-visual" / "video-text"
    arch: str  # the videozoo architecture of the backbone (a registry name)
    state_dict: dict[str, torch.Tensor]  # the backbone, videozoo names
    heads: dict[str, HeadWeights] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # "official pattern (n tensors)" → why
    info: dict[str, Any] = field(default_factory=dict)  # epoch and other JSON-ready facts from the checkpoint
    official_names: dict[str, str] = field(default_factory=dict)  # backbone key → key in the file

    def summary(self) -> dict[str, Any]:
        """A JSON-ready account of the conversion (written to config.json as ``converted_from``)."""
        return {
            "format": self.format,
            "variant": self.variant,
            "architecture": self.arch,
            "backbone_tensors": len(self.state_dict),
            "heads": {
                k: {"builder": h.builder, "config": h.config, "tensors": len(h.state_dict)}
                for k, h in self.heads.items()
            },
            "dropped": dict(self.dropped),
            **self.info,
        }


def jsonable(value: Any) -> Any:
    """Numbers, strings and containers of them as they are; anything else (stand-ins, tensors) as text."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)
