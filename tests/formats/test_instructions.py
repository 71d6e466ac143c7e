"""Instruction-tuning JSON lines: ``alpaca``, ``dolly`` and ``sharegpt``."""

from __future__ import annotations

from pathlib import Path

from dlcprune.core.formats import Instruction, detect_format, open_dataset
from tests.formats.builders import payloads, write_lines


def test_alpaca(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Add", "input": "1+1", "output": "2", "label": "ignored"},
        {"instruction": "Greet", "output": "hi", "input": None},
    ]
    path = write_lines(tmp_path / "a.json", rows)
    assert detect_format(path) == "alpaca"
    ds = open_dataset(path)
    assert ds.kind == "instruction" and ds.labels is None and ds.classes == {}
    assert payloads(ds) == [Instruction("Add", "1+1", "2"), Instruction("Greet", "", "hi")]


def test_dolly(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Q?", "context": "ctx", "response": "A", "category": "qa"},
        {"instruction": "Q2?", "response": "B"},
    ]
    path = write_lines(tmp_path / "d.jsonl", rows)
    assert detect_format(path) == "dolly"
    assert payloads(open_dataset(path)) == [
        Instruction("Q?", "ctx", "A"),
        Instruction("Q2?", "", "B"),
    ]


def test_sharegpt_first_turn_pair(tmp_path: Path) -> None:
    rows = [
        {
            "id": "c1",
            "conversations": [
                {"from": "system", "value": "be nice"},
                {"from": "gpt", "value": "early reply, no question yet"},
                {"from": "human", "value": "first question"},
                {"from": "system", "value": "reminder"},
                {"from": "gpt", "value": "first answer"},
                {"from": "human", "value": "second question"},
                {"from": "gpt", "value": "second answer"},
            ],
        },
        {
            "conversations": [
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a"},
            ]
        },
    ]
    path = write_lines(tmp_path / "s.jsonl", rows)
    assert detect_format(path) == "sharegpt"
    ds = open_dataset(path)
    assert ds.ids == ["c1", "1"]
    assert payloads(ds) == [
        Instruction("first question", "", "first answer"),
        Instruction("u", "", "a"),
    ]
