"""The public entry points: build, load, describe and save zoo models.

``videozoo/__init__.py`` re-exports these; everything reads the one table in :mod:`videozoo.registry`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videozoo import registry
from videozoo.registry import InputSpec, ModelEntry

if TYPE_CHECKING:  # annotations only: `videozoo info` describes a model without importing torch
    from torch import nn

__all__ = ["create_model", "load", "model_info", "save_pretrained", "transforms_for"]


def create_model(name: str, *, num_classes: int = 0, **kwargs: Any) -> nn.Module:
    """The architecture of ``name`` with random weights (any registered name, bare or pretrained).

    ``kwargs`` override the registered builder config, e.g. ``create_model("s3d", gating=True)``.
    """
    return registry.get(name).build(num_classes=num_classes, **kwargs)


def load(
    name: str | Path,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    verify: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A zoo model, with its weights.

    Args:
        name: a registered name (``videozoo.list_models()``), or a directory / ``.safetensors`` file
            written by :func:`save_pretrained` (its ``config.json`` names the architecture).
        pretrained: load the registered weights. With ``False`` the architecture comes back randomly
            initialised, like :func:`create_model`.
        weights: load these weights instead of the registered ones: a directory written by
            :func:`save_pretrained`, a ``.safetensors`` file, a Hugging Face repo id ``"org/name"``
            (``"org/name@revision"`` pins a revision), an official checkpoint file to convert, or a
            ``torch.save`` of a plain state dict of the same architecture (torchvision's, for instance).
        num_classes: start a new classifier with this many outputs on top of the loaded backbone
            (``0`` drops any head). ``None`` keeps the head stored with the weights, if any.
        verify: how weights with a ``config.json`` are checked against it: ``"sha256"`` (the
            default, or ``$VIDEOZOO_VERIFY``) hashes the file, ``"size"`` only compares its size, for
            huge files you trust. Published weights are always hashed against the registry.

    Raises:
        videozoo.registry.UnknownModelError: unknown name (the message suggests the nearest).
        videozoo.hub.WeightsNotFoundError: ``name`` or ``weights`` is a path that does not exist
            (also a ``FileNotFoundError``).
        videozoo.hub.WeightsUnavailableError: no published weights; the message says how to get them.
        videozoo.hub.WeightsError: corrupt or mismatched weights (checksum, size, format, architecture).

    Loaded models are returned in eval mode.
    """
    from videozoo import hub

    name, weights = _name_and_weights(name, weights)
    entry = registry.get(name)
    if weights is None and not pretrained:
        return entry.build(num_classes=num_classes or 0, **kwargs)
    if weights is not None:
        from videozoo.hub.converters import read_torch_weights

        # A .pth/.tar is an official release (converted on the fly) or a plain state dict; else videozoo's format.
        loaded = read_torch_weights(weights, entry) or hub.read_weights(weights, verify=verify)
    elif entry.weights is not None and entry.weights.published:
        loaded = hub.download_registered(entry, verify=verify)
    else:
        raise hub.WeightsUnavailableError(_unavailable_message(entry), model=entry.name)

    config = loaded.config or {}
    hub.check_architecture(loaded, entry)
    stored_classes = int(config.get("num_classes", _head_width(loaded.state_dict)))
    model = entry.build(**{**config.get("builder_config", {}), **kwargs, "num_classes": stored_classes})
    _load_into(model, loaded)
    model.class_names = config.get("class_names")
    spec = hub.input_spec_from_config(config)
    if spec is not None and spec != entry.input_spec:  # trained at another clip length or size (finetune input_spec=)
        model.input_spec = spec
    model.zoo_weights = str(loaded.path)
    if num_classes is not None and num_classes != stored_classes:
        model.reset_head(num_classes)
        model.class_names = None
    return model.eval()


def model_info(name: str) -> dict[str, Any]:
    """Everything the registry knows about ``name`` as a JSON-ready dict."""
    entry = registry.get(name)
    info = entry.to_dict()
    info["input_spec_summary"] = entry.input_spec.describe()
    info["weights_status"] = entry.weights.status if entry.weights else "architecture only"
    return info


def input_spec_of(name_or_model: str | nn.Module) -> InputSpec:
    """The :class:`InputSpec` of a registered name or of a model built/loaded by videozoo."""
    if isinstance(name_or_model, str):
        return registry.get(name_or_model).input_spec
    spec = getattr(name_or_model, "input_spec", None)
    if isinstance(spec, InputSpec):
        return spec
    zoo_name = getattr(name_or_model, "zoo_name", None)
    if zoo_name is None:
        raise TypeError(
            f"{type(name_or_model).__name__} was not built by videozoo; pass a model name "
            "(videozoo.list_models()) or a model from videozoo.load()/create_model()."
        )
    return registry.get(zoo_name).input_spec


def transforms_for(name_or_model: str | nn.Module, *, train: bool = False, num_crops: int = 1):
    """The preprocessing that belongs to a model: uint8 ``(T, C, H, W)`` frames → float ``(C, T, H, W)``.

    ``train=False`` gives resize + centre crop (``num_crops=3`` for three crops along the long side)
    and the model's normalisation; ``train=True`` gives the augmentation preset of the model's
    pretraining method where it has one (CoCLR, CACL, STiCA), else a generic video augmentation.
    Audio models get STiCA's log-filterbank transform of a mono waveform.
    """
    from videozoo.data import transforms

    spec = input_spec_of(name_or_model)
    if spec.channels == "audio":
        from videozoo.data.audio import log_filterbank

        return functools.partial(log_filterbank, sample_rate=spec.sample_rate, n_bins=spec.freq_bins)
    norm = {"mean": spec.mean, "std": spec.std}
    if not train:
        return transforms.VideoEval(resize=spec.resize, crop_size=spec.crop_size, num_crops=num_crops, **norm)
    name = name_or_model if isinstance(name_or_model, str) else name_or_model.zoo_name
    method = _TRAIN_PRESET_OF.get(name.split("_", 1)[0])
    if method is not None:
        return transforms.preset(method, crop_size=spec.crop_size, **norm)
    # No pretraining method: random resized crop + flip + mild colour, the usual fine-tuning augmentation.
    return transforms.VideoTrain(crop_size=spec.crop_size, scale=(0.25, 1.0), blur_p=0.0, grey_p=0.0, **norm)


# InfoNCE is CoCLR's stage 1 and GDT shares STiCA's data pipeline, so they share the augmentation.
_TRAIN_PRESET_OF = {"coclr": "coclr", "infonce": "coclr", "cacl": "cacl", "stica": "stica", "gdt": "stica"}


def save_pretrained(model: nn.Module, directory: str | Path, **kwargs: Any) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a README model card to ``directory``.

    See :func:`videozoo.hub.save_pretrained` for the keyword arguments (metrics, class names, card).
    """
    from videozoo import hub

    return hub.save_pretrained(model, directory, **kwargs)


# -- helpers ------------------------------------------------------------------------------------
# Registry names never contain these, so a name that does is a path the user expected to exist.
_PATH_SUFFIXES = (".safetensors", ".pth", ".pt", ".tar", ".ckpt")


def _name_and_weights(name: str | Path, weights: str | Path | None) -> tuple[str, str | Path | None]:
    """``load(name, weights=...)`` with a path given as ``name`` turned into the weights it stands for."""
    from videozoo.hub import WeightsNotFoundError, parse_repo_id

    if isinstance(name, str) and (name in registry.list_models(tiny=None) or not name):
        return name, weights
    path = Path(name).expanduser()
    if path.exists():
        if weights is not None:
            raise ValueError(
                f"{name} is a path and weights={weights!r} too: pass the path alone, or a model name with weights=..."
            )
        return _name_from_weights(path), str(name)
    if isinstance(name, str) and not _looks_like_path(name):
        return name, weights  # an unknown model name: registry.get suggests the nearest
    hint = ""
    if isinstance(name, str) and parse_repo_id(name):
        hint = f" To load a Hub repo, name the model and pass the repo: videozoo.load(NAME, weights={name!r})."
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    raise WeightsNotFoundError(
        f"the path {str(name)!r} does not exist{where}: videozoo.load takes a registered model name "
        f"(videozoo.list_models()) or a directory written by videozoo.save_pretrained.{hint}",
        path=str(name),
    )


def _looks_like_path(name: str) -> bool:
    separators = tuple(sep for sep in (os.sep, os.altsep, "/") if sep)
    return any(sep in name for sep in separators) or name.startswith((".", "~")) or name.endswith(_PATH_SUFFIXES)


def _load_into(model: nn.Module, loaded: Any) -> None:
    """Strict loading; for a plain state dict (no config.json) the error also names the file."""
    from videozoo import hub

    try:
        hub.load_state_dict_strict(model, loaded.state_dict)
    except hub.WeightsFormatError as err:
        if loaded.config is not None:
            raise
        raise hub.WeightsFormatError(
            f"{loaded.path} holds a plain state dict, which must have exactly the keys and shapes of "
            f"{model.zoo_name} (was it saved from another architecture?); {err}"
        ) from None


def _name_from_weights(path: Path) -> str:
    config_path = path / "config.json" if path.is_dir() else path.with_name("config.json")
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{path} has no config.json naming its architecture; call videozoo.load(NAME, weights={str(path)!r})."
        )
    return json.loads(config_path.read_text())["name"]


def _head_width(state_dict: dict[str, Any]) -> int:
    head = state_dict.get("fc.weight")
    return int(head.shape[0]) if head is not None else 0


def _unavailable_message(entry: ModelEntry) -> str:
    if entry.weights is None:
        return (
            f"{entry.name!r} is an architecture without pretrained weights. Use "
            f"videozoo.load({entry.name!r}, pretrained=False) or videozoo.create_model({entry.name!r}) for a "
            f"randomly initialised model, pass weights=..., or pick a pretrained model: "
            f"{', '.join(registry.list_models(pretrained=True)[:4])}, ..."
        )
    return f"{entry.name!r} has no published weights yet. {entry.weights.how_to_get}"


def hub_entrypoints() -> dict[str, Any]:
    """One ``torch.hub`` entrypoint per model of ``list_models()``, named after it (used by hubconf.py).

    ``pretrained`` defaults to True for pretrained models and to False for bare architectures, as in
    torchvision: ``torch.hub.load(repo, "r3d_18")`` is a randomly initialised R3D-18, while
    ``pretrained=True`` on a bare architecture still raises, saying it has no weights.
    """

    def make(entry: ModelEntry):
        default = entry.kind == "pretrained"

        def entrypoint(*, pretrained: bool = default, **kwargs: Any) -> nn.Module:
            return load(entry.name, pretrained=pretrained, **kwargs)

        entrypoint.__name__ = entry.name
        entrypoint.__doc__ = (
            f"{entry.description}.\n\nInput: {entry.input_spec.describe()}. Paper: {entry.paper or '-'}.\n"
            f"Weights: {entry.weights.status if entry.weights else 'architecture only'} "
            f"(pretrained={default} by default). Keyword arguments are those of videozoo.load()."
        )
        return entrypoint

    return {name: make(registry.get(name)) for name in registry.list_models()}
