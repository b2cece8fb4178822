"""Publishing a weights directory on the Hugging Face Hub, and what the registry needs to point at it.

``publish`` uploads what :func:`videozoo.save_pretrained` or ``videozoo convert`` wrote (``model.safetensors``,
``config.json``, ``README.md`` and, for converted releases, ``heads.safetensors``) with ``huggingface_hub``'s
``HfApi`` (token from ``HF_TOKEN`` or ``hf auth login``, as every Hugging Face library), and returns the commit and
sha256 that a registry entry pins: ``Weights(repo_id=..., revision=<commit>, sha256=...)``.

A model card is only published when it says what a user must know to trust the weights: the numbers measured
with them (metrics, with protocol), the licence, and where they come from (the recipe command, or the official
checkpoint they were converted from). The weights file must also still have the sha256 its config records.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videozoo.hub.errors import ChecksumError, WeightsError, WeightsFormatError
from videozoo.hub.weights import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, sha256_file

__all__ = [
    "IncompleteCardError",
    "Published",
    "add_publish_arguments",
    "check_publishable",
    "publish",
    "run_publish_command",
]

HEADS_NAME = "heads.safetensors"
UPLOADED = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, HEADS_NAME)


class IncompleteCardError(WeightsError):
    """The model card lacks metrics, licence or source: it is not published."""


@dataclass(frozen=True)
class Published:
    """Where the weights now live: everything a registry entry pins."""

    repo_id: str
    revision: str  # the commit of the upload
    sha256: str  # of model.safetensors
    filename: str = WEIGHTS_NAME
    url: str = ""

    def registry_weights(self, *, official_file: str | None = None, converter: str | None = None) -> str:
        """The ``Weights(...)`` to put in ``videozoo/registry.py`` for this upload."""
        extra = (f", official_file={official_file!r}" if official_file else "") + (
            f", converter={converter!r}" if converter else ""
        )
        return f"Weights(repo_id={self.repo_id!r}, revision={self.revision!r}, sha256={self.sha256!r}{extra})"


def check_publishable(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The directory's ``config.json`` if it may be published; else raise, listing everything that is missing."""
    from huggingface_hub import ModelCard

    directory = Path(directory)
    missing_files = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if not (directory / n).is_file()]
    if missing_files:
        raise WeightsFormatError(
            f"{directory} lacks {', '.join(missing_files)}: publish a directory written by "
            "videozoo.save_pretrained or `videozoo convert`"
        )
    config = json.loads((directory / CONFIG_NAME).read_text())
    actual = sha256_file(directory / WEIGHTS_NAME)
    if actual != config.get("sha256"):
        raise ChecksumError(
            f"{directory / WEIGHTS_NAME} has sha256 {actual}, but config.json records "
            f"{config.get('sha256')}: the weights changed after saving. Save them again.",
            expected=config.get("sha256"),
            actual=actual,
        )
    card = ModelCard.load(directory / CARD_NAME)
    extra = config.get("card") or {}
    problems = []
    if not config.get("metrics") or not card.data.eval_results:
        problems.append(
            "metrics: no numbers measured with these weights (pass metrics=[Metric(task, metric, value, "
            "protocol, source)] to save_pretrained / `videozoo convert` of the official release)"
        )
    licence = card.data.license
    if (
        not licence
        or (licence == "other" and card.data.license_name in (None, "unknown"))
        or "Not recorded" in _section(card.text, "Licence")
    ):
        problems.append("licence: the card has none (registry entry licence, or card={'licence': ...})")
    if not (extra.get("recipe_command") or extra.get("source") or config.get("converted_from")) or _section(
        card.text, "How these weights were made"
    ).strip() in ("", "Not recorded."):
        problems.append(
            "source: the card does not say how the weights were made (card={'recipe_command': ...} "
            "for a training run, or `videozoo convert` for an official checkpoint)"
        )
    if problems:
        raise IncompleteCardError(f"{directory / CARD_NAME} is not published; it lacks\n  - " + "\n  - ".join(problems))
    return config


def publish(
    directory: str | os.PathLike[str],
    *,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> Published:
    """Upload a weights directory to ``repo_id`` and return the pinned commit and sha256.

    ``api`` defaults to ``huggingface_hub.HfApi(token=token)``; ``token=None`` uses ``HF_TOKEN`` or the cached
    login. ``revision`` names a branch to upload to (created if needed); by default the repo's main branch.
    """
    directory = Path(directory)
    config = check_publishable(directory)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token, library_name="videozoo")
    api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id=repo_id, branch=revision, repo_type="model", exist_ok=True)
    files = [n for n in UPLOADED if (directory / n).is_file()]
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(directory),
        repo_type="model",
        revision=revision,
        allow_patterns=files,
        commit_message=commit_message or f"videozoo: {config.get('name')} ({', '.join(files)})",
    )
    commit = getattr(info, "oid", None)
    if not commit:
        raise WeightsError(f"the Hub did not return a commit for the upload to {repo_id}: {info!r}")
    return Published(repo_id=repo_id, revision=commit, sha256=config["sha256"], url=getattr(info, "commit_url", ""))


def _section(text: str, title: str) -> str:
    """The body of a ``## title`` section of the card (empty if there is none)."""
    head = f"## {title}"
    if head not in text:
        return ""
    return text.split(head, 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------------------
# command line (wired into `videozoo publish` by videozoo/cli.py)
# ------------------------------------------------------------------------------------------------
def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, help="weights directory (save_pretrained / videozoo convert)")
    parser.add_argument("--repo", required=True, help="Hub repo id ORG/NAME (created if missing)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="branch to upload to (default: main)")
    parser.add_argument("--message", default=None, help="commit message")


def run_publish_command(args: argparse.Namespace) -> int:
    published = publish(
        args.directory, repo_id=args.repo, private=args.private, revision=args.revision, commit_message=args.message
    )
    summary = json.loads((args.directory / CONFIG_NAME).read_text()).get("converted_from") or {}
    print(f"published {args.directory}/ to {published.repo_id} at {published.revision}")
    print("registry entry:")
    print(f"  {published.registry_weights(official_file=summary.get('file'), converter=summary.get('format'))}")
    return 0
