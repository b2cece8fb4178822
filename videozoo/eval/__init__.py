"""Evaluation: video-level prediction and accuracy, linear probe, nearest-neighbour retrieval, search.

- features (:mod:`~videozoo.eval.features`): :func:`embed_videos`, :func:`save_features`, :func:`load_features`
- prediction (:mod:`~videozoo.eval.video_predict`): :func:`predict_videos`, :func:`evaluate_videos` (N clips ×
  M crops, logits or probabilities averaged as each paper did: :data:`TEST_PROTOCOLS`)
- metrics (:mod:`~videozoo.eval.metrics`): top-k, per-class accuracy, confusion matrix + PNG, CSV, JSON
- fine-tuning (:mod:`~videozoo.eval.finetune`): :func:`finetune`, its settings :class:`FinetuneConfig` and the
  papers' protocols :data:`FINETUNE_PROTOCOLS` (:mod:`~videozoo.eval.finetune_config`)
- linear probe (:mod:`~videozoo.eval.linear_probe`): :func:`linear_probe` on cached features (CoCLR's protocol)
- retrieval (:mod:`~videozoo.eval.retrieval`): :func:`evaluate_retrieval` (on :func:`retrieval_sets` of two
  datasets), :func:`recall_at_k` (CoCLR / CACL)
- search (:mod:`~videozoo.eval.search`): :func:`search` an index written by ``videozoo embed``

See docs/evaluation.md.
"""

from videozoo.eval.features import EmbedResult, embed_videos, load_features, save_features
from videozoo.eval.finetune import FINETUNE_PROTOCOLS, FinetuneConfig, FinetuneResult, finetune
from videozoo.eval.linear_probe import LinearProbeResult, linear_probe, sweep_weight_decay
from videozoo.eval.metrics import (
    classification_report,
    confusion_matrix,
    per_class_accuracy,
    plot_confusion_matrix,
    read_predictions_csv,
    topk_accuracy,
    write_json,
    write_predictions_csv,
)
from videozoo.eval.retrieval import (
    RETRIEVAL_PROTOCOLS,
    RetrievalProtocol,
    evaluate_retrieval,
    extract_features,
    nearest_neighbours,
    recall_at_k,
    retrieval_from_features,
    retrieval_sets,
)
from videozoo.eval.search import SearchHit, SearchResults, search, search_videos
from videozoo.eval.video_predict import (
    TEST_PROTOCOLS,
    VideoPrediction,
    evaluate_videos,
    predict_videos,
    sample_clips,
    video_scores,
)

__all__ = [
    "FINETUNE_PROTOCOLS",
    "RETRIEVAL_PROTOCOLS",
    "TEST_PROTOCOLS",
    "EmbedResult",
    "FinetuneConfig",
    "FinetuneResult",
    "LinearProbeResult",
    "RetrievalProtocol",
    "SearchHit",
    "SearchResults",
    "VideoPrediction",
    "classification_report",
    "confusion_matrix",
    "embed_videos",
    "evaluate_retrieval",
    "evaluate_videos",
    "extract_features",
    "finetune",
    "linear_probe",
    "load_features",
    "nearest_neighbours",
    "per_class_accuracy",
    "plot_confusion_matrix",
    "predict_videos",
    "read_predictions_csv",
    "recall_at_k",
    "retrieval_from_features",
    "retrieval_sets",
    "sample_clips",
    "save_features",
    "search",
    "search_videos",
    "sweep_weight_decay",
    "topk_accuracy",
    "video_scores",
    "write_json",
    "write_predictions_csv",
]
