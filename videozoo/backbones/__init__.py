"""Video and audio encoders. Each family file knows nothing of SSL, data or the hub (DESIGN.md)."""

from videozoo.backbones.base import InputShapeError, VideoBackbone

__all__ = ["InputShapeError", "VideoBackbone"]
