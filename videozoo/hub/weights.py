"""Weights on disk: the safetensors + ``config.json`` + model card directory, read back without pickle.

A weights directory written by :func:`save_pretrained` holds::

    model.safetensors   the full state dict (safetensors, metadata {"format": "pt", "videozoo_arch": ...})
    config.json         name, architecture, builder config, classes, input spec, metrics, sha256 of the weights
    README.md           a Hugging Face model card

It is exactly what gets uploaded to the Hub, so a local directory and a Hub repo are read by the
same code (:func:`videozoo.hub.read_weights`). Format details: ``docs/weights.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from videozoo._version import __version__
from videozoo.hub import card as model_card  # render_card is looked up at each call: tests replace it
from videozoo.hub.errors import ArchitectureMismatchError, ChecksumError, WeightsFormatError, WeightsNotFoundError
from videozoo.registry import InputSpec, Metric, ModelEntry, UnknownModelError, get, input_spec_from_config

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "VERIFY_ENV",
    "WEIGHTS_NAME",
    "LoadedWeights",
    "cached_sha256",
    "check_architecture",
    "input_spec_from_config",
    "load_state_dict_strict",
    "read_local_weights",
    "save_pretrained",
    "sha256_file",
    "verify_file",
    "verify_mode",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
HEAD_PREFIX = "fc."  # the classifier is always `fc` (backbones/base.py)
_MAX_LISTED = 10  # keys listed per category in a strict-loading error
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
VERIFY_ENV = "VIDEOZOO_VERIFY"  # "size": skip hashing local weights against config.json (huge files you trust)
VERIFY_MODES = ("sha256", "size")
_HASHES: dict[tuple[Any, ...], str] = {}  # stat key -> sha256, see cached_sha256
_MAX_HASHES = 64
_RACY_SECONDS = 2.0
_RESAVE = " Copy or download it again, or save it again with videozoo.save_pretrained (which rewrites config.json)."


@dataclass
class LoadedWeights:
    """A state dict read from safetensors, with the ``config.json`` that came with it (if any)."""

    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)  # the safetensors header metadata
    sha256: str | None = None  # set when the file was hashed (verified downloads, expected_sha256)

    @property
    def architecture(self) -> str | None:
        """The architecture the weights were saved from: config.json first, safetensors metadata second."""
        if self.config and self.config.get("architecture"):
            return self.config["architecture"]
        return self.metadata.get("videozoo_arch")


# ------------------------------------------------------------------------------------------------
# hashing
# ------------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` pieces so large checkpoints never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, remembered for the rest of the process while the file's stat does not change.

    Loading the same multi-GB weights again (a notebook cell re-run, a sweep) then costs one ``stat``.
    The key is the file's identity and stat (device, inode, size, mtime, ctime): writing to the file
    changes it. A file written less than :data:`_RACY_SECONDS` before hashing began is not remembered:
    a second write within the file system's timestamp granularity could leave its stat unchanged
    (git's "racy" files), and a file modified that recently is still likely to change.
    """
    path = os.path.realpath(path)  # a Hub cache symlink and its blob are one file
    stat = os.stat(path)
    key = _stat_key(path, stat)
    if key in _HASHES:
        return _HASHES[key]
    started = time.time()
    digest = sha256_file(path)
    if _stat_key(path, os.stat(path)) == key and started - max(stat.st_mtime, stat.st_ctime) >= _RACY_SECONDS:
        if len(_HASHES) >= _MAX_HASHES:
            _HASHES.pop(next(iter(_HASHES)))  # oldest first: a process rarely loads more than a few files
        _HASHES[key] = digest
    return digest


def _stat_key(path: str, stat: os.stat_result) -> tuple[Any, ...]:
    return path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def verify_mode(verify: str | None = None) -> str:
    """The check to run against ``config.json``: ``verify``, else ``$VIDEOZOO_VERIFY``, else ``"sha256"``."""
    mode = verify if verify is not None else os.environ.get(VERIFY_ENV) or "sha256"
    if mode not in VERIFY_MODES:
        where = f"verify={verify!r}" if verify is not None else f"{VERIFY_ENV}={mode!r}"
        raise ValueError(
            f"{where}: expected one of {', '.join(map(repr, VERIFY_MODES))} ('sha256' hashes the "
            "file, 'size' only compares its size with config.json, for huge files you trust)"
        )
    return mode


def verify_file(
    file: Path,
    *,
    config: Mapping[str, Any] | None = None,
    expected_sha256: str | None = None,
    verify: str | None = None,
    hint: str = "",
) -> str | None:
    """Check ``file`` against ``expected_sha256`` and against what its ``config.json`` records.

    The size recorded in ``config`` is always compared (free); its sha256 too unless ``verify="size"``
    (:func:`verify_mode`). ``expected_sha256`` (a registry pin) is always hashed. The file is hashed
    at most once, through :func:`cached_sha256`. Raises :class:`ChecksumError` naming the file, what
    was expected and what was found; returns the digest when the file was hashed, else None.
    """
    mode = verify_mode(verify)  # first, so that a wrong value fails whatever the file
    size = file.stat().st_size
    recorded_size, recorded_sha = _recorded(config)
    if recorded_size is not None and size != recorded_size:
        raise ChecksumError(
            f"size mismatch for {file}: its config.json records {recorded_size} bytes, the file has {size}. It is "
            f"truncated, padded or not the file that was saved.{hint or _RESAVE}",
            expected=f"{recorded_size} bytes",
            actual=f"{size} bytes",
        )
    wanted = [(expected_sha256.lower(), "expected", "not the published one")] if expected_sha256 else []
    if recorded_sha and mode == "sha256":
        wanted.append((recorded_sha.lower(), "its config.json records", "not the file that was saved"))
    if not wanted:
        return None
    actual = cached_sha256(file)
    for want, whose, other in wanted:
        if actual != want:
            raise ChecksumError(
                f"sha256 mismatch for {file} ({size} bytes): {whose} {want}, got {actual}. The file is corrupted, "
                f"truncated or {other}.{hint or _RESAVE}",
                expected=want,
                actual=actual,
            )
    return actual


def _recorded(config: Mapping[str, Any] | None) -> tuple[int | None, str | None]:
    """The ``size`` and ``sha256`` that ``config.json`` records for its weights file (either may be absent)."""
    size, sha = (config or {}).get("size"), (config or {}).get("sha256")
    if (size is not None and (not isinstance(size, int) or isinstance(size, bool))) or (
        sha is not None and not isinstance(sha, str)
    ):
        raise WeightsFormatError(
            f"config.json records size={size!r}, sha256={sha!r}: expected an integer number "
            "of bytes and a hex digest, as written by videozoo.save_pretrained"
        )
    return size, sha


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------
def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    metrics: Iterable[Metric | Mapping[str, Any]] = (),
    class_names: Iterable[str] | None = None,
    card: Mapping[str, Any] | None = None,
    entry: ModelEntry | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card into ``directory``.

    ``model`` is anything built by the registry (it carries ``zoo_name``, ``zoo_arch`` and
    ``zoo_config``); ``entry`` defaults to its registry entry and supplies the input spec, paper,
    licence and provenance. ``metrics`` are the numbers measured for *these* weights (``Metric``
    or dicts with the same fields), ``class_names`` the labels of the head, and ``card`` extra
    card fields such as ``{"recipe_command": ..., "data": ..., "epochs": ...}``.

    The three files are first written to temporary files in ``directory`` and only then renamed
    over the old ones, so an interrupted save never leaves a partial ``model.safetensors``.
    Returns the directory.
    """
    from safetensors import torch as st  # looked up at call time: tests simulate a failing writer

    name, arch, builder_config = _zoo_identity(model, entry)
    if entry is None:
        try:
            entry = get(name)
        except UnknownModelError:
            entry = None
    num_classes = _num_classes(model)
    names = list(class_names) if class_names is not None else None
    if names is not None and num_classes and len(names) != num_classes:
        raise ValueError(f"{len(names)} class_names given for a head with {num_classes} classes")
    state_dict = _state_dict_for_saving(model)
    spec = getattr(model, "input_spec", None)  # a model may carry its own spec; else the registry's
    spec = spec if isinstance(spec, InputSpec) else (entry.input_spec if entry else None)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        tmp = _stage(
            directory,
            WEIGHTS_NAME,
            lambda p: st.save_file(
                state_dict, str(p), metadata={"format": "pt", "videozoo_arch": arch, "videozoo_name": name}
            ),
        )
        staged.append((tmp, directory / WEIGHTS_NAME))
        config = {
            "format_version": FORMAT_VERSION,
            "videozoo_version": _videozoo_version(),
            "name": name,
            "architecture": arch,
            "builder_config": _jsonable(builder_config, "builder_config"),
            "num_classes": num_classes,
            "num_features": getattr(model, "num_features", None),
            "class_names": names,
            "input_spec": _jsonable(dataclasses.asdict(spec), "input_spec") if spec else None,
            "metrics": [_metric_dict(m) for m in metrics],
            "weights_file": WEIGHTS_NAME,
            "sha256": sha256_file(tmp),
            "size": tmp.stat().st_size,  # checked on every load, even when hashing is skipped
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "card": _jsonable(dict(card or {}), "card"),
        }
        text = json.dumps(config, indent=2) + "\n"
        staged.append((_stage(directory, CONFIG_NAME, lambda p: p.write_text(text)), directory / CONFIG_NAME))
        readme = model_card.render_card(config, entry=entry, directory=directory)
        staged.append((_stage(directory, CARD_NAME, lambda p: p.write_text(readme)), directory / CARD_NAME))
        for tmp_path, final in staged:
            os.replace(tmp_path, final)
    finally:
        for tmp_path, _ in staged:
            tmp_path.unlink(missing_ok=True)  # no-op after a successful replace
    return directory


def _stage(directory: Path, name: str, write: Callable[[Path], Any]) -> Path:
    """Write a temporary sibling of ``directory / name``, fsynced; removed again if writing fails.

    Same directory so that the final ``os.replace`` is an atomic rename on one file system.
    The name is unique per call (several processes may save into one directory), and the file
    keeps the usual umask permissions: a 0600 weights file would be unreadable to colleagues.
    """
    tmp = directory / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb"):  # created here, so it gets the umask's permissions ...
            pass
        mode = tmp.stat().st_mode & 0o777
        write(tmp)
        os.chmod(tmp, mode)  # ... which some writers (safetensors: 0600) would otherwise narrow
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _zoo_identity(model: nn.Module, entry: ModelEntry | None) -> tuple[str, str, dict[str, Any]]:
    name = getattr(model, "zoo_name", None) or (entry.name if entry else None)
    arch = getattr(model, "zoo_arch", None) or (entry.arch if entry else None)
    if not name or not arch:
        raise ValueError(
            f"{type(model).__name__} has no zoo_name/zoo_arch: build it with videozoo.create_model(...) or "
            "videozoo.load(...), or pass entry=videozoo.registry.get(<architecture name>)."
        )
    config = getattr(model, "zoo_config", None)
    if config is None:
        config = {k: v for k, v in (entry.config if entry else {}).items() if k != "num_classes"}
    return name, arch, dict(config)


def _num_classes(model: nn.Module) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    fc = getattr(model, "fc", None)
    return fc.out_features if isinstance(fc, nn.Linear) else 0


def _state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict as contiguous CPU tensors that share no memory.

    safetensors refuses aliased tensors (tied weights, a module registered twice); rather than
    dropping the aliases (which would make strict loading report them missing) each alias gets
    its own copy, so the file holds every key the model's ``state_dict()`` has.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _metric_dict(m: Metric | Mapping[str, Any]) -> dict[str, Any]:
    d = dataclasses.asdict(m) if isinstance(m, Metric) else dict(m)
    missing = {"task", "metric", "value"} - d.keys()
    if missing:
        raise ValueError(f"metric {d} lacks {sorted(missing)}")
    return {
        "task": d["task"],
        "metric": d["metric"],
        "value": d["value"],
        "protocol": d.get("protocol") or "",
        "source": d.get("source") or "",
        **d,
    }


def _jsonable(value: Any, where: str) -> Any:
    """``value`` with tuples as lists and paths as strings; anything else non-JSON is an error."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"{where} holds a {type(value).__name__} ({value!r}), which config.json cannot store")


def _videozoo_version() -> str:
    return __version__


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_local_weights(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    filename: str = WEIGHTS_NAME,
    verify: str | None = None,
) -> LoadedWeights:
    """Read a weights directory or a ``.safetensors`` file (see :func:`videozoo.hub.read_weights`).

    The file is checked against the ``config.json`` beside it (:func:`verify_file`): its size always,
    its sha256 unless ``verify="size"`` (or ``VIDEOZOO_VERIFY=size``).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        file = path / filename
        if not file.is_file():
            found = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
            raise WeightsFormatError(
                f"no {filename} in {path} (it holds: {', '.join(found[:10]) or 'nothing'}). Expected a directory "
                "written by videozoo.save_pretrained; official .pth/.tar checkpoints are converted once with "
                "`videozoo convert`."
            )
    elif path.is_file():
        file = path
    else:
        raise WeightsNotFoundError(
            f"weights path {_shown(path)} does not exist (expected a directory written by "
            f"videozoo.save_pretrained, or a {filename} file)"
        )
    header = check_safetensors(file)
    config = read_config(file.parent / CONFIG_NAME, weights_file=file.name)
    sha = verify_file(file, config=config, expected_sha256=expected_sha256, verify=verify)
    return LoadedWeights(
        state_dict=load_safetensors(file),
        config=config,
        path=file,
        metadata=dict(header.get("__metadata__") or {}),
        sha256=sha,
    )


def _shown(path: Path) -> str:
    """``path`` for a message; a relative one also resolved, since it depends on the working directory."""
    return str(path) if path.is_absolute() else f"{path} ({Path.cwd() / path})"


def check_safetensors(file: Path) -> dict[str, Any]:
    """Validate the safetensors framing of ``file`` and return its JSON header.

    The checks run on the first bytes only, so a truncated download or a pickle checkpoint gets
    a message saying what it is, instead of a bare parser error from deep inside safetensors.
    """
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsFormatError(
                f"{file} is {size} bytes, too short to be safetensors (expected {file.name} "
                "written by videozoo.save_pretrained); the file is empty or truncated"
            )
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            raise WeightsFormatError(f"{file} is not a safetensors file: {_sniff(head)}")
        if 8 + n > size:
            raise WeightsFormatError(
                f"{file} is truncated: its safetensors header alone needs {8 + n} bytes but the "
                f"file has {size} (an interrupted download or copy?)"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WeightsFormatError(f"{file} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{file} is not a safetensors file: its header is not a JSON object")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise WeightsFormatError(f"{file} has a malformed safetensors header (a tensor without data_offsets)") from None
    if 8 + n + end != size:
        raise WeightsFormatError(
            f"{file} is truncated or padded: its header describes {8 + n + end} bytes but the file has {size} "
            "(an interrupted download or copy?). Delete it and download or save it again."
        )
    return header


def _sniff(head: bytes) -> str:
    """Name what a non-safetensors file most likely is, and what to do with it."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return (
            "it looks like a torch.save checkpoint (zip/pickle). videozoo never unpickles weights: convert "
            "official checkpoints once with `videozoo convert`, then load the resulting directory"
        )
    if head.startswith(b"version "):
        return "it is a Git LFS pointer, not the file itself (run `git lfs pull` in the clone)"
    if head.lstrip().startswith((b"<", b"{")):
        return "it is a text file (an HTML error page or JSON saved in place of the weights?)"
    return "its first 8 bytes are not a plausible safetensors header length"


def load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Load all tensors of an already validated file; parser errors become :class:`WeightsFormatError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsFormatError(f"{file} could not be read as safetensors: {err}") from err


def read_config(path: Path, *, weights_file: str | None = None) -> dict[str, Any] | None:
    """``config.json`` beside a weights file, or None when there is none or it describes another file."""
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsFormatError(
            f"{path} is not valid JSON ({err}); expected the config.json written by videozoo.save_pretrained"
        ) from None
    if not isinstance(config, dict):
        raise WeightsFormatError(f"{path} must hold a JSON object, found {type(config).__name__}")
    if weights_file and config.get("weights_file", weights_file) != weights_file:
        return None  # e.g. an extra export next to model.safetensors: this config is not about it
    return config


# ------------------------------------------------------------------------------------------------
# loading into a model
# ------------------------------------------------------------------------------------------------
def check_architecture(
    config: Mapping[str, Any] | LoadedWeights | None,
    entry_or_name: ModelEntry | str | nn.Module,
) -> None:
    """Raise :class:`ArchitectureMismatchError` if the weights were saved from another architecture.

    ``config`` is a weights ``config.json`` (or a :class:`LoadedWeights`); without an
    ``architecture`` there is nothing to check and the strict key check has the last word.
    """
    if isinstance(config, LoadedWeights):
        source, got, saved_as = config.path, config.architecture, (config.config or {}).get("name")
    elif config:
        source, got, saved_as = "the weights", config.get("architecture"), config.get("name")
    else:
        return
    if not got:
        return
    if isinstance(entry_or_name, nn.Module):
        target, want = (
            getattr(entry_or_name, "zoo_name", type(entry_or_name).__name__),
            getattr(entry_or_name, "zoo_arch", None),
        )
    else:
        entry = get(entry_or_name) if isinstance(entry_or_name, str) else entry_or_name
        target, want = entry.name, entry.arch
    if want is not None and got != want:
        raise ArchitectureMismatchError(
            f"{source} were saved from {saved_as or got!r} (architecture {got!r}), but they are being loaded into "
            f"{target!r}, whose architecture is {want!r}. Load them with videozoo.load({saved_as or got!r}, "
            "weights=...) instead, or pick weights made for this model."
        )


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, allow_head_mismatch: bool = False
) -> list[str]:
    """Load ``state_dict`` into ``model`` and fail loudly, listing exactly what does not fit.

    Missing keys, unexpected keys and shape mismatches are reported together (at most ten of each,
    with counts) in one :class:`WeightsFormatError`. With ``allow_head_mismatch`` the classifier
    (``fc.*``) is exempt: a checkpoint head that is absent, extra or of another size is skipped
    and the model keeps its freshly initialised head (used when the caller asks for a new
    ``num_classes``). Returns the head keys that were skipped.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    skipped: list[str] = []
    if allow_head_mismatch:

        def is_head(k: str) -> bool:
            return k.startswith(HEAD_PREFIX)

        skipped = [k for k in missing + unexpected + wrong_shape if is_head(k)]
        missing, unexpected, wrong_shape = (
            [k for k in ks if not is_head(k)] for ks in (missing, unexpected, wrong_shape)
        )
    if missing or unexpected or wrong_shape:
        raise WeightsFormatError(_key_report(model, state_dict, own, missing, unexpected, wrong_shape))
    to_load = {k: v for k, v in state_dict.items() if k not in skipped}
    result = model.load_state_dict(to_load, strict=False)
    leftover = [k for k in [*result.missing_keys, *result.unexpected_keys] if k not in skipped]
    if leftover:  # cannot happen with a plain module; guards modules that override load_state_dict
        raise WeightsFormatError(f"load_state_dict left keys unmatched: {_listing(leftover)}")
    return skipped


def _key_report(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    wrong_shape: list[str],
) -> str:
    name = getattr(model, "zoo_name", None) or type(model).__name__
    lines = [f"the state dict does not fit {name} ({len(state_dict)} keys given, the model has {len(own)}):"]
    if missing:
        lines.append(f"  {len(missing)} missing: {_listing(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected: {_listing(unexpected)}")
    if wrong_shape:
        shapes = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong_shape]
        lines.append(f"  {len(wrong_shape)} of wrong shape: {_listing(shapes)}")
    prefixes = {k.split(".", 1)[0] for k in unexpected}
    if unexpected and prefixes <= {"module", "encoder_q", "backbone", "model", "video_network"}:
        lines.append(
            f"  hint: every unexpected key starts with {sorted(prefixes)}: this is a training checkpoint "
            "(DDP/method wrapper); convert it with `videozoo convert` instead of loading it directly"
        )
    elif all(k.startswith(HEAD_PREFIX) for k in missing + unexpected + wrong_shape):
        lines.append(
            "  hint: only the classifier (fc.*) differs: pass num_classes to get a new head (allow_head_mismatch=True)"
        )
    return "\n".join(lines)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
