"""torch.hub entrypoints: one per model of ``videozoo.list_models()``, generated from the registry."""

dependencies = ["torch", "torchvision", "torchaudio", "timm", "einops", "safetensors", "huggingface_hub"]

from videozoo.api import hub_entrypoints as _hub_entrypoints  # noqa: E402

globals().update(_hub_entrypoints())
