"""OpenAI chat ``messages`` JSON lines, gzip-compressed JSON lines (``.jsonl.gz``) and mapped
fields of the text and instruction formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dlcprune.core.errors import (
    CorruptArchiveError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
)
from dlcprune.core.formats import Instruction, ReadLimits, detect_format, open_dataset
from tests.formats.builders import check_error, payloads, write_lines


def chat(*turns: tuple[str, object], **extra: object) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


def test_chat_messages_first_user_turn_and_first_answer_after_it(tmp_path: Path) -> None:
    rows = [
        chat(
            ("system", "You are terse."),
            ("assistant", "an answer before any question"),
            ("user", "What is 2+2?"),
            ("assistant", "4"),
            ("user", "And 3+3?"),
            ("assistant", "6"),
            id="a",
        ),
        chat(
            ("user", [{"type": "text", "text": "Name a"}, {"type": "text", "text": "colour"}]),
            ("tool", "ignored"),
            ("assistant", [{"type": "text", "text": "red"}]),
            model="gpt",
        ),
    ]
    path = write_lines(tmp_path / "c.jsonl", rows)
    assert detect_format(path) == "chat"
    with open_dataset(path) as ds:
        assert ds.format == "chat" and ds.kind == "instruction" and ds.labels is None
        assert ds.ids == ["a", "1"]
        assert payloads(ds) == [
            Instruction("What is 2+2?", "", "4"),
            Instruction("Name a\ncolour", "", "red"),
        ]


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (chat(("system", "s"), ("assistant", "a")), MissingFieldError, "no human/user turn"),
        (chat(("user", "q")), MissingFieldError, "no gpt/assistant turn"),
        ({"messages": "hi"}, InvalidRecordError, "must be an array"),
        ({"messages": [{"role": "user"}]}, MissingFieldError, "messages[0] needs"),
        (
            chat(("user", [{"type": "image_url", "image_url": {"url": "x"}}]), ("assistant", "a")),
            InvalidRecordError,
            "messages[0] content part 0 is not a text part",
        ),
        (chat(("user", 3), ("assistant", "a")), InvalidRecordError, "content must be a string"),
    ],
    ids=["no-user", "no-answer", "not-a-list", "no-content", "image-part", "number"],
)
def test_chat_errors_name_the_line(
    tmp_path: Path, bad: dict, error: type[Exception], message: str
) -> None:
    path = write_lines(tmp_path / "c.jsonl", [chat(("user", "q"), ("assistant", "a")), bad])
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=2)
    assert message in err.value.message


def write_gz(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return path


@pytest.mark.parametrize(
    ("rows", "fmt", "expected"),
    [
        ([{"text": "a", "label": 1}, {"text": "b", "label": 2}], "text", ["a", "b"]),
        (
            [{"instruction": "i", "output": "o"}],
            "alpaca",
            [Instruction("i", "", "o")],
        ),
        ([chat(("user", "q"), ("assistant", "a"))], "chat", [Instruction("q", "", "a")]),
    ],
)
def test_gzip_jsonl(tmp_path: Path, rows: list[dict], fmt: str, expected: list) -> None:
    path = write_gz(tmp_path / "d.jsonl.gz", rows)
    assert detect_format(path) == fmt
    with open_dataset(path) as ds:
        assert ds.format == fmt and payloads(ds) == expected
        assert [p for _, p in ds.iter_range(len(rows) - 1, 99)] == expected[-1:]
        assert not hasattr(ds, "spans")  # offsets of the decompressed stream only
        assert ds.line_spans.shape == (len(rows), 2)


def test_gzip_errors(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "d.jsonl.gz", [{"text": "a", "label": 1}, {"text": 2, "label": 1}])
    with pytest.raises(InvalidRecordError) as err:
        open_dataset(path)
    check_error(err, path, line=2)
    whole = gzip.compress(b"".join(b'{"text": "x", "label": 1}\n' for _ in range(2000)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptArchiveError) as err:
        open_dataset(cut, format="text")
    check_error(err, cut)
    bomb = write_gz(tmp_path / "b.jsonl.gz", [{"text": "x" * 1000, "label": 1}] * 50)
    with pytest.raises(LimitExceededError, match="max_total_bytes"):
        open_dataset(bomb, limits=ReadLimits(max_total_bytes=10_000))


def test_mapped_fields_of_text_and_instructions(tmp_path: Path) -> None:
    text = write_lines(tmp_path / "t.jsonl", [{"sentence": "hi", "y": "pos", "uid": "u1"}])
    with open_dataset(
        text, format="text", columns={"text": "sentence", "label": "y", "id": "uid"}
    ) as ds:
        assert ds.ids == ["u1"] and ds.labels == ["pos"] and payloads(ds) == ["hi"]
    with pytest.raises(MissingFieldError) as err:
        open_dataset(text, format="text", columns={"text": "body", "label": "y"})
    assert err.value.message == "missing field 'body'"
    check_error(err, text, line=1)
    alpaca = write_lines(tmp_path / "a.jsonl", [{"instruction": "q", "answer": "a", "ctx": "c"}])
    ds = open_dataset(alpaca, format="alpaca", columns={"response": "answer", "input": "ctx"})
    assert payloads(ds) == [Instruction("q", "c", "a")]
    share = write_lines(
        tmp_path / "s.jsonl",
        [{"dialog": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
    )
    ds = open_dataset(share, format="sharegpt", columns={"messages": "dialog"})
    assert payloads(ds) == [Instruction("q", "", "a")]
