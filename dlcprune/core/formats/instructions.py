"""Instruction-tuning JSON lines (``alpaca``, ``dolly``, ``sharegpt``, OpenAI ``chat``); payloads
are ``Instruction``. ``conversation_pair`` is the one rule for conversations, which the Parquet
and Hugging Face tables use too."""

from __future__ import annotations

from typing import Any, ClassVar

from dlcprune.core.errors import InvalidRecordError, MissingFieldError
from dlcprune.core.formats.base import Instruction
from dlcprune.core.formats.jsonl import JsonlReader, json_type, str_field
from dlcprune.core.formats.registry import JsonSniff, register

__all__ = [
    "AlpacaReader",
    "ChatReader",
    "DollyReader",
    "ShareGptReader",
    "conversation_pair",
]

_USER_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "model"})


def _content(value: Any, *, field: str, j: int, path: str, line: int | None) -> str:
    """A turn's text: a string, or OpenAI's list of content parts (text parts only)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for k, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise InvalidRecordError(
                    f"{field}[{j}] content part {k} is not a text part "
                    f"({{'type': 'text', 'text': str}})",
                    path=path,
                    line=line,
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRecordError(
        f"{field}[{j}] content must be a string, got {json_type(value)}", path=path, line=line
    )


def conversation_pair(
    turns: Any, *, field: str, path: str, line: int | None, member: str | None = None
) -> Instruction:
    """The FIRST ``human``/``user`` turn and the FIRST ``gpt``/``assistant`` (also ``chatgpt``,
    ``model``) turn after it, as an ``Instruction`` with ``input=""``.

    Turns are ``{"from", "value"}`` (ShareGPT) or ``{"role", "content"}`` (OpenAI chat, whose
    content may be a list of text parts). System turns and other roles (tools) are skipped, so
    a system prompt is not part of the sample; turns after the pair are not inspected.
    """
    where = {"path": path, "line": line, "member": member}
    if not isinstance(turns, list):
        raise InvalidRecordError(
            f"field {field!r} must be an array, got {json_type(turns)}", **where
        )
    instruction: str | None = None
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise InvalidRecordError(
                f"{field}[{j}] must be an object, got {json_type(turn)}", **where
            )
        role = turn.get("from", turn.get("role"))
        value = turn.get("value", turn.get("content"))
        if role is None or value is None:
            raise MissingFieldError(
                f"{field}[{j}] needs 'from' and 'value' (or 'role' and 'content')", **where
            )
        if not isinstance(role, str):
            raise InvalidRecordError(f"{field}[{j}] role must be a string", **where)
        role = role.lower()
        if instruction is None:
            if role in _USER_ROLES:
                instruction = _content(value, field=field, j=j, path=path, line=line)
        elif role in _ASSISTANT_ROLES:
            response = _content(value, field=field, j=j, path=path, line=line)
            return Instruction(instruction=instruction, input="", response=response)
    if instruction is None:
        raise MissingFieldError(f"no human/user turn in {field!r}", **where)
    raise MissingFieldError("no gpt/assistant turn after the first human/user turn", **where)


_INSTRUCTION_ROLES = ("instruction", "input", "response", "id")


@register(
    "alpaca",
    sniff=JsonSniff(
        lambda keys: "instruction" in keys and "output" in keys,
        "'instruction'+'output'",
        order=20,
    ),
    roles=_INSTRUCTION_ROLES,
)
class AlpacaReader(JsonlReader):
    """JSONL of ``{"instruction", "input"?, "output"}``; payloads are ``Instruction``."""

    kind = "instruction"
    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "instruction": ("instruction",),
        "input": ("input",),
        "response": ("output",),
        "id": ("id",),
    }

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        p, n, f = self.path, line, self.field
        return None, Instruction(
            instruction=str_field(obj, f("instruction"), required=True, path=p, line=n),
            input=str_field(obj, f("input"), required=False, path=p, line=n),
            response=str_field(obj, f("response"), required=True, path=p, line=n),
        )


@register(
    "dolly",
    sniff=JsonSniff(
        lambda keys: "instruction" in keys and "response" in keys,
        "'instruction'+'response'",
        order=30,
    ),
    roles=_INSTRUCTION_ROLES,
)
class DollyReader(AlpacaReader):
    """JSONL of ``{"instruction", "context"?, "response"}``; ``context`` becomes ``input``."""

    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "instruction": ("instruction",),
        "input": ("context",),
        "response": ("response",),
        "id": ("id",),
    }


class _ConversationReader(JsonlReader):
    kind = "instruction"

    def _extract(self, obj: dict[str, Any], line: int) -> tuple[str | None, Any]:
        key = self.field("messages")
        if key not in obj:
            raise MissingFieldError(f"missing field {key!r}", path=self.path, line=line)
        return None, conversation_pair(obj[key], field=key, path=self.path, line=line)


# First of the JSON-lines rules: a conversation record may carry any other key as metadata.
@register(
    "sharegpt",
    sniff=JsonSniff(lambda keys: "conversations" in keys, "'conversations'", order=10),
    roles=("messages", "id"),
)
class ShareGptReader(_ConversationReader):
    """JSONL of ``{"conversations": [{"from": role, "value": str}, ...]}``: the first
    ``human``/``user`` turn and the first ``gpt``/``assistant`` answer after it (see
    ``conversation_pair``)."""

    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {"messages": ("conversations",), "id": ("id",)}


@register(
    "chat",
    sniff=JsonSniff(lambda keys: "messages" in keys, "'messages'", order=15),
    roles=("messages", "id"),
)
class ChatReader(_ConversationReader):
    """JSONL of OpenAI chat records ``{"messages": [{"role": "system"|"user"|"assistant",
    "content": str | [text parts]}]}``: the first user turn and the first assistant answer after
    it, as for ShareGPT (a system prompt is not part of the sample)."""

    ROLES: ClassVar[dict[str, tuple[str, ...]]] = {"messages": ("messages",), "id": ("id",)}
