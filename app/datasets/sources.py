"""Where a dataset's data is read from, and the pin that says it is still the data registered.

Every place that reads a dataset's samples (indexing, scoring, shards, samples, exports) opens it
with ``open_source``:

- an upload: the blob's local file;
- ``file://``: the path itself (below ``DLCPRUNE_FILE_ROOTS``);
- ``s3://`` / ``gs://``, read where it lies:
  - a prefix (``.../``) of class folders: indexed from the listing, images fetched when read
    (``dlcprune.core.formats.remote``);
  - a CSV/JSONL/Parquet manifest naming images by path or URI: the manifest is fetched (it is
    the index), the images are fetched when read;
  - a Parquet file holding the images: read by row group, with ranged reads (pyarrow over
    fsspec);
  - a Hugging Face ``save_to_disk`` prefix: its JSON files read, then its Arrow files streamed
    batch by batch with ranged reads (``dlcprune.core.formats.hfremote``), nothing copied;
  - WebDataset shards (a brace pattern, a folder of them, or one ``.tar``) and a class-folder
    tar archive: streamed with ranged reads through the readers' ``opener``, nothing copied;
  - a class-folder zip: its central directory and members read by ranges, nothing copied;
  - anything else (a zip holding a manifest, npz and JSONL files): the objects are copied once
    into the local cache under the pin (so a changed object is a new copy, never a stale one)
    and read by the local readers;
- ``http(s)://``: a single file downloaded behind the SSRF guard.

The pin: at registration the objects' listing (path, size, version token) is hashed
(``dlcprune.core.storage.pin``; a manifest adds its content's SHA-256) into ``Dataset.sha256``,
which the score cache keys on, and recorded in ``Dataset.source_pin`` with the listing itself
in the blob store. Reading again recomputes it first: another value is a ``SourceChangedError``
(``source_changed``) naming the first object that differs, and nothing is scored.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.blobstore import BlobStore
from app.config import Settings
from app.datasets.indexing import open_reader, read_limits
from app.storage import byte_cache, locate, not_found, resolve_file, scheme_of, store_error
from dlcprune.core.errors import DatasetError, SourceChangedError
from dlcprune.core.formats import Reader, braces
from dlcprune.core.formats.columns import check_roles
from dlcprune.core.formats.manifestzip import has_root_manifest
from dlcprune.core.formats.remote import remote_folder, remote_manifest
from dlcprune.core.formats.tararchive import TarReader
from dlcprune.core.formats.webdataset import SHARD_SUFFIXES, WebDatasetReader, looks_like_shard
from dlcprune.core.formats.ziparchive import ZipReader
from dlcprune.core.storage import ObjectInfo, Store, changed, pin, still_pinned

if TYPE_CHECKING:
    from app.models import Dataset

_BRACES = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")
# A prefix holding any of these is read by the local readers from a pinned copy.
_COPY_SUFFIXES = (".tar", ".parquet", ".arrow", ".json", ".jsonl", ".csv", ".zip", ".npz")
_MANIFEST_KEYS = ("path", "image", "file", "filename")


@dataclass
class Look:
    """What a reference holds now: how to read it and what it is pinned to."""

    kind: str  # "folder", "manifest", "parquet", "shards", "zip", "tar", "hf", "copy", "local"
    uri: str
    store: Store
    path: str  # in the store, without scheme
    objects: list[ObjectInfo]  # relative to ``base``
    base: str
    digest: str
    size: int
    manifest: bytes | None = None
    shards: list[str] = field(default_factory=list)
    folder_listing: list[ObjectInfo] = field(default_factory=list)
    _by_path: dict[str, ObjectInfo] | None = field(default=None, repr=False, compare=False)

    def pinned(self, rel: str) -> ObjectInfo | None:
        """The object at ``rel`` (relative to ``base``) as pinned, looked up in one dict built
        on first use: every streamed pass over every shard asks."""
        if self._by_path is None:
            self._by_path = {o.path: o for o in self.objects}
        return self._by_path.get(rel)


def _is_store(uri: str) -> bool:
    return scheme_of(uri) in ("s3", "gs")


def look(uri: str, settings: Settings, fmt: str | None, columns: dict[str, str] | None) -> Look:
    """List the reference and pin it (raises 404/403/422 problem documents)."""
    try:
        return _look(uri, settings, fmt, columns)
    except DatasetError:
        raise
    except Exception as exc:
        raise store_error(uri, exc) from exc


def _look(uri: str, settings: Settings, fmt: str | None, columns: dict[str, str] | None) -> Look:
    store, path = locate(uri, settings)
    limit = settings.max_archive_members
    if scheme_of(uri) == "file":
        real = resolve_file(uri, settings)
        if real.is_dir():
            objects = store.listing(str(real), limit=limit)
        else:
            info = store.info(str(real))
            objects = [ObjectInfo(real.name, info.size, info.token)]
        return Look("local", uri, store, str(real), objects, str(real.parent), pin(objects),
                    sum(o.size for o in objects))  # fmt: skip
    if _BRACES.search(path):
        # Counted before it is expanded: a pattern naming more shards than a listing may hold is
        # refused at once (LimitExceededError), not built name by name.
        shards = braces.expand(path, limit, path=uri)
        base = posixpath.dirname(shards[0])
        for s in shards:
            if posixpath.dirname(s) != base:
                raise DatasetError("shards must lie in one folder", path=uri, member=s)
        objects = _shard_objects(store, uri, base, shards, limit)
        kind = "shards" if fmt in (None, "webdataset") else "copy"
        return Look(kind, uri, store, path, objects, base, pin(objects),
                    sum(o.size for o in objects), shards=shards)  # fmt: skip
    if path.endswith("/"):
        objects = store.listing(path, limit=limit)
        size = sum(o.size for o in objects)
        base = path.rstrip("/")
        shown = [o for o in objects if not o.path.startswith(".")]
        if (
            fmt in (None, "webdataset")
            and shown
            and all("/" not in o.path and o.path.lower().endswith(SHARD_SUFFIXES) for o in shown)
        ):
            # A folder of tar shards (as a local folder of them is WebDataset): streamed.
            shards = sorted(f"{base}/{o.path}" for o in shown)
            return Look("shards", uri, store, path, objects, base, pin(objects), size,
                        shards=shards)  # fmt: skip
        if fmt in (None, "hf_dataset") and _is_saved_dataset(objects):
            return Look("hf", uri, store, path, objects, base, pin(objects), size)
        copy = fmt not in (None, "folder") or any(
            o.path.lower().endswith(_COPY_SUFFIXES) for o in objects
        )
        kind = "copy" if copy else "folder"
        return Look(kind, uri, store, path, objects, base, pin(objects), size)
    info = store.info(path)
    one = [ObjectInfo(posixpath.basename(path), info.size, info.token)]
    base = posixpath.dirname(path)
    lower = path.lower()
    manifest_fmt = fmt in (None, "manifest")
    if lower.endswith((".csv", ".jsonl")) and manifest_fmt:
        data = store.fetch([path])[0]
        if isinstance(data, BaseException):
            raise data
        if lower.endswith(".csv") or fmt == "manifest" or _names_images(data, columns):
            return _manifest_look(uri, store, path, base, data, settings, columns)
    if lower.endswith(".parquet") and fmt in (None, "parquet", "manifest"):
        if fmt == "manifest" or _parquet_paths(store, path, columns):
            data = store.fetch([path])[0]
            if isinstance(data, BaseException):
                raise data
            return _manifest_look(uri, store, path, base, data, settings, columns)
        return Look("parquet", uri, store, path, one, base, pin(one), info.size)
    if lower.endswith(".zip") and fmt in (None, "zip"):
        # A class-folder zip is read in place by ranges (its central directory, then each
        # member); a zip holding a manifest and its images is copied like the other archives.
        with store.fs.open(path, "rb", block_size=settings.remote_block_bytes) as f:
            manifest = fmt is None and has_root_manifest(f, read_limits(settings))
        if not manifest:
            return Look("zip", uri, store, path, one, base, pin(one), info.size)
    if lower.endswith(SHARD_SUFFIXES) and fmt in (None, "tar", "webdataset"):
        # One tar object is streamed from the store (each pass reads it front to back by
        # ranges): a WebDataset shard, or a class-folder tar, told apart by its first members.
        shard = fmt == "webdataset"
        if fmt is None:
            with store.fs.open(path, "rb", block_size=settings.remote_block_bytes) as f:
                shard = looks_like_shard(f, read_limits(settings))
        if shard:
            return Look("shards", uri, store, path, one, base, pin(one), info.size,
                        shards=[path])  # fmt: skip
        return Look("tar", uri, store, path, one, base, pin(one), info.size)
    return Look("copy", uri, store, path, one, base, pin(one), info.size)


def _is_saved_dataset(objects: list[ObjectInfo]) -> bool:
    """A ``save_to_disk`` directory at the top of a listing (as ``hfdisk`` tells one locally)."""
    top = {o.path for o in objects if "/" not in o.path}
    return "dataset_dict.json" in top or {"state.json", "dataset_info.json"} <= top


_SHARDS_BY_LOOKUP = 32
_ZIP_BLOCK_BYTES = 256 * 2**10


def _shard_objects(
    store: Store, uri: str, base: str, shards: list[str], limit: int
) -> list[ObjectInfo]:
    """The objects of a brace pattern's shards: a few asked for one by one, more from one
    listing of their folder (one request per thousand objects, not one per shard). A shard that
    is not there is a 404 naming it."""
    if len(shards) <= _SHARDS_BY_LOOKUP:
        out = []
        for s in shards:
            try:
                found = store.info(s)
            except FileNotFoundError:
                raise not_found(uri, f" (no shard {store.uri(s)})") from None
            out.append(ObjectInfo(posixpath.basename(s), found.size, found.token))
        return out
    listed = {o.path: o for o in store.listing(base, limit=limit) if "/" not in o.path}
    out = []
    for s in shards:
        one = listed.get(posixpath.basename(s))
        if one is None:
            raise not_found(uri, f" (no shard {store.uri(s)})")
        out.append(one)
    return out


def _names_images(data: bytes, columns: dict[str, str] | None) -> bool:
    """Whether a JSONL file's first record has an image path field (a manifest)."""
    keys = (columns or {}).get("image")
    for raw in data.splitlines():
        if raw.strip():
            try:
                first = json.loads(raw)
            except ValueError:
                return False
            if not isinstance(first, dict):
                return False
            return (keys in first) if keys else any(k in first for k in _MANIFEST_KEYS)
    return False


def _parquet_paths(store: Store, path: str, columns: dict[str, str] | None) -> bool:
    """Whether a Parquet file's image column holds paths (strings): then it is a manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(path, filesystem=store.fs).schema_arrow
    wanted = [(columns or {}).get("image")] if (columns or {}).get("image") else _MANIFEST_KEYS
    for name in wanted:
        if name in schema.names:
            t = schema.field(name).type
            return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    return False


def _manifest_look(
    uri: str,
    store: Store,
    path: str,
    base: str,
    data: bytes,
    settings: Settings,
    columns: dict[str, str] | None,
) -> Look:
    try:
        listing = store.listing(base + "/", limit=settings.max_archive_members)
    except FileNotFoundError:
        listing = []
    reader = remote_manifest(
        store, path, data, read_limits(settings), columns=columns, listing=listing,
        info=store.info,
    )  # fmt: skip
    objects = [ObjectInfo(o.path, o.size, o.token) for o in reader.objects]
    digest = pin(objects, {"manifest_sha256": hashlib.sha256(data).hexdigest()})
    reader.close()
    return Look("manifest", uri, store, path, objects, "", digest, sum(o.size for o in objects),
                manifest=data, folder_listing=listing)  # fmt: skip


# Pins ----------------------------------------------------------------------------------------


def listing_key(dataset: Dataset) -> str:
    return f"datasets/{dataset.id}/listing.json.gz"


def record_pin(dataset: Dataset, seen: Look, blobs: BlobStore) -> None:
    """Pin ``dataset`` to what ``seen`` found (at registration)."""
    rows = [[o.path, o.size, o.token] for o in seen.objects]
    blobs.put_bytes(listing_key(dataset), gzip.compress(json.dumps(rows).encode(), 1))
    dataset.source_pin = {
        "digest": seen.digest,
        "objects": len(seen.objects),
        "bytes": seen.size,
        "kind": seen.kind,
    }
    if _is_store(seen.uri):
        dataset.sha256 = seen.digest
        dataset.size_bytes = seen.size


def check_pin(dataset: Dataset, seen: Look, blobs: BlobStore) -> None:
    """Raise ``SourceChangedError`` when ``seen`` is not what ``dataset`` was pinned to."""
    pinned = dataset.source_pin or {}
    if not pinned.get("digest") or pinned["digest"] == seen.digest:
        return
    what = None
    try:
        rows = json.loads(gzip.decompress(blobs.get_bytes(listing_key(dataset))))
        what = changed([ObjectInfo(p, s, t) for p, s, t in rows], seen.objects)
    except Exception:  # an old listing unreadable: say it changed without naming the object
        what = None
    if what is None and seen.kind == "manifest":
        what = "the manifest's content changed"
    raise SourceChangedError(
        f"the source changed since it was registered ({what or 'its listing differs'}); "
        "register it again to score the data it holds now",
        path=dataset.uri,
    )


# Opening -------------------------------------------------------------------------------------


def _copy(seen: Look, settings: Settings) -> Path:
    """The objects of ``seen`` in the local cache, under its pin (fetched once). Workers that
    copy the same pin at once each fetch into a temporary directory of their own; the first to
    finish moves it into place, the others find it there and remove theirs."""
    assert settings.cache_dir is not None
    dest = Path(settings.cache_dir) / "refs" / seen.digest
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(f"{seen.digest}.partial-{uuid.uuid4().hex}")
    try:
        remote = [f"{seen.base}/{o.path}" if seen.base else o.path for o in seen.objects]
        local = [str(tmp.joinpath(*o.path.split("/"))) for o in seen.objects]
        for p in local:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        seen.store.fs.get(remote, local)
        (tmp / ".complete").touch()
        _settle(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _settle(tmp: Path, dest: Path) -> None:
    """Move the finished copy ``tmp`` to ``dest``. A ``dest`` already complete is another
    worker's copy of the same pin (the same content): it is kept and ``tmp`` is left to be
    removed. Renaming onto it is attempted first, never checked before: a check and a rename
    are two steps another worker can come between."""
    try:
        os.replace(tmp, dest)
    except OSError:
        if not (dest / ".complete").exists():
            raise


def _reader(dataset: Dataset, seen: Look, settings: Settings) -> tuple[Reader, str]:
    limits = read_limits(settings)
    cache = byte_cache(settings)
    columns = dataset.columns or None
    if seen.kind == "local":
        return open_reader(dataset, seen.path, settings), seen.path
    if seen.kind == "folder":
        reader = remote_folder(seen.store, seen.path, seen.objects, limits, cache=cache,
                               prefetch=settings.remote_prefetch)  # fmt: skip
        return reader, seen.uri
    if seen.kind == "manifest":
        assert seen.manifest is not None
        reader = remote_manifest(
            seen.store, seen.path, seen.manifest, limits, columns=columns,
            listing=seen.folder_listing, info=seen.store.info, cache=cache,
            prefetch=settings.remote_prefetch,
        )  # fmt: skip
        return reader, seen.uri
    if seen.kind == "parquet":
        from dlcprune.core.formats.parquet import ParquetReader

        return ParquetReader(seen.path, limits, columns, filesystem=seen.store.fs), seen.path
    if seen.kind == "shards":
        return _shard_reader(dataset, seen, settings, limits), seen.uri
    if seen.kind == "hf":
        return _hf_reader(dataset, seen, settings, limits), seen.uri
    if seen.kind == "zip":
        check_roles(columns, (), fmt="zip", path=seen.uri)  # as when read from a local file
        # Members are read in index (label) order, not archive order: each read is a jump, so
        # the read-ahead stays small (a whole block fetched per member would be many times the
        # archive).
        block = min(settings.remote_block_bytes, _ZIP_BLOCK_BYTES)
        return ZipReader(
            seen.uri,
            limits,
            opener=lambda _: _pinned_open(
                seen, seen.path, block_size=block, cache_type="readahead"
            ),
        ), seen.uri
    if seen.kind == "tar":
        check_roles(columns, (), fmt="tar", path=seen.uri)  # as when read from a local file
        block = settings.remote_block_bytes

        def opener(_: str) -> Any:  # each pass reads the archive front to back
            return _pinned_open(seen, seen.path, block_size=block, cache_type="readahead")

        return TarReader(seen.uri, limits, opener=opener), seen.uri
    local = _copy(seen, settings)
    if seen.shards:
        paths: Any = [str(local / posixpath.basename(s)) for s in seen.shards]
    elif seen.path.endswith("/"):
        paths = local
    else:
        paths = local / seen.objects[0].path
    return open_reader(dataset, paths, settings), str(local)


def _pinned_open(seen: Look, path: str, **options: Any) -> Any:
    """Open object ``path`` of ``seen`` for a streamed pass, checking it is still the object
    pinned at registration (a pass may start long after ``open_source`` checked the listing):
    another size or version is ``SourceChangedError``, never other data read."""
    f = seen.store.fs.open(path, "rb", **options)
    rel = path[len(seen.base) + 1 :] if seen.base and path.startswith(seen.base + "/") else path
    pinned = seen.pinned(rel)
    details = getattr(f, "details", None)
    if pinned is not None and isinstance(details, dict) and not still_pinned(pinned, details):
        f.close()
        raise SourceChangedError(
            f"the source changed while it was read ({seen.store.uri(path)} was changed); "
            "register it again to score the data it holds now",
            path=seen.uri,
        )
    return f


def _shard_reader(dataset: Dataset, seen: Look, settings: Settings, limits: Any) -> Reader:
    """WebDataset shards read where they lie: each shard streamed from the store by ranged
    reads (``DLCPRUNE_REMOTE_BLOCK_BYTES`` at a time), one pass to index, one to score; nothing
    copied to the local disk. Errors name the shard by its URI."""
    scheme = scheme_of(seen.uri)
    by_uri = {f"{scheme}://{s}": s for s in seen.shards}
    block = settings.remote_block_bytes

    def opener(uri: str) -> Any:
        return _pinned_open(seen, by_uri[uri], block_size=block, cache_type="readahead")

    columns = dataset.columns or None
    return WebDatasetReader(list(by_uri), limits, columns, opener=opener)


def _hf_reader(dataset: Dataset, seen: Look, settings: Settings, limits: Any) -> Reader:
    """A ``save_to_disk`` prefix read where it lies: each file opened by its URI below the
    prefix, the Arrow files streamed by ranged reads (``DLCPRUNE_REMOTE_BLOCK_BYTES`` at a
    time). Errors name the file by its URI."""
    from dlcprune.core.formats.hfremote import HfRemoteReader

    root = seen.uri.rstrip("/") + "/"
    block = settings.remote_block_bytes

    def opener(uri: str) -> Any:
        assert uri.startswith(root), uri
        name = f"{seen.base}/{uri[len(root) :]}"
        return _pinned_open(seen, name, block_size=block, cache_type="readahead")

    return HfRemoteReader(seen.uri, limits, dataset.columns or None, opener=opener)


def open_source(
    dataset: Dataset, settings: Settings, blobs: BlobStore, seen: Look | None = None
) -> tuple[Reader, str]:
    """The reader of ``dataset``'s data and the local path its errors may name (to be shown as
    the dataset's name, ``indexing.public_message``). A reference is looked at again and its
    pin checked first (``SourceChangedError``), unless ``seen`` is the look just taken. A
    ``DatasetError`` raised here carries that local path as ``local_path``."""
    local = dataset.uri or dataset.filename
    try:
        if dataset.source == "upload":
            assert dataset.blob_key is not None
            local = str(blobs.local_path(dataset.blob_key))
            return open_reader(dataset, local, settings), local
        assert dataset.uri is not None
        if scheme_of(dataset.uri) in ("http", "https"):
            from app.datasets.service import http_copy

            local = str(http_copy(dataset.uri, settings))
            return open_reader(dataset, local, settings), local
        if seen is None:
            seen = look(dataset.uri, settings, dataset.requested_format, dataset.columns or None)
            check_pin(dataset, seen, blobs)
        local = seen.path if seen.kind in ("local", "parquet") else seen.uri
        if seen.kind == "copy":
            local = str(_copy(seen, settings))
        return _reader(dataset, seen, settings)
    except DatasetError as exc:
        if getattr(exc, "local_path", None) is None:
            exc.local_path = local  # type: ignore[attr-defined]
        raise
