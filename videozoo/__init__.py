"""videozoo: a PyTorch model zoo for self-supervised video representation learning.

Public API only; see README.md and docs/.
"""

from typing import TYPE_CHECKING, Any

from videozoo.api import create_model, load, model_info, save_pretrained, transforms_for
from videozoo.registry import list_models

if TYPE_CHECKING:
    from videozoo.eval.finetune import finetune

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_model",
    "finetune",
    "list_models",
    "load",
    "model_info",
    "save_pretrained",
    "transforms_for",
]


def __getattr__(name: str) -> Any:
    # finetune pulls in the training engine and evaluation; load it on first use so `import videozoo` stays cheap.
    if name == "finetune":
        from videozoo.eval.finetune import finetune

        return finetune
    raise AttributeError(f"module 'videozoo' has no attribute {name!r}")
