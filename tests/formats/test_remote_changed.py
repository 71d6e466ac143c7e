"""A class-folder prefix read where it lies (dlcprune.core.formats.remote), here over fsspec's
local file system: an object whose size is not the listing's when it is fetched is
``source_changed``, and its bytes are not kept in the byte cache under the pinned token."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from dlcprune.core.errors import SourceChangedError
from dlcprune.core.formats import ReadLimits
from dlcprune.core.formats.remote import remote_folder
from dlcprune.core.storage import ByteCache, Store
from tests.formats.builders import png


def test_an_object_of_another_size_is_source_changed_and_not_cached(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(png((4 + i, 4)))
    store = Store("file", fsspec.filesystem("file"))
    listing = store.listing(str(root))
    cache = ByteCache(tmp_path / "cache", 2**20)
    reader = remote_folder(store, str(root), listing, ReadLimits(), cache=cache)
    (root / "dog" / "1.png").write_bytes(png((40, 40)))  # replaced after the listing
    with pytest.raises(SourceChangedError) as err:
        list(reader.iter_raw())
    assert err.value.code == "source_changed" and "dog/1.png" in str(err.value)
    token = {o.path: o.token for o in listing}
    assert cache.get(str(root / "cat" / "0.png"), token["cat/0.png"]) is not None  # fetched, kept
    assert cache.get(str(root / "dog" / "1.png"), token["dog/1.png"]) is None
    reader.close()
