"""The ``videozoo`` command: list and describe the zoo, embed videos, check data.

Every subcommand is a thin layer over the public API so that what the command does can also be
done from Python in the same words.

Exit status: 0 success; 1 some inputs failed (each listed on stderr, the others processed); 2 a usage error: bad
arguments or values, an unknown model, a missing file, weights that cannot be had or used, an unreadable input
the command cannot do without. A usage error is one line, ``videozoo CMD: error: ...``, never a traceback
(``--debug`` or ``VIDEOZOO_DEBUG=1`` adds it). 3 an internal error, a bug: the traceback is printed with a request
to report it. 130 interrupted (Ctrl-C).

Startup: nothing heavy (torch, PyAV, OpenCV, decord, timm) is imported before a command needs it. The parser is
built from this module alone: ``convert``, ``publish``, ``flow`` and ``finetune`` take their arguments from their
own modules (``finetune``'s flags are the fields of FinetuneConfig), which are imported only when that command
runs. ``--help``, ``--version``, ``list`` and ``info`` answer without torch (``benchmarks/startup.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    COMMANDS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


# -- zoo ----------------------------------------------------------------------------------------
@command
def cmd_list(args: argparse.Namespace) -> int:
    from videozoo import registry

    pretrained = {"all": None, "pretrained": True, "backbones": False}[args.kind]
    names = registry.list_models(args.pattern, pretrained, tiny=None if args.tiny else False)
    if args.json:
        print(json.dumps(names, indent=2))
        return 0
    rows = [(n, registry.get(n)) for n in names]
    width = max((len(n) for n, _ in rows), default=10)
    for name, entry in rows:
        status = entry.weights.status if entry.weights else "architecture"
        print(f"{name:<{width}}  {entry.kind:<10}  {status:<32}  {entry.input_spec.describe()}")
    print(f"{len(rows)} models")
    return 0


@command
def cmd_info(args: argparse.Namespace) -> int:
    from videozoo import model_info

    info = model_info(args.name)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['name']} ({info['kind']}): {info['description']}")
    print(f"  architecture : {info['arch']}  {info['config'] or ''}")
    print(f"  input        : {info['input_spec_summary']}")
    print(f"  weights      : {info['weights_status']}")
    if info["weights"] and not info["weights"]["repo_id"]:
        print(f"  how to get   : {info['weights']['how_to_get']}")
    print(f"  source       : {info['source']}")
    print(f"  paper        : {info['paper']}")
    print(f"  licence      : {info['licence']}")
    for m in info["metrics"]:
        print(f"  metric       : {m['task']} {m['metric']} = {m['value']}  ({m['protocol']})")
    return 0


@command
def cmd_embed(args: argparse.Namespace) -> int:
    import videozoo
    from videozoo.eval.features import embed_videos, input_report, save_features

    model = videozoo.load(args.model, weights=args.weights, pretrained=not args.random_init)
    # no readable video at all raises here, before any file is written
    result = embed_videos(model, args.videos, clips=args.clips, device=args.device, progress=not args.quiet)
    out = save_features(result, args.out, model_name=args.model)  # the skipped and padded videos go in it too
    print(f"wrote {result.features.shape[0]} x {result.features.shape[1]} features to {out}")
    for line in input_report(result.failed, result.padded, total=len(args.videos), action="embedded"):
        print(line, file=sys.stderr)
    return 0 if not result.failed else 1


@command
def cmd_predict(args: argparse.Namespace) -> int:
    import videozoo
    from videozoo.eval.features import input_report
    from videozoo.eval.metrics import write_predictions_csv
    from videozoo.eval.video_predict import predict_videos

    model = videozoo.load(args.model, weights=args.weights)
    preds = predict_videos(
        model, args.videos, clips=args.clips, crops=args.crops, topk=args.topk, average=args.average,
        device=args.device, progress=not args.quiet,
    )  # fmt: skip
    for p in preds:
        print(p.format())
    ok = [p for p in preds if p.scores is not None]
    if args.csv and ok:  # none readable: no CSV, rather than an empty one
        import torch

        scores = torch.stack([p.scores for p in ok])
        class_names = getattr(model, "class_names", None)
        write_predictions_csv(args.csv, paths=[p.path for p in ok], scores=scores, class_names=class_names,
                              topk=args.topk)  # fmt: skip
    failed = {p.path: p.error for p in preds if p.error is not None}
    padded = {p.path: p.padded for p in preds if p.padded is not None}
    for line in input_report(failed, padded, total=len(preds), action="predicted"):
        print(line, file=sys.stderr)
    return 0 if not failed else 1


@command
def cmd_finetune(args: argparse.Namespace) -> int:
    import videozoo
    from videozoo.eval.finetune_config import config_from_args

    config = config_from_args(args)  # the protocol, then the flags given; the defaults are FinetuneConfig's
    _, result = videozoo.finetune(args.model, args.train, args.val, config=config)
    if "top1" in result.metrics:
        print(f"top-1 {100 * result.metrics['top1']:.2f}% over {result.metrics['num_videos']} videos "
              f"({result.metrics['description']})")  # fmt: skip
    for path, why in result.bad_videos.items():
        print(f"unreadable, replaced: {path}: {why}", file=sys.stderr)
    if result.padded_videos:  # listed one by one in the warning line the run logged, and in results.json
        print(f"{len(result.padded_videos)} videos were mostly padding (shorter than half a clip)", file=sys.stderr)
    if "top1" in result.metrics:  # the video-level test of this run wrote its files into the run folder
        for what, name in (("results", "results.json"), ("predictions", "predictions.csv"),
                           ("confusion matrix", "confusion_matrix.png")):  # fmt: skip
            if (Path(result.out_dir) / name).is_file():
                print(f"{what}: {Path(result.out_dir) / name}")
    print(f"model: {result.model_dir}")
    return 0 if not result.bad_videos else 1


@command
def cmd_search(args: argparse.Namespace) -> int:
    import videozoo
    from videozoo.eval.features import input_report, load_features
    from videozoo.eval.search import search_videos

    index = load_features(args.index)
    model_name = args.model or index.model
    if not model_name:
        raise ValueError(f"{args.index} does not name the model that built it; pass --model")
    model = videozoo.load(model_name, weights=args.weights, pretrained=not args.random_init)
    results = search_videos(model, args.queries, index, k=args.k, clips=args.clips, center=not args.no_center,
                            device=args.device)  # fmt: skip
    for query, hits in results.hits.items():
        print(query)
        for hit in hits:
            print(f"  {hit.rank:>3}. {hit.score:+.3f}  {hit.path}")
    for line in input_report(results.failed, results.padded, total=len(args.queries), action="searched"):
        print(line, file=sys.stderr)
    if index.failed:  # the index cannot return what it never held
        print(f"note: {len(index.failed)} videos were skipped when {args.index} was built", file=sys.stderr)
    return 0 if not results.failed else 1


# -- weights ------------------------------------------------------------------------------------
@command
def cmd_convert(args: argparse.Namespace) -> int:
    from videozoo.hub.converters import run_convert_command

    return run_convert_command(args)


@command
def cmd_publish(args: argparse.Namespace) -> int:
    from videozoo.hub.publish import run_publish_command

    return run_publish_command(args)


# -- data ---------------------------------------------------------------------------------------
@command
def cmd_scan(args: argparse.Namespace) -> int:
    from videozoo.data import scan_dataset

    report = scan_dataset(
        args.dataset, clip_frames=args.frames, stride=args.stride, need_audio=args.audio, workers=args.workers,
        progress=not args.quiet,
    )  # fmt: skip
    print(report.to_json(indent=2) if args.json else report.summary())
    return 0 if report.ok else 1


@command
def cmd_flow(args: argparse.Namespace) -> int:
    from videozoo.data.flow import run_flow_command

    return run_flow_command(args)


@command
def cmd_prepare(args: argparse.Namespace) -> int:
    from videozoo.data.prepare import run_prepare_command

    return run_prepare_command(args)


@command
def cmd_demo(args: argparse.Namespace) -> int:
    from videozoo.demo import run_demo

    return run_demo(out_dir=Path(args.out), device=args.device, seed=args.seed)


# -- argument parsing ---------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1, so that ``--clips 0`` is refused in the option's name, not deep inside."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'coclr_*'")
    p.add_argument("--kind", choices=("all", "pretrained", "backbones"), default="all")
    p.add_argument("--tiny", action="store_true", help="include the tiny test variants")
    p.add_argument("--json", action="store_true")


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--json", action="store_true")


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--model", required=True, help="model name, or a directory written by save_pretrained")
    p.add_argument("--weights", default=None, help="weights directory, .safetensors file or Hub repo id")
    p.add_argument("--random-init", action="store_true", help="use random weights (to try the pipeline)")
    p.add_argument("--clips", type=_positive_int, default=4, help="uniform clips per video, features averaged")
    p.add_argument("--out", type=Path, default=Path("features.safetensors"), help=".safetensors or .npz")
    p.add_argument("--device", default="cpu")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--model", required=True, help="directory written by save_pretrained / finetune")
    p.add_argument("--weights", default=None, help="weights for a registered --model name")
    p.add_argument("--clips", type=_positive_int, default=10, help="uniform clips per video")
    p.add_argument("--crops", type=int, choices=(1, 3, 5, 10), default=3, help="spatial crops per clip")
    p.add_argument("--topk", type=_positive_int, default=5)
    p.add_argument("--average", choices=("prob", "logit"), default=None,
                   help="average softmax probabilities or logits (default: as the model's paper did)")  # fmt: skip
    p.add_argument("--csv", type=Path, default=None, help="also write the predictions to this CSV")
    p.add_argument("--device", default="cpu")


def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("queries", nargs="+", type=Path)
    p.add_argument("--index", required=True, type=Path, help="features file written by `videozoo embed`")
    p.add_argument("--model", default=None, help="the model that built the index (default: the one it names)")
    p.add_argument("--weights", default=None)
    p.add_argument("--random-init", action="store_true", help="random weights, as the index was built with them")
    p.add_argument("--clips", type=_positive_int, default=4, help="clips per video, as the index was built with")
    p.add_argument("-k", "--topk", dest="k", type=_positive_int, default=10, help="results per query")
    p.add_argument("--no-center", action="store_true", help="plain cosine, without subtracting the index mean")
    p.add_argument("--device", default="cpu")


def _scan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="a video folder, a path,label list file, or a CSV")
    p.add_argument("--frames", type=_positive_int, default=None, help="clip length to check against")
    p.add_argument("--stride", type=_positive_int, default=None)
    p.add_argument("--audio", action="store_true", help="also report videos without an audio track")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", action="store_true")


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder of videos (searched recursively; other files are copied)")
    p.add_argument("dst", help="output folder: the same tree, every video as .mp4")
    p.add_argument("--short-side", type=_positive_int, required=True, help="short side in pixels (even); no upscaling")
    p.add_argument("--workers", type=_positive_int, default=None, help="processes, one video each (default: all cores)")
    p.add_argument("--keyframe-interval", type=_positive_int, default=None, help="frames per keyframe (default 32)")
    p.add_argument("--crf", type=int, default=None, help="x264 quality, 0-51, lower is better (default 23)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist, finished or not")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="videozoo-demo", help="folder for the videos, retrieval.png and results.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=None, help="draws the videos and the random init (default 1)")


# name: (help, arguments, options). Arguments given as "module:function" are defined by the module that runs the
# command; that module imports torch (and OpenCV), so they are added only when the command runs (see build_parser).
# Options: "decodes" adds --verbose (FFmpeg's log lines), "progress" adds --quiet/--no-progress.
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None] | str, set[str]]] = {
    "list": ("list registered models", _list_arguments, set()),
    "info": ("describe one model: input spec, weights, source, metrics", _info_arguments, set()),
    "embed": ("embed videos with a zoo model and write the features to a file", _embed_arguments,
              {"decodes", "progress"}),
    "predict": ("top classes of a fine-tuned model for each video", _predict_arguments, {"decodes", "progress"}),
    "finetune": ("fine-tune a model on labelled videos (a <class>/<video> folder or a CSV)",
                 "videozoo.eval.finetune_config:add_finetune_arguments", {"decodes", "progress"}),
    "search": ("nearest videos of a collection embedded with `videozoo embed`", _search_arguments, {"decodes"}),
    "convert": ("convert an official CoCLR/GDT/STiCA/CACL checkpoint to a weights dir",
                "videozoo.hub.converters.convert:add_convert_arguments", set()),
    "publish": ("upload a weights directory to the Hugging Face Hub",
                "videozoo.hub.publish:add_publish_arguments", set()),
    "scan": ("list unreadable videos, videos shorter than a clip, videos without audio", _scan_arguments,
             {"decodes", "progress"}),
    "flow": ("extract optical flow (TV-L1 or RAFT) from a video or a folder of videos; resumable",
             "videozoo.data.flow:add_flow_arguments", {"decodes", "progress"}),
    "prepare": ("re-encode a folder of videos at training resolution (short keyframe interval, audio kept); "
                "resumable", _prepare_arguments, {"decodes", "progress"}),
    "demo": ("retrieval by motion, packaged tiny CoCLR weights vs random init: no download", _demo_arguments,
             set()),
}  # fmt: skip

EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 2, 3, 130  # commands return 0, or 1 when some inputs failed
DESCRIPTION = "The video model zoo: list and describe models, embed, search and classify videos, fine-tune, check data."
EXIT_STATUS = """exit status:
  0  success
  1  some inputs failed (each listed on stderr; the others were processed)
  2  usage error: bad arguments, unknown model, missing file, weights unavailable, unreadable input
  3  internal error (a bug in videozoo: please report it with the traceback)
environment: VIDEOZOO_DEBUG=1 as --debug, VIDEOZOO_FFMPEG_LOGS=1 as --verbose"""
DEBUG_ENV = "VIDEOZOO_DEBUG"
ALL = "*"  # build_parser: the arguments of every command


def build_parser(for_command: str | None = ALL) -> argparse.ArgumentParser:
    """The ``videozoo`` parser. Arguments defined by another module are added for ``for_command`` (the command about
    to run; ``None`` for none) alone, so that building the parser imports no heavy module; by default, for all."""
    from videozoo import __version__

    parser = argparse.ArgumentParser(prog="videozoo", description=DESCRIPTION, epilog=EXIT_STATUS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"videozoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_arguments, options) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if callable(add_arguments):
            add_arguments(p)
        elif for_command in (ALL, name):
            module, _, function = add_arguments.partition(":")
            getattr(importlib.import_module(module), function)(p)
        _add_common_options(p, options)
    return parser


def _add_common_options(p: argparse.ArgumentParser, options: set[str]) -> None:
    if "progress" in options:  # one flag, two spellings: --no-progress is what `videozoo flow` used to take
        p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                       help="no progress bars (results, warnings and errors still print)")  # fmt: skip
    if "decodes" in options:
        p.add_argument("--verbose", action="store_true",
                       help="show FFmpeg's own log lines about damaged video (hidden by default)")  # fmt: skip
    p.add_argument("--debug", action="store_true", help="print the Python traceback of an error too")


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option (the top level has no valued options)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)  # a usage error here exits 2 (argparse)
    if getattr(args, "verbose", False):
        _show_ffmpeg_logs()
    try:
        _check_device(getattr(args, "device", None))
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"videozoo {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return _report(exc, args)


# -- errors -------------------------------------------------------------------------------------
# Library errors that report a user's mistake, named by where they are defined. A class whose module was never
# imported cannot have been raised, so checking needs no import (a failing `videozoo list` must not load torch).
_USER_ERRORS = (
    "videozoo.registry:UnknownModelError",
    "videozoo.hub.errors:WeightsError",  # unavailable, corrupt, mismatched, not downloadable; cards refused
    "videozoo.data.decode:VideoDecodeError",
    "videozoo.data.decode:NoReadableVideoError",  # the only input, or every input, unreadable
)
# ValueError: videozoo checks argument values with it (InputShapeError, ConfigError, ... derive from it).
_USER_BUILTIN_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                        PermissionError)  # fmt: skip


def _report(exc: Exception, args: argparse.Namespace) -> int:
    """Print ``exc`` for the user of the command line; return the exit status."""
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not _is_user_error(exc):
        traceback.print_exc()
        print(f"videozoo {args.command}: internal error (a bug in videozoo): {type(exc).__name__}: {exc}\n"
              "Please report it with the traceback above.", file=sys.stderr)  # fmt: skip
        return EXIT_INTERNAL
    if debug:
        traceback.print_exc()
    print(f"videozoo {args.command}: error: {_cli_message(exc, args)}", file=sys.stderr)
    return EXIT_USAGE


def _is_user_error(exc: Exception) -> bool:
    return isinstance(exc, _USER_BUILTIN_ERRORS) or any(isinstance(exc, cls) for cls in _loaded(_USER_ERRORS))


def _loaded(names: Sequence[str]) -> Iterator[type]:
    for name in names:
        module, _, cls = name.partition(":")
        if module in sys.modules:
            yield getattr(sys.modules[module], cls)


def _cli_message(exc: Exception, args: argparse.Namespace) -> str:
    """The error in the command line's terms: the library words some of its advice as Python calls
    (``videozoo.load(name, pretrained=False)``); those errors carry what the command line needs to say it its way."""
    registry, errors = sys.modules.get("videozoo.registry"), sys.modules.get("videozoo.hub.errors")
    if registry is not None and isinstance(exc, registry.UnknownModelError):
        return exc.message("`videozoo list`")
    if errors is None:
        return str(exc)
    if isinstance(exc, errors.WeightsUnavailableError) and exc.model is not None:
        return _no_weights_message(exc.model, random_init="random_init" in args)
    if isinstance(exc, errors.WeightsNotFoundError) and exc.path and exc.path == getattr(args, "model", None):
        return _no_model_path_message(exc.path)  # --model named a path that is not there
    return str(exc)


def _no_model_path_message(path: str) -> str:
    """``--model PATH`` names nothing: neither a registered model nor an existing directory or file."""
    from videozoo.hub import parse_repo_id  # imported already: the error came from there

    where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
    text = (f"--model {path}: no such directory or file{where}; --model takes a registered model name "
            "(`videozoo list`) or a directory written by `videozoo finetune` or save_pretrained")  # fmt: skip
    if parse_repo_id(path):
        text += f". For a Hub repo, name the model and pass the repo: --model NAME --weights {path}"
    return text


def _no_weights_message(name: str, *, random_init: bool) -> str:
    """How to get weights for the registered ``name`` that has none, with this command line's flags."""
    from videozoo import registry

    weights = registry.get(name).weights
    if weights is None:
        text = (f"{name!r} is an architecture without pretrained weights: pass --weights with weights of your own, "
                "or pick a pretrained model (`videozoo list --kind pretrained`)")  # fmt: skip
    elif weights.official_file:
        file = weights.official_file
        text = (f"{name!r} has no published weights yet: convert the official checkpoint once with "
                f"`videozoo convert {file} --to {name} --out {name}/`, then pass --weights {name}/ "
                f"(or --weights {file} to convert it on the fly)")  # fmt: skip
    elif weights.recipe:
        text = (f"{name!r} has no published weights yet, nor official ones: reproduce them with `{weights.recipe}` "
                "and pass the weights directory it writes with --weights")  # fmt: skip
    else:
        text = f"{name!r} has no published weights yet: pass --weights with weights of your own"
    return text + ("; or pass --random-init to run with random weights." if random_init else ".")


def _check_device(device: str | None) -> None:
    """A ``--device`` that cannot be used is the user's mistake; torch would report it deep inside the command
    (``Torch not compiled with CUDA enabled``) as if it were a bug."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device}: not a device; expected cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here; pass --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; pass --device cpu")


def _show_ffmpeg_logs() -> None:
    from videozoo.data import decode

    os.environ[decode.FFMPEG_LOGS_ENV] = "1"  # for DataLoader workers, which import the module afresh
    decode.show_ffmpeg_logs(True)


if __name__ == "__main__":
    sys.exit(main())
