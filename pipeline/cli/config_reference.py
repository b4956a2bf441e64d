"""Print the configuration reference (every key, its type and default) as Markdown.

    python jobs/config_reference.py > docs/config_reference.md

The README's config reference is this output; regenerate it after changing ``pipeline/config.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402


def _type_name(annotation: Any) -> str:
    text = str(annotation) if getattr(annotation, "__args__", None) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("pipeline.config.", "").replace("|", "\\|")


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} entries (see jobs/configs)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    found = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        default = field.get_default(call_default_factory=True)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(rows(annotation, key + "."))
            continue
        doc = (field.description or "").replace("|", "/")
        found.append((key, _type_name(annotation), _default(default), doc))
    return found


def main() -> None:
    print("| key | type | default | notes |")
    print("|---|---|---|---|")
    for key, type_name, default, doc in rows(PipelineConfig):
        print(f"| `{key}` | `{type_name}` | `{default}` | {doc} |")


if __name__ == "__main__":
    main()
