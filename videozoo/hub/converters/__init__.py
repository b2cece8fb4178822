"""Converters from the official checkpoints of CoCLR, GDT, STiCA and CACL to videozoo weights.

One small module per release format (``coclr``, ``gdt``, ``stica``, ``cacl``), each documenting the official layout
key by key; ``convert`` recognises the format and checks the result against the registry. Official files are read
with ``torch.load(weights_only=True)``, every key is accounted for (kept or dropped with a reason), and anything
unexpected is an error naming it. Usage and what each release holds: ``docs/converting.md``.

    videozoo convert CoCLR-ucf101-rgb-128-s3d-ep182.tar --to coclr_s3d_ucf101_rgb --out coclr_s3d_ucf101_rgb/
    videozoo.load("coclr_s3d_ucf101_rgb", weights="CoCLR-ucf101-rgb-128-s3d-ep182.tar")  # converts on the fly
    videozoo.load("r2plus1d_18", weights="tv.pth")  # a plain state dict (torchvision's) loads as it is
"""

from videozoo.hub.converters.base import (
    ConversionError,
    Converted,
    HeadWeights,
    UnsafeCheckpointError,
    load_official_checkpoint,
)
from videozoo.hub.converters.convert import (
    FORMATS,
    HEADS_NAME,
    add_convert_arguments,
    convert,
    convert_checkpoint,
    convert_if_official,
    detect_format,
    is_official_checkpoint,
    is_plain_state_dict,
    load_heads,
    read_torch_weights,
    run_convert_command,
)

__all__ = [
    "FORMATS",
    "HEADS_NAME",
    "ConversionError",
    "Converted",
    "HeadWeights",
    "UnsafeCheckpointError",
    "add_convert_arguments",
    "convert",
    "convert_checkpoint",
    "convert_if_official",
    "detect_format",
    "is_official_checkpoint",
    "is_plain_state_dict",
    "load_heads",
    "load_official_checkpoint",
    "read_torch_weights",
    "run_convert_command",
]
