"""Heads: pieces that sit on top of a backbone's features (projection heads, temporal pooling)."""

from videozoo.heads.projection import CoCLRHead, GDTHead, MLPHead
from videozoo.heads.temporal import TransformerPooling

__all__ = ["CoCLRHead", "GDTHead", "MLPHead", "TransformerPooling"]
