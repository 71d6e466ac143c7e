"""A class-folder prefix read where it lies (dlcprune.core.formats.remote), here over fsspec's
local file system: an object whose size is not the listing's when it is fetched is
``source_changed``, and its bytes are not kept in the byte cache under the pinned token."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from dlcprune.core.errors import SourceChangedError
from dlcprune.core.formats import ReadLimits
from dlcprune.core.formats.remote import remote_folder
from dlcprune.core.storage import ByteCache, ObjectInfo, Store, content_matches
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


def _pets(root: Path) -> None:
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(png((4 + i, 4)))


def _same_size_other_bytes(data: bytes) -> bytes:
    """Other bytes of the same length (a PNG whose last byte of its CRC is changed)."""
    return data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:]


def test_a_local_object_replaced_by_as_many_bytes_is_source_changed(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    _pets(root)
    store = Store("file", fsspec.filesystem("file"))
    listing = store.listing(str(root))
    cache = ByteCache(tmp_path / "cache", 2**20)
    reader = remote_folder(store, str(root), listing, ReadLimits(), cache=cache)
    target = root / "dog" / "0.png"
    target.write_bytes(_same_size_other_bytes(target.read_bytes()))
    os.utime(target, (1_000_000_000, 1_000_000_000))  # another mtime, whatever the clock
    with pytest.raises(SourceChangedError) as err:
        list(reader.iter_raw())
    assert "dog/0.png" in str(err.value) and "replaced" in str(err.value)
    token = {o.path: o.token for o in listing}
    assert cache.get(str(target), token["dog/0.png"]) is None
    reader.close()


def test_content_tokens_are_checked_on_the_bytes() -> None:
    data = b"pixels"
    md5 = hashlib.md5(data)
    assert content_matches("e:" + md5.hexdigest(), data) is True
    assert content_matches("e:" + md5.hexdigest().upper(), data) is True
    assert content_matches("e:" + md5.hexdigest(), b"pixelz") is False
    assert content_matches("c:" + base64.b64encode(md5.digest()).decode(), data) is True
    assert content_matches("c:" + base64.b64encode(md5.digest()).decode(), b"x") is False
    assert content_matches("e:" + md5.hexdigest() + "-2", data) is None  # multipart: can't tell
    assert content_matches("v:3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", data) is None
    assert content_matches("t:1700000000.0", data) is None


def test_unpinned_asks_the_store_only_where_the_bytes_cannot_tell(tmp_path: Path) -> None:
    """An ETag of an MD5's form that the bytes do not match (as server-side encryption makes
    them) is asked again and accepted when the store still shows it; a GCS content hash that
    the bytes do not match is changed without asking; a deleted object no longer exists."""
    (tmp_path / "a").write_bytes(b"aaaa")
    (tmp_path / "b").write_bytes(b"bbbb")
    store = Store("file", fsspec.filesystem("file"))
    asked: list[list[str]] = []
    current = store.current

    def counting(paths):  # type: ignore[no-untyped-def]
        asked.append(list(paths))
        return current(paths)

    store.current = counting  # type: ignore[method-assign]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    md5_a = hashlib.md5(b"aaaa")
    ok = [ObjectInfo(a, 4, "e:" + md5_a.hexdigest())]
    assert store.unpinned(ok, [b"aaaa"]) == {} and asked == []  # no request at all
    other = [ObjectInfo(a, 4, "e:" + "0" * 32)]  # not the bytes' MD5; the local store has no ETag
    assert store.unpinned(other, [b"aaaa"]) == {} and asked == [[a]]
    gcs = [ObjectInfo(a, 4, "c:" + base64.b64encode(hashlib.md5(b"zzzz").digest()).decode())]
    assert "MD5" in str(store.unpinned(gcs, [b"aaaa"])[0]) and asked == [[a]]
    (tmp_path / "b").unlink()
    gone = [ObjectInfo(b, 4, "t:1.0")]
    assert store.unpinned(gone, [b"bbbb"]) == {0: "it no longer exists"}


@pytest.fixture(scope="module")
def s3fs_store() -> Iterator[Store]:
    """A moto S3 server on loopback and a Store over it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        fs = s3fs.S3FileSystem(
            key="testing",
            secret="testing",
            endpoint_url=f"http://127.0.0.1:{port}",
            client_kwargs={"region_name": "us-east-1"},
            use_listings_cache=False,
        )
        fs.call_s3("create_bucket", Bucket="pets")  # us-east-1: no location constraint
        yield Store("s3", fs)
    finally:
        server.stop()


def test_an_s3_object_replaced_by_as_many_bytes_is_source_changed(
    tmp_path: Path, s3fs_store: Store
) -> None:
    """On S3 the ETag of a plain upload is the bytes' MD5: a same-size replacement is found
    from the bytes alone, with no request beside the fetch; a deleted object is named too."""
    store, fs = s3fs_store, s3fs_store.fs
    local = tmp_path / "pets"
    _pets(local)
    for path in sorted(local.rglob("*.png")):
        fs.pipe(f"pets/{path.relative_to(local).as_posix()}", path.read_bytes())
    listing = store.listing("pets")
    assert all(o.token.startswith("e:") for o in listing)
    asked: list[list[str]] = []
    current = store.current
    store.current = lambda paths: asked.append(list(paths)) or current(paths)  # type: ignore[method-assign]
    try:
        cache = ByteCache(tmp_path / "cache", 2**20)
        reader = remote_folder(store, "pets", listing, ReadLimits(), cache=cache)
        assert len(list(reader.iter_raw())) == 4 and all(not a for a in asked)  # unchanged: read
        reader.close()
        fs.pipe("pets/dog/1.png", _same_size_other_bytes(fs.cat("pets/dog/1.png")))
        reader = remote_folder(store, "pets", listing, ReadLimits(), cache=None)
        with pytest.raises(SourceChangedError) as err:
            list(reader.iter_raw())
        assert "dog/1.png" in str(err.value) and "replaced" in str(err.value)
        # Only the object whose bytes did not match was asked about (its ETag could have been
        # no MD5, as under server-side encryption): the store shows another ETag now.
        assert [a for a in asked if a] == [["pets/dog/1.png"]]
        reader.close()
        fs.rm("pets/cat/1.png")
        reader = remote_folder(store, "pets", listing, ReadLimits(), cache=None)
        with pytest.raises(SourceChangedError) as err:
            list(reader.iter_raw())
        assert "cat/1.png" in str(err.value) and "no longer exists" in str(err.value)
        reader.close()
        # Emptied: the listed range cannot be served (416), which is a changed object too,
        # not a damaged image.
        fs.pipe("pets/cat/1.png", b"")
        reader = remote_folder(store, "pets", listing, ReadLimits(), cache=None)
        with pytest.raises(SourceChangedError) as err:
            list(reader.iter_raw())
        assert "cat/1.png" in str(err.value) and "replaced" in str(err.value)
        reader.close()
    finally:
        del store.current


def test_a_lost_connection_is_not_a_corrupt_image(tmp_path: Path) -> None:
    """A store that cannot be reached raises its connection error (the worker retries the job),
    not ``corrupt_image``, which would fail the job as if the data were damaged."""
    import s3fs

    from dlcprune.core.errors import DatasetError
    from dlcprune.core.formats.limits import is_network_error
    from tests.conftest import free_port

    fs = s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        client_kwargs={"region_name": "us-east-1"},
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1},
    )
    listing = [ObjectInfo(f"{c}/0.png", 70, "e:" + "0" * 32) for c in ("cat", "dog")]
    reader = remote_folder(Store("s3", fs), "pets", listing, ReadLimits(), cache=None)
    with pytest.raises(Exception) as err:
        list(reader.iter_raw())
    assert not isinstance(err.value, DatasetError) and is_network_error(err.value)
    reader.close()


def test_a_symbolic_link_that_did_not_change_is_read(tmp_path: Path) -> None:
    """fsspec's listing gives a link's own modification time and its ``info`` the target's:
    the pin check reads a local file's metadata as the listing does, so an unchanged link is
    read, and a same-size change of the link itself is still seen."""
    root = tmp_path / "pets"
    _pets(root)
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(png((6, 4)))
    os.utime(elsewhere, (1_000_000_000, 1_000_000_000))  # the target older than the link
    (root / "dog" / "2.png").symlink_to(elsewhere)
    store = Store("file", fsspec.filesystem("file"))
    listing = store.listing(str(root))
    assert len(listing) == 5
    reader = remote_folder(store, str(root), listing, ReadLimits(), cache=None)
    assert len(list(reader.iter_raw())) == 5
    reader.close()


def test_a_stores_server_errors_are_network_errors() -> None:
    """gcsfs raises its HttpError once its own retries are spent: a 5xx is the store's trouble
    (retried), a 4xx is an answer about the data."""
    from gcsfs.retry import HttpError

    from dlcprune.core.formats.limits import is_network_error

    assert is_network_error(HttpError({"code": 503, "message": "unavailable"}))
    assert not is_network_error(HttpError({"code": 403, "message": "denied"}))
    assert not is_network_error(HttpError({"code": 416, "message": "range"}))
    assert not is_network_error(ValueError("no"))
