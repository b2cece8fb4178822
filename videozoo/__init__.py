"""videozoo: a PyTorch model zoo for self-supervised video representation learning.

Public API only; see README.md and docs/.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from videozoo.api import create_model, load, model_info, save_pretrained, transforms_for
    from videozoo.eval.finetune import finetune
    from videozoo.eval.finetune_config import FinetuneConfig
    from videozoo.registry import list_models

from videozoo._version import __version__

__all__ = [
    "FinetuneConfig",
    "__version__",
    "create_model",
    "finetune",
    "list_models",
    "load",
    "model_info",
    "save_pretrained",
    "transforms_for",
]

# The public names are imported on first use (PEP 562) so that `import videozoo` costs nothing: the `videozoo`
# command imports this package before it can answer `--help`, and torch alone takes seconds to import.
_LAZY = {
    "create_model": "videozoo.api",
    "load": "videozoo.api",
    "model_info": "videozoo.api",
    "save_pretrained": "videozoo.api",
    "transforms_for": "videozoo.api",
    "list_models": "videozoo.registry",
    "finetune": "videozoo.eval.finetune",
    "FinetuneConfig": "videozoo.eval.finetune_config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # `import videozoo; videozoo.registry.get(...)` worked while this file imported its submodules eagerly
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'videozoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
