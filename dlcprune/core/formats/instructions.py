"""Instruction-tuning JSON lines (``alpaca``, ``dolly``, ``sharegpt``); payloads are
``Instruction``."""

from __future__ import annotations

from typing import Any

from dlcprune.core.errors import InvalidRecordError, MissingFieldError
from dlcprune.core.formats.base import Instruction
from dlcprune.core.formats.jsonl import JsonlReader, json_type, str_field
from dlcprune.core.formats.registry import JsonSniff, register

__all__ = ["AlpacaReader", "DollyReader", "ShareGptReader"]

_USER_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "model"})


@register(
    "alpaca",
    sniff=JsonSniff(
        lambda keys: "instruction" in keys and "output" in keys,
        "'instruction'+'output'",
        order=20,
    ),
)
class AlpacaReader(JsonlReader):
    """JSONL of ``{"instruction", "input"?, "output"}``; payloads are ``Instruction``."""

    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p, n = self.path, line
        return None, Instruction(
            instruction=str_field(obj, "instruction", required=True, path=p, line=n),
            input=str_field(obj, "input", required=False, path=p, line=n),
            response=str_field(obj, "output", required=True, path=p, line=n),
        )


@register(
    "dolly",
    sniff=JsonSniff(
        lambda keys: "instruction" in keys and "response" in keys,
        "'instruction'+'response'",
        order=30,
    ),
)
class DollyReader(JsonlReader):
    """JSONL of ``{"instruction", "context"?, "response"}``; ``context`` becomes ``input``."""

    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p, n = self.path, line
        return None, Instruction(
            instruction=str_field(obj, "instruction", required=True, path=p, line=n),
            input=str_field(obj, "context", required=False, path=p, line=n),
            response=str_field(obj, "response", required=True, path=p, line=n),
        )


# First of the JSON-lines rules: a conversation record may carry any other key as metadata.
@register(
    "sharegpt",
    sniff=JsonSniff(lambda keys: "conversations" in keys, "'conversations'", order=10),
)
class ShareGptReader(JsonlReader):
    """JSONL of ``{"conversations": [{"from": role, "value": str}, ...]}``.

    The FIRST ``human``/``user`` turn is the instruction and the FIRST ``gpt``/``assistant``
    (also ``chatgpt``, ``model``) turn after it is the response; ``input`` is always ``""``.
    System turns and any other role (tools, functions) are ignored, so a system prompt is not
    part of the sample. Turns written as ``{"role", "content"}`` are accepted too. Turns after
    the pair are not inspected.
    """

    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p = self.path
        if "conversations" not in obj:
            raise MissingFieldError("missing field 'conversations'", path=p, line=line)
        turns = obj["conversations"]
        if not isinstance(turns, list):
            raise InvalidRecordError(
                f"field 'conversations' must be an array, got {json_type(turns)}",
                path=p,
                line=line,
            )
        instruction: str | None = None
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise InvalidRecordError(
                    f"conversations[{j}] must be an object, got {json_type(turn)}",
                    path=p,
                    line=line,
                )
            role = turn.get("from", turn.get("role"))
            value = turn.get("value", turn.get("content"))
            if role is None or value is None:
                raise MissingFieldError(
                    f"conversations[{j}] needs 'from' and 'value'", path=p, line=line
                )
            if not isinstance(role, str) or not isinstance(value, str):
                raise InvalidRecordError(
                    f"conversations[{j}] 'from' and 'value' must be strings", path=p, line=line
                )
            role = role.lower()
            if instruction is None:
                if role in _USER_ROLES:
                    instruction = value
            elif role in _ASSISTANT_ROLES:
                return None, Instruction(instruction=instruction, input="", response=value)
        if instruction is None:
            raise MissingFieldError("no human/user turn in 'conversations'", path=p, line=line)
        raise MissingFieldError(
            "no gpt/assistant turn after the first human/user turn", path=p, line=line
        )
