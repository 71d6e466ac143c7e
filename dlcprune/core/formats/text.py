"""``text``: JSON lines of ``{"text": str, "label": str | int}``; payloads are ``str``."""

from __future__ import annotations

from typing import Any

from dlcprune.core.errors import MissingFieldError
from dlcprune.core.formats.jsonl import JsonlReader, label_value, str_field
from dlcprune.core.formats.registry import JsonSniff, register

__all__ = ["TextReader"]


@register("text", sniff=JsonSniff(lambda keys: "text" in keys, "'text'", order=40))
class TextReader(JsonlReader):
    """JSONL of ``{"text": str, "label": str | int}``; payloads are ``str``."""

    kind = "text"
    labelled = True

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        text = str_field(obj, "text", required=True, path=self.path, line=line)
        if "label" not in obj:
            raise MissingFieldError("missing field 'label'", path=self.path, line=line)
        return label_value(obj["label"], path=self.path, line=line), text
