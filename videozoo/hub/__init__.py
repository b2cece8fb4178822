"""Weights on disk and on the Hub: safetensors + config.json + model card, downloads verified by sha256.

``save_pretrained`` writes a weights directory, ``read_weights`` reads one (or a ``.safetensors``
file, or a Hub repo), ``download_registered`` fetches a registry entry's published weights,
``check_architecture`` and ``load_state_dict_strict`` put them into a model. See docs/weights.md.
"""

from videozoo.hub.download import download_registered, parse_repo_id, read_weights
from videozoo.hub.errors import (
    ArchitectureMismatchError,
    ChecksumError,
    WeightsDownloadError,
    WeightsError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsUnavailableError,
)
from videozoo.hub.weights import (
    LoadedWeights,
    check_architecture,
    input_spec_from_config,
    load_state_dict_strict,
    save_pretrained,
    sha256_file,
)

__all__ = [
    "ArchitectureMismatchError",
    "ChecksumError",
    "LoadedWeights",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsFormatError",
    "WeightsNotFoundError",
    "WeightsUnavailableError",
    "check_architecture",
    "download_registered",
    "input_spec_from_config",
    "load_state_dict_strict",
    "parse_repo_id",
    "read_weights",
    "save_pretrained",
    "sha256_file",
]
