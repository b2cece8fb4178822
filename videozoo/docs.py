"""Generate ``docs/models.md`` from the registry: ``python -m videozoo.docs`` (a test fails when stale)."""

from __future__ import annotations

import sys
from pathlib import Path

from videozoo import registry

HEADER = """# Model zoo

Generated from `videozoo/registry.py` by `python -m videozoo.docs`; do not edit by hand.
Every name here works with `videozoo.load(NAME)`, `torch.hub.load(CHECKOUT, NAME, source="local")` and
`videozoo info NAME`. Status says where the weights come from today: *published on the Hub*,
*packaged with videozoo* (inside the installed package, no download), *convert from the official file*
(`videozoo convert`, see [converting.md](converting.md)), or *reproduce with the recipe* (`recipes/`,
see [training.md](training.md)).
"""

DEMO = """## Demo weights packaged with videozoo

Trained on synthetic clips by a smoke recipe, for `videozoo demo` and the tests: they show that the
pipeline learns motion, and are no video encoders for real clips. Hidden from `videozoo list`,
`list_models()` and `torch.hub` like the tiny backbones (`videozoo list --tiny` and
`list_models(tiny=None)` show them); `videozoo.load(NAME)` and `videozoo info NAME` work.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    lines = [HEADER, "## Backbones", "", "| name | architecture | default input | paper |", "|---|---|---|---|"]
    for name in registry.list_models(pretrained=False):
        e = registry.get(name)
        lines.append(f"| `{name}` | {_cell(e.description)} | {e.input_spec.describe()} | {_cell(e.paper)} |")
    tiny = ", ".join(f"`{n}`" for n in registry.list_models(pretrained=False, tiny=True))
    lines += ["", f"Tiny variants for tests and smoke runs (same code, narrow widths): {tiny}.", ""]

    lines += ["## Pretrained models", "", "| name | backbone | status | headline result |", "|---|---|---|---|"]
    for name in registry.list_models(pretrained=True):
        e = registry.get(name)
        head = f"{e.metrics[0].task} {e.metrics[0].metric} {e.metrics[0].value:g}" if e.metrics else "-"
        lines.append(f"| [`{name}`](#{name}) | `{e.arch}` | {e.weights.status} | {_cell(head)} |")
    lines.append("")

    for name in registry.list_models(pretrained=True):
        lines += _details(registry.get(name))
    lines += [DEMO]
    for name in registry.list_models(pretrained=True, tiny=True):
        lines += _details(registry.get(name))
    return "\n".join(lines)


def _details(e: registry.ModelEntry) -> list[str]:
    lines = [f"### {e.name}", "", f"{e.description}.", ""]
    lines += [
        f"- **Paper:** {e.paper}",
        f"- **Backbone:** `{e.arch}` {e.config or ''}",
        f"- **Input:** {e.input_spec.describe()}, mean {e.input_spec.mean}, std {e.input_spec.std}",
        f"- **Source:** {e.source}",
        f"- **Licence:** {e.licence}",
        f"- **Status:** {e.weights.status}. {e.weights.how_to_get}",
    ]
    if e.metrics:
        lines += ["", "| task | metric | published | protocol | where |", "|---|---|---|---|---|"]
        lines += [
            f"| {m.task} | {m.metric} | {m.value:g} | {_cell(m.protocol)} | {_cell(m.source)} |" for m in e.metrics
        ]
    else:
        lines += ["", "No published numbers are recorded for this model yet."]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    target = Path(argv[0] if argv else "docs/models.md")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
