"""Pretraining methods: each receives its backbone(s) and returns ``{"loss", "logs"}`` (contract: :mod:`.base`).

- :class:`InfoNCE` — MoCo on video, CoCLR's stage 1 (He et al., CVPR 2020; Han et al., NeurIPS 2020)
- :class:`CoCLR` — co-training with positives mined by the other modality (Han, Xie, Zisserman, NeurIPS 2020)
- :class:`UberNCE` — label positives, CoCLR's supervised upper bound
- :class:`CACL` — 3D CNN × video transformer contrast with shuffle-degree prediction (Guo et al., CVPR 2022)
- :class:`STiCA` — feature crops + transformer pooling, audio-visual (Patrick, Asano et al., ICCV 2021);
  :class:`GDT` — its audio-visual baseline
"""

from videozoo.methods.base import Encoder, Method, split_views
from videozoo.methods.cacl import CACL, ShuffleDegree, edit_distance, permutation_with_distance
from videozoo.methods.coclr import CoCLR, mine_topk
from videozoo.methods.infonce import InfoNCE
from videozoo.methods.stica import GDT, STiCA
from videozoo.methods.ubernce import UberNCE, mean_positive_nce

__all__ = [
    "CACL",
    "GDT",
    "CoCLR",
    "Encoder",
    "InfoNCE",
    "Method",
    "STiCA",
    "ShuffleDegree",
    "UberNCE",
    "edit_distance",
    "mean_positive_nce",
    "mine_topk",
    "permutation_with_distance",
    "split_views",
]
