"""JSON lines: the ``text`` format and the line machinery every JSON-lines format shares (spans,
record errors, line and sample limits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcprune.core.errors import InvalidRecordError, LimitExceededError, MissingFieldError
from dlcprune.core.formats import ReadLimits, detect_format, open_dataset
from tests.formats.builders import check_error, payloads, write_lines

# --------------------------------------------------------------------------------------------
# JSONL text and instruction formats


def test_text_jsonl_spans_and_payloads(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [
        b'{"text": "hello", "label": "pos"}\n',
        b"\n",
        b"   \n",
        '{"text": "héllo wörld ✓", "label": 2}\n'.encode(),
        b'{"text": "", "label": "neg"}',  # no final newline
    ]
    path.write_bytes(b"".join(lines))
    assert detect_format(path) == "text"
    with open_dataset(path) as ds:
        assert ds.format == "text" and ds.kind == "text"
        assert ds.ids == ["0", "1", "2"]
        assert ds.labels == ["pos", "2", "neg"]
        assert ds.source(1) == "line 4"
        assert payloads(ds) == ["hello", "héllo wörld ✓", ""]
        raw = path.read_bytes()
        assert ds.spans.dtype == np.int64 and ds.spans.shape == (3, 2)
        assert [raw[s:e] for s, e in ds.spans.tolist()] == [lines[0], lines[3], lines[4]]


def test_text_bom_is_outside_the_first_span(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": 1}\n')
    ds = open_dataset(path)
    assert ds.spans.tolist() == [[3, path.stat().st_size]]
    assert payloads(ds) == ["a"]


def test_text_ids_from_field(tmp_path: Path) -> None:
    rows = [{"id": "q", "text": "a", "label": "x"}, {"id": 5, "text": "b", "label": "y"}]
    ds = open_dataset(write_lines(tmp_path / "t.jsonl", rows))
    assert ds.ids == ["q", "5"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=20), min_size=1, max_size=6), final_newline=st.booleans())
def test_spans_reproduce_lines(tmp_path: Path, texts: list[str], final_newline: bool) -> None:
    lines = [json.dumps({"text": t, "label": "l"}, ensure_ascii=False).encode() for t in texts]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    ds = open_dataset(path)
    raw = path.read_bytes()
    got = [raw[s:e] for s, e in ds.spans.tolist()]
    assert b"".join(got) == raw
    assert payloads(ds) == texts


@pytest.mark.parametrize(
    ("fmt", "bad", "error"),
    [
        ("text", b'{"text": "a", "label": "x"', InvalidRecordError),
        ("text", b'{"text": "\xff\xfe", "label": "x"}', InvalidRecordError),
        ("text", b'["not", "an", "object"]', InvalidRecordError),
        ("text", b'{"text": "a"}', MissingFieldError),
        ("text", b'{"label": "a"}', MissingFieldError),
        ("text", b'{"text": "a", "label": true}', InvalidRecordError),
        ("text", b'{"text": "a", "label": 1.5}', InvalidRecordError),
        ("text", b'{"text": "a", "label": null}', InvalidRecordError),
        ("text", b'{"text": "a", "label": ["x"]}', InvalidRecordError),
        ("text", b'{"text": 3, "label": "x"}', InvalidRecordError),
        ("text", b'{"id": "r0", "text": "a", "label": "x"}', InvalidRecordError),
        ("text", b"[" * 100_000, InvalidRecordError),
        ("alpaca", b'{"instruction": "a"}', MissingFieldError),
        ("dolly", b'{"instruction": "a", "context": "c"}', MissingFieldError),
        ("sharegpt", b'{"conversations": [{"from": "human", "value": "q"}]}', MissingFieldError),
        ("sharegpt", b'{"conversations": "nope"}', InvalidRecordError),
        ("sharegpt", b'{"conversations": [{"from": "human"}]}', MissingFieldError),
    ],
    ids=[
        "bad-json",
        "bad-utf8",
        "not-object",
        "no-label",
        "no-text",
        "bool-label",
        "float-label",
        "null-label",
        "list-label",
        "int-text",
        "duplicate-id",
        "deep-nesting",
        "alpaca-no-output",
        "dolly-no-response",
        "sharegpt-no-reply",
        "sharegpt-not-list",
        "sharegpt-no-value",
    ],
)
def test_jsonl_record_errors(tmp_path: Path, fmt: str, bad: bytes, error: type[Exception]) -> None:
    good = {
        "text": {"id": "r0", "text": "ok", "label": "x"},
        "alpaca": {"instruction": "i", "output": "o"},
        "dolly": {"instruction": "i", "response": "r"},
        "sharegpt": {
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
        },
    }[fmt]
    path = write_lines(tmp_path / "d.jsonl", [good, "", bad])
    assert detect_format(path) == fmt
    with pytest.raises(error) as err:
        open_dataset(path)
    check_error(err, path, line=3)


def test_overlong_line(tmp_path: Path) -> None:
    row = {"text": "x" * 100, "label": "a"}
    path = write_lines(tmp_path / "t.jsonl", [{"text": "ok", "label": "a"}, row])
    limit = len(json.dumps(row))
    assert len(open_dataset(path, limits=ReadLimits(max_line_bytes=limit))) == 2
    with pytest.raises(InvalidRecordError, match="max_line_bytes") as err:
        open_dataset(path, limits=ReadLimits(max_line_bytes=limit - 1))
    check_error(err, path, line=2)


def test_jsonl_max_samples(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [{"text": str(i), "label": "a"} for i in range(5)])
    with pytest.raises(LimitExceededError):
        open_dataset(path, limits=ReadLimits(max_samples=4))
