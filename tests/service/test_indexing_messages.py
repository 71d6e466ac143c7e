"""Dataset errors name what the user gave (the upload's filename, the reference URI), never the
service's own storage path, and never a URI nested in itself."""

from __future__ import annotations

import pytest

from app.datasets.indexing import public_message
from dlcprune.core.errors import DatasetError


@pytest.mark.parametrize(
    ("err", "local", "name", "expected"),
    [
        (
            DatasetError("bad zip", path="/srv/blobs/u/abc.zip", member="a/b.png"),
            "/srv/blobs/u/abc.zip",
            "digits.zip",
            "digits.zip[a/b.png]: bad zip",
        ),
        (
            DatasetError("bad", path="/refs/x.zip"),
            "/refs/x.zip",
            "file:///refs/x.zip",
            "file:///refs/x.zip: bad",
        ),
        (
            DatasetError("cannot open file:///refs/x.zip: gone", path="/refs/x.zip"),
            "/refs/x.zip",
            "file:///refs/x.zip",
            "file:///refs/x.zip: cannot open file:///refs/x.zip: gone",
        ),
        (
            DatasetError("not an image", path="/refs/dir/cat/1.png"),
            "/refs/dir",
            "file:///refs/dir",
            "file:///refs/dir/cat/1.png: not an image",
        ),
    ],
)
def test_messages_name_the_users_source(
    err: DatasetError, local: str, name: str, expected: str
) -> None:
    assert public_message(err, local, name) == expected
