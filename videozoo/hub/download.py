"""Weights from the Hugging Face Hub: pinned, cached, verified.

Every download goes through ``huggingface_hub.hf_hub_download``, so the usual cache
(``HF_HUB_CACHE``/``HF_HOME``), offline mode (``HF_HUB_OFFLINE=1``), mirrors (``HF_ENDPOINT``)
and tokens behave as in every other Hugging Face library. What videozoo adds: the registry pins
the revision and the sha256 of the file, and the file is hashed after every call, cached or
not, so a damaged cache is reported (with how to clear it) instead of being loaded.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

from videozoo.hub.errors import WeightsDownloadError, WeightsError, WeightsFormatError, WeightsUnavailableError
from videozoo.hub.weights import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    LoadedWeights,
    _videozoo_version,
    check_safetensors,
    load_safetensors,
    read_config,
    read_local_weights,
    verify_file,
)
from videozoo.registry import ModelEntry

__all__ = ["download_registered", "parse_repo_id", "read_weights"]

# "org/name" or "org/name@revision"; the Hub's own rule for the two parts, roughly.
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96})(?:@(?P<revision>[^\s@]+))?$")


def parse_repo_id(source: str | os.PathLike[str]) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` if ``source`` names a Hub repo rather than a local path, else None.

    A path that exists always wins, and so does anything that looks like a path (``./x``,
    ``/x``, ``~/x``, ``x.safetensors``): ``runs/exp1`` is a Hub repo only if no such directory exists.
    """
    if not isinstance(source, str) or source.startswith((".", "/", "~")) or source.endswith(".safetensors"):
        return None
    if os.path.exists(source):
        return None
    match = _REPO_ID.match(source)
    return (match["repo"], match["revision"]) if match else None


def read_weights(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    expected_sha256: str | None = None,
    filename: str = WEIGHTS_NAME,
    verify: str | None = None,
) -> LoadedWeights:
    """Read weights from a directory, a ``.safetensors`` file, or a Hub repo ``"org/name[@revision]"``.

    Only safetensors is ever parsed (nothing is unpickled). ``config.json`` next to the file is
    read when present, and the file is checked against the size and sha256 it records;
    ``verify="size"`` (or ``VIDEOZOO_VERIFY=size``) skips the hash for huge files you trust. With
    ``expected_sha256`` the file is always hashed, local or downloaded. A mismatch raises
    :class:`~videozoo.hub.ChecksumError`; a missing path :class:`~videozoo.hub.WeightsNotFoundError`;
    a truncated or foreign file :class:`~videozoo.hub.WeightsFormatError`.
    """
    hub = parse_repo_id(source)
    if hub is None:
        return read_local_weights(source, expected_sha256=expected_sha256, filename=filename, verify=verify)
    repo_id, pinned = hub
    if revision and pinned and revision != pinned:
        raise ValueError(f"two revisions given for {repo_id}: {pinned!r} in the source and revision={revision!r}")
    return fetch(
        repo_id, revision=revision or pinned, filename=filename, expected_sha256=expected_sha256, verify=verify
    )


def download_registered(
    entry: ModelEntry,
    *,
    force_download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    verify: str | None = None,
) -> LoadedWeights:
    """Download and verify the published weights of a registry entry.

    Fetches ``entry.weights.filename`` and ``config.json`` from ``entry.weights.repo_id`` at the
    pinned ``entry.weights.revision`` and checks the file against ``entry.weights.sha256``, always
    (``verify`` only concerns the check against ``config.json``, see :func:`read_weights`).
    ``cache_dir`` and ``endpoint`` default to the Hugging Face settings (``HF_HUB_CACHE``,
    ``HF_ENDPOINT``); ``force_download`` refetches a cached file. Weights packaged inside videozoo
    (``entry.weights.package``) are read in place, checked against the same sha256.
    """
    weights = entry.weights
    if weights is None or not weights.published:
        how = weights.how_to_get if weights else ""
        raise WeightsUnavailableError(f"{entry.name} has no published weights. {how}".strip(), model=entry.name)
    if not weights.sha256:
        raise WeightsError(
            f"registry entry {entry.name} publishes {weights.repo_id or weights.package} without a "
            "sha256; videozoo does not load unverified weights (add the sha256 printed by `sha256sum` "
            "to the registry)"
        )
    if weights.package is not None:
        return read_packaged(weights.package, filename=weights.filename, expected_sha256=weights.sha256)
    return fetch(
        weights.repo_id,
        revision=weights.revision,
        filename=weights.filename,
        expected_sha256=weights.sha256,
        force_download=force_download,
        cache_dir=cache_dir,
        endpoint=endpoint,
        verify=verify,
    )


def read_packaged(folder: str, *, filename: str = WEIGHTS_NAME, expected_sha256: str) -> LoadedWeights:
    """Read weights shipped in the installed package (``videozoo/<folder>/``), verified like a download."""
    from importlib.resources import files

    # an installed package is a directory on disk (wheels are unpacked); a zipped one would need copying out first
    directory = Path(str(files("videozoo").joinpath(folder)))
    hint = (
        f"\nThese weights ship inside the videozoo package ({directory}); the installation is damaged or "
        "incomplete: reinstall videozoo (`pip install --force-reinstall videozoo`; in a checkout, "
        "`git checkout videozoo/assets`)."
    )
    file = directory / filename
    try:
        if not file.is_file():
            raise WeightsFormatError(f"{file} is missing")
        header = check_safetensors(file)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{err}{hint}") from None
    config = read_config(directory / CONFIG_NAME, weights_file=filename)
    sha = verify_file(file, config=config, expected_sha256=expected_sha256, hint=hint)  # always hashed: a pin
    return LoadedWeights(
        state_dict=load_safetensors(file),
        config=config,
        path=file,
        metadata=dict(header.get("__metadata__") or {}),
        sha256=sha,
    )


def fetch(
    repo_id: str,
    *,
    revision: str | None,
    filename: str = WEIGHTS_NAME,
    expected_sha256: str | None = None,
    force_download: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    verify: str | None = None,
) -> LoadedWeights:
    """Download ``filename`` (and ``config.json`` from the same commit) and read it, verified as a local file is."""
    from huggingface_hub import try_to_load_from_cache

    hub_args: dict[str, Any] = {"cache_dir": cache_dir, "endpoint": endpoint}
    was_cached = not force_download and isinstance(
        try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision), str
    )
    path = _download(repo_id, filename, revision=revision, force_download=force_download, **hub_args)
    hint = _cache_hint(path, repo_id, revision, cached=was_cached, endpoint=endpoint)
    try:
        header = check_safetensors(path)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{err}{hint}") from None
    # config.json from the commit the weights resolved to, even if a branch moved in between
    commit = _snapshot_commit(path) or revision
    file = PurePosixPath(filename)  # a repo may hold several models in subfolders, each with its config
    config = _download_config(
        repo_id, str(file.parent / CONFIG_NAME), revision=commit, weights_file=file.name, **hub_args
    )
    sha = verify_file(path, config=config, expected_sha256=expected_sha256, verify=verify, hint=hint)
    return LoadedWeights(
        state_dict=load_safetensors(path),
        config=config,
        path=path,
        metadata=dict(header.get("__metadata__") or {}),
        sha256=sha,
    )


def _download(repo_id: str, filename: str, *, revision: str | None, **kwargs: Any) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                library_name="videozoo",
                library_version=_videozoo_version(),
                **kwargs,
            )
        )
    except Exception as err:  # every failure mode of the Hub client gets the same actionable message
        raise WeightsDownloadError(_failure_message(repo_id, filename, revision, err, kwargs)) from err


def _download_config(
    repo_id: str, filename: str, *, revision: str | None, weights_file: str, **kwargs: Any
) -> dict[str, Any] | None:
    from huggingface_hub.utils import EntryNotFoundError

    try:
        path = _download(repo_id, filename, revision=revision, **kwargs)
    except WeightsDownloadError as err:
        if not isinstance(err.__cause__, EntryNotFoundError):
            warnings.warn(f"weights of {repo_id} loaded without their config.json: {err}", stacklevel=3)
        return None
    return read_config(path, weights_file=weights_file)


def _snapshot_commit(path: Path) -> str | None:
    """The commit hash in a Hub cache path ``.../snapshots/<commit>/<file>``."""
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _cache_hint(path: Path, repo_id: str, revision: str | None, *, cached: bool, endpoint: str | None) -> str:
    repo_dir = next((p for p in path.parents if p.name.startswith("models--")), path.parent)
    where = f"{repo_id}@{revision or 'main'}"
    if cached:
        return (
            f"\nThis is the copy in the Hugging Face cache ({os.path.realpath(path)}); it was damaged after "
            f"download and is not used. Clear it with `hf cache rm model/{repo_id}` (or delete {repo_dir}), "
            "or pass force_download=True, then load again."
        )
    return (
        f"\nThe file was just downloaded from {_endpoint(endpoint)} ({where}): the server does not hold the "
        f"published file at that revision. Check HF_ENDPOINT and the registry's revision; the download stays "
        f"in {repo_dir} until you delete it (`hf cache rm model/{repo_id}`)."
    )


def _failure_message(repo_id: str, filename: str, revision: str | None, err: Exception, kwargs: dict[str, Any]) -> str:
    from huggingface_hub import constants

    where = f"{filename} of {repo_id} at revision {revision or 'main'}"
    msg = f"could not get {where} from {_endpoint(kwargs.get('endpoint'))}: {type(err).__name__}: {err}"
    cache = kwargs.get("cache_dir") or constants.HF_HUB_CACHE
    if getattr(constants, "HF_HUB_OFFLINE", False):
        msg += (
            f"\nHF_HUB_OFFLINE is set and the file is not in the cache ({cache}). Download it once with network "
            "access, or pass the path of a local weights directory instead."
        )
    else:
        msg += (
            f"\nThe file is not in the cache ({cache}) either. Check the network, HF_ENDPOINT and the repo id / "
            "revision; offline, pass the path of a local weights directory instead."
        )
    return msg


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return endpoint or constants.ENDPOINT
