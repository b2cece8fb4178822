"""The ``README.md`` model card written next to every set of weights.

YAML front matter in the Hugging Face format (``library_name``, ``license``, ``tags``,
``datasets``, ``model-index``) so the Hub indexes the model, then a body a person can trust:
what the model is, the method and paper, the pretraining data, how the weights were made (recipe
command or the official file they were converted from), the numbers with their protocol, the
licence, and a five-line usage snippet. Everything comes from ``config.json``, the registry
entry and the optional ``card`` fields; nothing here is typed by hand per model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from videozoo.registry import ModelEntry, input_spec_from_config

__all__ = ["render_card"]

# name token / data field -> (Hub dataset id, display name). The Hub links ids it knows and keeps others as text.
DATASETS = {
    "ucf101": ("ucf101", "UCF101"),
    "hmdb51": ("hmdb51", "HMDB51"),
    "hmdb": ("hmdb51", "HMDB51"),
    "k400": ("kinetics-400", "Kinetics-400"),
    "kinetics": ("kinetics-400", "Kinetics-400"),
    "kinetics400": ("kinetics-400", "Kinetics-400"),
    "kinetics-400": ("kinetics-400", "Kinetics-400"),
    "ht100m": ("howto100m", "HowTo100M"),
    "howto100m": ("howto100m", "HowTo100M"),
    "ig65m": ("ig65m", "IG-65M"),
}
HUB_LICENSES = {
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "bsd-2-clause",
    "cc-by-4.0",
    "cc-by-nc-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-sa-4.0",
    "cc0-1.0",
    "gpl-3.0",
    "lgpl-3.0",
    "openrail",
    "unlicense",
}


def render_card(config: Mapping[str, Any], *, entry: ModelEntry | None, directory: Path) -> str:
    """The model card text for weights described by ``config`` (the ``config.json`` dict)."""
    extra: Mapping[str, Any] = config.get("card") or {}
    licence = str(extra.get("licence") or extra.get("license") or (entry.licence if entry else "") or "unknown")
    datasets = _datasets(config["name"], extra)
    front = _front_matter(config, entry, licence, datasets)
    return f"---\n{front}---\n\n{_body(config, entry, licence, datasets, directory)}"


def _datasets(name: str, extra: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Pretraining datasets: known names in the ``datasets``/``data`` card fields, else in the model name."""
    given = extra.get("datasets") or extra.get("data")
    if not given:
        return list(dict.fromkeys(DATASETS[t] for t in name.lower().split("_")[1:] if t in DATASETS))
    found: list[tuple[str, str]] = []
    for item in [given] if isinstance(given, str) else list(given):
        known = [DATASETS[w] for w in re.split(r"[^a-z0-9-]+", str(item).lower()) if w in DATASETS]
        found += known or [(_slug(str(item)), str(item))]
    return list(dict.fromkeys(found))


def _front_matter(
    config: Mapping[str, Any], entry: ModelEntry | None, licence: str, datasets: list[tuple[str, str]]
) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    extra = config.get("card") or {}
    tags = ["videozoo", "video", "self-supervised-learning", "pytorch", "safetensors", config["architecture"]]
    if entry is not None and entry.kind == "pretrained":
        tags.append(config["name"].split("_", 1)[0])  # the method: coclr, cacl, stica, gdt, infonce
    tags += list(extra.get("tags") or ())
    hub_licence = licence.lower() if licence.lower() in HUB_LICENSES else "other"
    data = ModelCardData(
        library_name="videozoo",
        license=hub_licence,
        license_name=None if hub_licence != "other" else _slug(licence) or "unknown",
        tags=list(dict.fromkeys(tags)),
        datasets=[d for d, _ in datasets] or None,
        pipeline_tag="video-classification" if config.get("num_classes") else "feature-extraction",
        model_name=config["name"],
        eval_results=[_eval_result(EvalResult, m) for m in config.get("metrics") or ()] or None,
    )
    return data.to_yaml() + "\n"


def _eval_result(cls: Any, m: Mapping[str, Any]) -> Any:
    task = str(m["task"])
    first = task.split()[0]
    dataset_id, dataset_name = DATASETS.get(first.lower(), (_slug(first), first))
    return cls(
        task_type="video-retrieval" if "retrieval" in task.lower() else "video-classification",
        task_name=task,
        dataset_type=dataset_id,
        dataset_name=dataset_name,
        metric_type=_slug(str(m["metric"]).replace("@", "-at-")),
        metric_value=m["value"],
        metric_name=f"{task} {m['metric']}",
    )


def _body(
    config: Mapping[str, Any], entry: ModelEntry | None, licence: str, datasets: list[tuple[str, str]], directory: Path
) -> str:
    extra = config.get("card") or {}
    name, arch = config["name"], config["architecture"]
    spec = input_spec_from_config(config)
    description = extra.get("description") or (entry.description if entry else "") or f"A videozoo {arch} model."
    paper = extra.get("paper") or (entry.paper if entry else "") or "not recorded"
    data = str(extra.get("data") or "") or ", ".join(d for _, d in datasets) or "not recorded"
    head = f"{config['num_classes']}-way classifier (`fc`)" if config.get("num_classes") else "none: pooled embedding"
    if config.get("class_names"):
        head += f", classes: {', '.join(map(str, config['class_names'][:8]))}" + (
            ", ..." if len(config["class_names"]) > 8 else ""
        )
    rows = [
        (
            "Architecture",
            f"`{arch}`"
            + (f" ({entry.description})" if entry and entry.kind == "backbone" and entry.name != name else ""),
        ),
        ("Method / paper", paper),
        ("Pretraining data", data),
        ("Input", _describe_input(spec)),
        ("Head", head),
        ("Parameters", f"{config.get('num_parameters', 0) / 1e6:.2f} M"),
        ("Weights", f"`{config.get('weights_file')}`, sha256 `{config.get('sha256')}`"),
    ]
    out = [f"# {name}", "", str(description), "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    out += ["", "## How these weights were made", "", _provenance(extra, entry)]
    details = {
        k: v
        for k, v in extra.items()
        if k
        not in {
            "recipe_command",
            "description",
            "paper",
            "licence",
            "license",
            "tags",
            "datasets",
            "data",
            "repo_id",
            "source",
        }
    }
    if details:
        out += [""] + [f"- {k.replace('_', ' ')}: {v}" for k, v in details.items()]
    out += ["", "## Results", "", *_metrics_table(config.get("metrics") or ())]
    out += ["", "## Licence", "", f"{licence}." if licence != "unknown" else "Not recorded: ask the author."]
    out += [
        "",
        "## Usage",
        "",
        "```python",
        *_usage(config, entry, spec, directory),
        "```",
        "",
        f"Preprocessing belongs to the model: `videozoo.transforms_for(model)`. Saved with videozoo "
        f"{config.get('videozoo_version')}; format described in videozoo's docs/weights.md.",
        "",
    ]
    return "\n".join(out)


def _describe_input(spec: Any) -> str:
    if spec is None:
        return "not recorded"
    norm = "" if spec.channels == "audio" else f", mean {list(spec.mean)}, std {list(spec.std)}"
    return spec.describe() + norm


def _provenance(extra: Mapping[str, Any], entry: ModelEntry | None) -> str:
    if extra.get("recipe_command"):
        return f"Trained with:\n\n```bash\n{extra['recipe_command']}\n```"
    if extra.get("source"):
        return str(extra["source"])
    weights = entry.weights if entry else None
    if weights and weights.official_file:
        return (
            f"Converted from the official checkpoint `{weights.official_file}` with "
            f"`videozoo convert {weights.official_file} --to {entry.name}` (converter `{weights.converter}`)."
        )
    if weights and weights.recipe:
        return f"Reproduced with:\n\n```bash\n{weights.recipe}\n```"
    return "Not recorded."


def _metrics_table(metrics: Any) -> list[str]:
    if not metrics:
        return ["No evaluation was recorded with these weights."]
    rows = ["| Task | Metric | Value | Protocol | Source |", "|---|---|---|---|---|"]
    rows += [
        f"| {m['task']} | {m['metric']} | {_number(m['value'])} | {m.get('protocol') or '-'} | "
        f"{m.get('source') or '-'} |"
        for m in metrics
    ]
    return rows


def _usage(config: Mapping[str, Any], entry: ModelEntry | None, spec: Any, directory: Path) -> list[str]:
    """Five lines that run as they are: load, a dummy input of the right shape, the output."""
    name = config["name"]
    repo_id = (config.get("card") or {}).get("repo_id")
    published = entry is not None and entry.weights is not None and entry.weights.published
    if published and repo_id in (None, entry.weights.repo_id):
        load = f"videozoo.load({name!r})"
    else:
        load = f"videozoo.load({name!r}, weights={repo_id or './' + directory.name!r})"
    if spec is not None and spec.channels == "audio":
        shape = f"1, 1, {spec.freq_bins}, {spec.crop_size}"
        layout = "(B, 1, freq, time) log-filterbank"
    else:
        frames, crop = (spec.frames, spec.crop_size) if spec else (16, 112)
        shape, layout = f"1, 3, {frames}, {crop}, {crop}", "(B, C, T, H, W), normalised"
    n = config.get("num_classes")
    out = f"(1, {n}) logits" if n else f"(1, {config.get('num_features') or 'D'}) embedding"
    return [
        "import torch, videozoo",
        "",
        f"model = {load}.eval()",
        f"clip = torch.randn({shape})  # {layout}",
        f"output = model(clip)  # {out}",
    ]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64]
