"""Heads: pieces that sit on top of a backbone's features (projection heads, temporal pooling)."""

from videozoo.heads.temporal import TransformerPooling

__all__ = ["TransformerPooling"]
