"""videozoo: a PyTorch model zoo for self-supervised video representation learning.

Public API only; see README.md and docs/.
"""

from videozoo.api import create_model, load, model_info, save_pretrained, transforms_for
from videozoo.registry import list_models

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "load",
    "model_info",
    "save_pretrained",
    "transforms_for",
]
