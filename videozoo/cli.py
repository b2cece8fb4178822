"""The ``videozoo`` command: list and describe the zoo, embed videos, check data.

Every subcommand is a thin layer over the public API so that what the command does can also be
done from Python in the same words.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
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
    from videozoo.eval.finetune import FINETUNE_PROTOCOLS

    protocol = dict(FINETUNE_PROTOCOLS[args.protocol]) if args.protocol else {}
    given = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size)) if v}
    _, result = videozoo.finetune(
        args.model, args.train, args.val, weights=args.weights, pretrained=not args.random_init,
        freeze="backbone" if args.freeze_backbone else None, out_dir=args.out, device=args.device,
        num_workers=args.workers, progress=not args.quiet, **{**protocol, **given},
    )  # fmt: skip
    if "top1" in result.metrics:
        print(f"top-1 {100 * result.metrics['top1']:.2f}% over {result.metrics['num_videos']} videos "
              f"({result.metrics['description']})")  # fmt: skip
    for path, why in result.bad_videos.items():
        print(f"unreadable, replaced: {path}: {why}", file=sys.stderr)
    if result.padded_videos:  # listed one by one in the warning line the run logged, and in results.json
        print(f"{len(result.padded_videos)} videos were mostly padding (shorter than half a clip)", file=sys.stderr)
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
    model = videozoo.load(model_name, weights=args.weights)
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
def cmd_demo(args: argparse.Namespace) -> int:
    from videozoo.demo import run_demo

    return run_demo(out_dir=Path(args.out), device=args.device, seed=args.seed)


# -- argument parsing ---------------------------------------------------------------------------
def _add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from videozoo.hub.converters import add_convert_arguments

    add_convert_arguments(parser)


def _add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    from videozoo.hub.publish import add_publish_arguments

    add_publish_arguments(parser)


def _add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    from videozoo.data.flow import add_flow_arguments

    add_flow_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videozoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="glob over names, e.g. 'coclr_*'")
    p.add_argument("--kind", choices=("all", "pretrained", "backbones"), default="all")
    p.add_argument("--tiny", action="store_true", help="include the tiny test variants")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="describe one model: input spec, weights, source, metrics")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("embed", help="embed videos with a zoo model and write the features to a file")
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--model", required=True, help="model name, or a directory written by save_pretrained")
    p.add_argument("--weights", default=None, help="weights directory, .safetensors file or Hub repo id")
    p.add_argument("--random-init", action="store_true", help="use random weights (to try the pipeline)")
    p.add_argument("--clips", type=int, default=4, help="uniform clips per video, features averaged")
    p.add_argument("--out", type=Path, default=Path("features.safetensors"), help=".safetensors or .npz")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("predict", help="top classes of a fine-tuned model for each video")
    p.add_argument("videos", nargs="+", type=Path)
    p.add_argument("--model", required=True, help="directory written by save_pretrained / finetune")
    p.add_argument("--weights", default=None, help="weights for a registered --model name")
    p.add_argument("--clips", type=int, default=10, help="uniform clips per video")
    p.add_argument("--crops", type=int, choices=(1, 3, 5, 10), default=3, help="spatial crops per clip")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--average", choices=("prob", "logit"), default=None,
                   help="average softmax probabilities or logits (default: as the model's paper did)")  # fmt: skip
    p.add_argument("--csv", type=Path, default=None, help="also write the predictions to this CSV")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("finetune", help="fine-tune a model on labelled videos (a <class>/<video> folder or a CSV)")
    p.add_argument("train", help="training videos: a folder with one sub-folder per class, or a path,label list")
    p.add_argument("--val", default=None, help="validation videos, the same way; tested video-level at the end")
    p.add_argument("--model", required=True, help="model name, or a directory written by save_pretrained")
    p.add_argument("--weights", default=None, help="weights directory, .safetensors file or Hub repo id")
    p.add_argument("--random-init", action="store_true", help="start from random weights")
    p.add_argument("--protocol", choices=("coclr", "cacl", "stica"), default=None,
                   help="a paper's fine-tuning protocol (docs/finetune.md); the options below override it")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="the head's learning rate (the backbone's: a tenth)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--freeze-backbone", action="store_true", help="train the head only: a linear probe")
    p.add_argument("--out", default="runs/finetune", help="checkpoints, TensorBoard, results, model/")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("search", help="nearest videos of a collection embedded with `videozoo embed`")
    p.add_argument("queries", nargs="+", type=Path)
    p.add_argument("--index", required=True, type=Path, help="features file written by `videozoo embed`")
    p.add_argument("--model", default=None, help="the model that built the index (default: the one it names)")
    p.add_argument("--weights", default=None)
    p.add_argument("--clips", type=int, default=4, help="clips per video, as the index was built with")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--no-center", action="store_true", help="plain cosine, without subtracting the index mean")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("convert", help="convert an official CoCLR/GDT/STiCA/CACL checkpoint to a weights dir")
    _add_convert_arguments(p)

    p = sub.add_parser("publish", help="upload a weights directory to the Hugging Face Hub")
    _add_publish_arguments(p)

    p = sub.add_parser("scan", help="list unreadable videos, videos shorter than a clip, videos without audio")
    p.add_argument("dataset", help="a video folder, a path,label list file, or a CSV")
    p.add_argument("--frames", type=int, default=None, help="clip length to check against")
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--audio", action="store_true", help="also report videos without an audio track")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("flow", help="extract optical flow (TV-L1 or RAFT) from a folder of videos; resumable")
    _add_flow_arguments(p)

    p = sub.add_parser("demo", help="retrieval by motion, packaged tiny CoCLR weights vs random init: no download")
    p.add_argument("--out", default="videozoo-demo", help="folder for the videos, retrieval.png and results.json")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=None, help="draws the videos and the random init (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as exc:
        # Known user errors print one clear line instead of a traceback.
        print(f"videozoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
