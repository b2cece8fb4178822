"""Contrastive losses and MoCo's memory (queue + momentum encoder), shared by every method."""

from videozoo.losses.nce import (
    drop_self_positive,
    global_nce,
    info_nce,
    info_nce_logits,
    multi_positive_nce,
    per_positive_nce,
    symmetric_global_nce,
)
from videozoo.losses.queue import FeatureQueue, MomentumEncoder

__all__ = [
    "FeatureQueue",
    "MomentumEncoder",
    "drop_self_positive",
    "global_nce",
    "info_nce",
    "info_nce_logits",
    "multi_positive_nce",
    "per_positive_nce",
    "symmetric_global_nce",
]
