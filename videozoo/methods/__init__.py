"""Pretraining methods: each receives its backbone(s) and returns ``{"loss", "logs"}`` (contract: :mod:`.base`).

- :class:`InfoNCE` — MoCo on video, CoCLR's stage 1 (He et al., CVPR 2020; Han et al., NeurIPS 2020)
- :class:`CoCLR` — co-training with positives mined by the other modality (Han, Xie, Zisserman, NeurIPS 2020)
- :class:`UberNCE` — label positives, CoCLR's supervised upper bound
"""

from videozoo.methods.base import Encoder, Method, split_views
from videozoo.methods.coclr import CoCLR, mine_topk
from videozoo.methods.infonce import InfoNCE
from videozoo.methods.ubernce import UberNCE, mean_positive_nce

__all__ = [
    "CoCLR",
    "Encoder",
    "InfoNCE",
    "Method",
    "UberNCE",
    "mean_positive_nce",
    "mine_topk",
    "split_views",
]
