"""Recipe configuration in nanoGPT's spirit: defaults in one dataclass, presets as dicts, the command line on top.

    @dataclass
    class Config:
        data: str = "data/ucf101"   # dataset root
        epochs: int = 300
        lr: float = 1e-3            # Adam learning rate
        run_dir: str = "runs/coclr" # config.json, checkpoints, TensorBoard logs, exported weights

    PRESETS = {"ucf101": {"epochs": 300}, "smoke": {"epochs": 1, "max_steps": 2}}
    config, run_info = parse_config(Config(), PRESETS)

    python recipes/coclr.py --preset smoke --lr 3e-4 epochs=2 --amp=bf16

``--preset a,b`` applies presets in order, then ``--key value``, ``--key=value`` or ``key=value``
overrides, each coerced to the field's type (int, float, bool, str, Path, tuple, list, Literal,
Optional; ``none`` for None; ``1,2,3`` for sequences; a bare ``--flag`` sets a bool). Nested
dataclasses are reached with dots (``--optim.lr``); with ``flat=True`` a nested key may also be written by its
last part alone (``--lr``), which must then name one key only (:func:`flat_names`). Unknown keys are rejected with
the nearest key.
Keys are written with dashes or underscores alike (``--run-dir``, ``--run_dir``, ``run-dir=...``); ``--help``
lists every key, dashed, with its type, default and the comment beside it, and the presets. ``--print-config``
prints the resolved configuration as JSON and exits without writing anything. Preset values may be
:class:`~videozoo.data.transforms.presets.Sourced` (a value with where it comes from): the value is used.
The final config goes to ``<run_dir>/config.json`` together with ``run_info`` (command, preset, overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import inspect
import json
import os
import platform
import re
import shlex
import sys
import time
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from videozoo.data.transforms.presets import Sourced

__all__ = ["ConfigError", "add_arguments", "config_to_dict", "flat_names", "parse_config", "save_config"]

C = TypeVar("C")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
PRINT_CONFIG = "print_config"  # --print-config: print the resolved config as JSON and exit


def _plain(value: Any) -> Any:
    """A preset value without its source annotation (:class:`Sourced`)."""
    return value.value if isinstance(value, Sourced) else value


class ConfigError(ValueError):
    """A bad preset, key or value; the message says what would be accepted."""


def parse_config(
    defaults: C,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    argv: Sequence[str] | None = None,
    *,
    run_dir_field: str = "run_dir",
    save: bool = True,
    exit_on_error: bool = True,
    flat: bool = False,
    aliases: Mapping[str, str] | None = None,
) -> tuple[C, dict[str, Any]]:
    """Apply presets and command-line overrides to the dataclass instance ``defaults``.

    Returns ``(config, run_info)``. ``argv`` defaults to ``sys.argv[1:]``. With ``save`` and a
    ``run_dir_field`` (a dotted key for a nested one) on the config, rank 0 writes ``<run_dir>/config.json``.
    ``flat``: nested keys may be written by their last part (``--lr`` for ``--optim.lr``), in presets too.
    ``aliases``: more names for keys, ``{"run_dir": "run.out_dir"}`` (one spelling across the recipes). Errors
    print a one-line message and exit with status 2, as argparse does; ``exit_on_error=False`` raises
    :class:`ConfigError`.
    """
    if isinstance(defaults, type):
        defaults = defaults()
    presets = dict(presets or {})
    argv = list(sys.argv[1:] if argv is None else argv)
    fields = _flat_fields(type(defaults))
    extra = dict(aliases or {})
    unknown = sorted(key for key in extra.values() if key not in fields)
    if unknown:
        raise ValueError(f"aliases name keys the config does not have: {', '.join(unknown)}")
    # a flat-name clash is the config's own error: raised as it is; flat names come last so --help shows them
    aliases = {**extra, **(flat_names(type(defaults)) if flat else {})}
    try:
        names, pairs = _split_argv(argv, fields, aliases)
        if names is None:  # --help
            print(_help(defaults, presets, fields, aliases, extra))
            raise SystemExit(0)
        values: dict[str, Any] = {}
        for name in names:
            if name not in presets:
                raise ConfigError(f"unknown preset {name!r}{_hint(name, presets)}; presets: {', '.join(presets)}")
            for key, value in presets[name].items():
                key = aliases.get(key, key)
                _check_key(key, fields, aliases, where=f"preset {name!r} sets ")
                values[key] = _plain(value)
        overrides = {}
        for key, text in pairs:
            if key == PRINT_CONFIG:
                continue
            key = aliases.get(key, key)
            _check_key(key, fields, aliases)
            overrides[key] = _coerce(text, fields[key], key)
        config = _replace(defaults, {**values, **overrides})
    except ConfigError as e:
        if not exit_on_error:
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if any(key == PRINT_CONFIG for key, _ in pairs):  # the resolved configuration, and nothing written
        print(json.dumps(config_to_dict(config), indent=2))
        raise SystemExit(0)
    run_info = {
        "command": shlex.join([*_launcher(), sys.argv[0] or "-", *argv]),
        "argv": argv,
        "preset": ",".join(names) or None,
        "overrides": overrides,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }
    run_dir = _get(config, run_dir_field)
    if save and run_dir and os.environ.get("RANK", "0") == "0":
        save_config(config, Path(run_dir) / "config.json", run_info=run_info)
    return config, run_info


def _get(config: Any, key: str) -> Any:
    """The value of a (dotted) key of ``config``, or None where there is no such field."""
    for part in key.split("."):
        config = getattr(config, part, None)
    return config


def flat_names(cls: type) -> dict[str, str]:
    """``{"lr": "optim.lr", ...}``: every nested key of the dataclass ``cls`` by its last part alone.

    Raises :class:`ConfigError` when a last part names two keys (``optim.seed`` and ``run.seed``, or a nested key
    and a top-level one): a config that offers flat names calls this where it is defined, so the clash is found
    when the field is added, not when someone first types the name.
    """
    keys: dict[str, list[str]] = {}
    for key in _flat_fields(cls):
        keys.setdefault(key.rpartition(".")[2], []).append(key)
    clashes = {name: found for name, found in keys.items() if len(found) > 1}
    if clashes:
        raise ConfigError(
            f"{cls.__name__}: these keys share a last part, so a flat name would be ambiguous: "
            + "; ".join(f"{name}: {', '.join(found)}" for name, found in clashes.items())
        )
    return {name: found[0] for name, found in keys.items() if found[0] != name}


def _launcher() -> list[str]:
    """``python``, or the torchrun command that started this process (torchrun sets these variables)."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return ["python"]
    nodes, per_node = os.environ.get("GROUP_WORLD_SIZE", "1"), os.environ.get("LOCAL_WORLD_SIZE", "1")
    return ["torchrun", *([f"--nnodes={nodes}"] if nodes != "1" else []), f"--nproc_per_node={per_node}"]


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-safe dict of a (nested) dataclass: tuples become lists, paths strings."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def save_config(config: Any, path: str | os.PathLike[str], *, run_info: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"config": ..., "run": run_info}`` as JSON, atomically."""
    from videozoo.training.checkpoint import atomic_write_bytes

    payload = {"config": config_to_dict(config), "run": dict(run_info or {})}
    return atomic_write_bytes(path, json.dumps(payload, indent=2, default=str).encode() + b"\n")


# -- the same keys on an argparse parser ----------------------------------------------------------------
def add_arguments(
    parser: argparse.ArgumentParser,
    defaults: Any,
    *,
    skip: Collection[str] = (),
    spellings: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """An option on ``parser`` for every key of the dataclass instance ``defaults``, by its flat name (``--lr``,
    ``--batch-size``; a bool as ``--save`` / ``--no-save``), read as :func:`parse_config` reads it.

    An option left out of the command line is left out of the namespace (``argparse.SUPPRESS``): the defaults stay
    the dataclass's, written once. Its help is the comment beside the field, then the default. ``skip``: flat names
    given no option; ``spellings``: more flags for a flat name (``{"out_dir": ["--out"]}``). The namespace holds
    each given value under the flat name (``args.lr``).
    """
    cls = type(defaults)
    names = {key: name for name, key in flat_names(cls).items()}
    comments = _field_comments(cls)
    for key, tp in _flat_fields(cls).items():
        name = names.get(key, key)
        if name in skip:
            continue
        flags = [f"--{_dashed(name)}", *(spellings or {}).get(name, ())]
        help_ = f"{comments.get(key, '')} (default: {_value_text(_get(defaults, key))})".strip().replace("%", "%%")
        if tp is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_)  # fmt: skip
        else:
            parser.add_argument(*flags, dest=name, type=_argument_type(tp, name), metavar=_metavar(tp),
                                default=argparse.SUPPRESS, help=help_)  # fmt: skip


def _argument_type(tp: Any, name: str) -> Callable[[str], Any]:
    def read(text: str) -> Any:
        try:
            return _coerce(text, tp, name)
        except ConfigError as e:  # argparse names the option itself
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"--{name}: ")) from None

    return read


def _metavar(tp: Any) -> str:
    """``adam|adamw|sgd``, ``N|none``, ``A,B,...``: what an option takes, without brackets (argparse's usage line)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return "|".join("none" if a is type(None) else _metavar(a) for a in args)
    if origin is Literal:
        return "|".join(map(str, args))
    if origin in (tuple, list) or tp in (tuple, list):
        return "A,B,..."
    return {int: "N", float: "X", bool: "true|false", dict: "JSON"}.get(origin or tp, "TEXT")


def _value_text(value: Any) -> str:
    """A default as the command line writes it: ``none``, ``true``, ``400,450``."""
    if value is None or isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "()"
    return str(value)


# -- parsing ----------------------------------------------------------------------------------------
def _split_argv(
    argv: list[str],
    fields: dict[str, Any],
    aliases: Mapping[str, str],
) -> tuple[list[str] | None, list[tuple[str, str]]]:
    """(preset names, [(key, text)]); names is None when help was asked for."""
    names: list[str] = []
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            return None, []
        if token.startswith("--") and "=" in token:
            key, text = token[2:].split("=", 1)
        elif token.startswith("--"):
            key, nxt = token[2:], argv[i + 1] if i + 1 < len(argv) else None
            name = key.replace("-", "_")
            tp = bool if name == PRINT_CONFIG else fields.get(aliases.get(name, name))
            is_flag = _is_flag(tp)
            if nxt is None or nxt.startswith("--") or (is_flag and not _reads_as(nxt, tp, key)):
                if not is_flag:
                    raise ConfigError(f"--{key} needs a value")
                text = "true"  # a bare --flag
            else:
                text, i = nxt, i + 1
        elif "=" in token:
            key, text = token.split("=", 1)
        else:
            raise ConfigError(f"cannot read {token!r}: write --key value, --key=value or key=value")
        key = key.replace("-", "_")
        if key == "preset":
            names += [n for n in text.split(",") if n]
        else:
            pairs.append((key, text))
        i += 1
    return names, pairs


def _is_flag(tp: Any) -> bool:
    """A bool field, or one that may be a bool (``bool | Literal["auto"]``): a bare ``--key`` means true."""
    return tp is bool or (typing.get_origin(tp) in (Union, types.UnionType) and bool in typing.get_args(tp))


def _reads_as(text: str, tp: Any, key: str) -> bool:
    """Whether ``text`` is a value of ``tp`` (so after a flag it is the flag's value, not the next token)."""
    try:
        _coerce(text, tp, key)
    except ConfigError:
        return False
    return True


def _check_key(key: str, fields: dict[str, Any], aliases: Mapping[str, str], where: str = "") -> None:
    if key not in fields:
        raise ConfigError(f"{where}unknown key {key!r}{_hint(key, [*aliases, *fields])}; --help lists all keys")


def _hint(name: str, choices: Any) -> str:
    """`` (did you mean 'x'?)`` for the nearest choice, matching dotted keys by their last part too."""
    names = {c.rsplit(".", 1)[-1]: c for c in choices if "." in c} | {c: c for c in choices}
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" (did you mean {names[close[0]]!r}?)" if close else ""


def _coerce(text: str, tp: Any, key: str) -> Any:
    """``text`` as a value of type ``tp``; raises ConfigError naming the key and the expected type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if tp is Any:
            return text
        if origin in (Union, types.UnionType):
            if text.lower() in ("none", "null") and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            for option in options[:-1]:
                with contextlib.suppress(ConfigError):
                    return _coerce(text, option, key)
            return _coerce(text, options[-1], key)
        if origin is Literal:
            match = [a for a in args if str(a) == text]
            if not match:
                raise ConfigError(f"--{key}: {text!r} is not one of {', '.join(map(str, args))}")
            return match[0]
        if tp is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if tp is int:
            return int(text) if re.fullmatch(r"[+-]?\d[\d_]*", text) else _integral(float(text))
        if tp in (float, str, Path):
            return tp(text)
        if origin in (tuple, list) or tp in (tuple, list):
            items = [s.strip() for s in text.strip().strip("()[]").split(",") if s.strip()]
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(items) != len(args):
                    raise ConfigError(f"--{key}: expected {len(args)} comma-separated values, got {text!r}")
                return tuple(_coerce(s, a, key) for s, a in zip(items, args))
            element = args[0] if args else Any
            values = [_coerce(s, element, key) for s in items]
            return tuple(values) if (origin or tp) is tuple else values
        if origin is dict or tp is dict:
            return json.loads(text)
    except ConfigError:
        raise
    except (ValueError, TypeError):
        raise ConfigError(f"--{key}: cannot read {text!r} as {_type_name(tp)}") from None
    raise ConfigError(f"--{key}: fields of type {_type_name(tp)} cannot be set from the command line")


def _integral(value: float) -> int:
    if not value.is_integer():
        raise ValueError
    return int(value)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


# -- dataclass plumbing -----------------------------------------------------------------------------
def _flat_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """``{"lr": float, "optim.betas": tuple[float, float], ...}``: every settable key and its type."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"parse_config needs a dataclass instance of defaults, got {cls!r}")
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_flat_fields(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hints[f.name]
    return out


def _replace(config: Any, values: Mapping[str, Any]) -> Any:
    """``config`` with dotted keys set, nested dataclasses replaced rather than mutated."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, sub in nested.items():
        top[head] = _replace(getattr(config, head), sub)
    return dataclasses.replace(config, **top)


def _help(
    defaults: Any,
    presets: Mapping[str, Mapping[str, Any]],
    fields: dict[str, Any],
    aliases: Mapping[str, str],
    extra: Mapping[str, str],
) -> str:
    comments = _field_comments(type(defaults))
    lines = [
        f"usage: {Path(sys.argv[0]).name or 'recipe'} [--preset NAME[,NAME]] [--key value | --key=value | "
        "key=value ...] [--print-config]",
        "",
        "presets (applied in order, before the overrides):",
    ]
    width = max([12, *map(len, presets)])
    for name, preset in presets.items():
        shown = ", ".join(f"{_dashed(k)}={_plain(v)!r}" for k, v in preset.items())
        lines.append(f"  {name:<{width}} " + (shown or "(defaults)"))
    lines += ["", "keys (default; --run-dir and --run_dir are the same key):"]
    flat = {key: name for name, key in aliases.items() if name not in extra}  # the shown spelling of each key
    for key, tp in fields.items():
        shown = f"--{_dashed(flat[key])} (--{_dashed(key)})" if key in flat else f"--{_dashed(key)}"
        comment = comments.get(key, "")
        lines.append(f"  {shown} {_type_name(tp)} = {_get(defaults, key)!r}" + (f"    # {comment}" if comment else ""))
    for name, key in extra.items():
        lines.append(f"  --{_dashed(name)}    the same as --{_dashed(flat.get(key, key))}")
    lines += ["", "  --print-config    print the resolved configuration as JSON and exit (nothing is written)"]
    return "\n".join(lines)


def _dashed(key: str) -> str:
    """The spelling --help shows: ``run_dir`` -> ``run-dir`` (``aug.crop_size`` -> ``aug.crop-size``)."""
    return key.replace("_", "-")


def _field_comments(cls: type, prefix: str = "") -> dict[str, str]:
    """The ``# comment`` written beside each field in the source of ``cls`` (or of the dataclass it extends), by
    (dotted) key, nested dataclasses too."""
    comments: dict[str, str] = {}
    for klass in (k for k in cls.__mro__ if dataclasses.is_dataclass(k)):  # a subclass's own comment first
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            source = ""
        for m in re.finditer(r"^\s+(\w+)\s*:[^\n#]*#\s*(.+)$", source, flags=re.MULTILINE):
            comments.setdefault(prefix + m.group(1), m.group(2).strip())
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            comments.update(_field_comments(tp, f"{prefix}{name}."))
    return comments
