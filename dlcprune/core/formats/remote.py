"""Image datasets read where they lie in an object store, without copying them first.

``remote_folder`` indexes a prefix of class folders from its listing alone; ``remote_manifest``
indexes a CSV, JSONL or Parquet manifest whose rows name images by a path relative to the
manifest, or by a URI in the same store. Both give a ``RemoteImageReader``: ids and labels in
memory, each image's object path, size and version token from the listing, and images fetched
when read, ``prefetch`` objects at a time, the next batch fetched (concurrently, by the store)
while the current one is decoded, through a local ``ByteCache`` bounded in size.

The safety layer is the same as for local data: member names through ``split_relative``, the
member byte limit checked against the listed size before any byte is fetched, images through
``decode_image`` (pixel bombs, allowed decoders), label columns through ``LabelColumn``.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PIL import Image

from dlcprune.core.errors import (
    CorruptImageError,
    DatasetError,
    EmptyDatasetError,
    InvalidRecordError,
    LimitExceededError,
    MissingFieldError,
    SourceChangedError,
    UnsafePathError,
)
from dlcprune.core.formats.base import ImageReader
from dlcprune.core.formats.columns import LabelColumn, check_roles, mapped
from dlcprune.core.formats.images import decode_image, is_image_name
from dlcprune.core.formats.jsonl import IdRegistry, id_value
from dlcprune.core.formats.layout import resolve_layout
from dlcprune.core.formats.limits import (
    ReadLimits,
    check_samples,
    is_network_error,
    split_relative,
)
from dlcprune.core.storage import ByteCache, ObjectInfo, Store, split_uri

__all__ = [
    "MANIFEST_SUFFIXES",
    "RemoteImageReader",
    "remote_folder",
    "remote_manifest",
]

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")
_PATH_KEYS = ("path", "image", "file", "filename")
_LABEL_KEYS = ("label", "class")
DEFAULT_PREFETCH = 64


class RemoteImageReader(ImageReader):
    """Images in a store (see the module docstring). ``objects[i]``: sample ``i``'s object, its
    ``path`` the full path in the store; ``sources[i]``: how errors name it."""

    def __init__(
        self,
        uri: str,
        limits: ReadLimits,
        *,
        store: Store,
        ids: list[str],
        labels: list[str] | None,
        objects: list[ObjectInfo],
        sources: list[str],
        fmt: str,
        cache: ByteCache | None = None,
        prefetch: int = DEFAULT_PREFETCH,
    ) -> None:
        super().__init__(uri, limits)
        self.format = fmt
        self.store = store
        self.ids, self.labels = ids, labels
        self.objects = objects
        self._sources = sources
        self.cache = cache
        self.prefetch = max(1, prefetch)
        self._pool: ThreadPoolExecutor | None = None

    def source(self, i: int) -> str:
        return self._sources[i]

    def _fetch(self, indices: Sequence[int]) -> list[bytes | BaseException]:
        out: list[bytes | BaseException | None] = [None] * len(indices)
        missing: list[int] = []
        for k, i in enumerate(indices):
            o = self.objects[i]
            if o.size > self.limits.max_member_bytes:
                out[k] = LimitExceededError(
                    f"image is larger than {self.limits.max_member_bytes} bytes (max_member_bytes)",
                    path=self.path,
                    member=self._sources[i],
                )
                continue
            cached = self.cache.get(o.path, o.token) if self.cache is not None else None
            if cached is not None:
                out[k] = cached
            else:
                missing.append(k)
        asked = [self.objects[indices[k]] for k in missing]
        got = self.store.fetch([o.path for o in asked], [o.size for o in asked])
        # Bytes of the listed size are checked against the pin (a same-size replacement);
        # bytes of another size are not the pinned object (``_batches`` says so). Only checked
        # bytes are kept in the cache under the pinned token.
        whole = [
            (k, data)
            for k, data in zip(missing, got, strict=True)
            if isinstance(data, bytes) and len(data) == self.objects[indices[k]].size
        ]
        bad = self.store.unpinned(
            [self.objects[indices[k]] for k, _ in whole], [data for _, data in whole]
        )
        wrong = {whole[j][0]: why for j, why in bad.items()}
        # A fetch the store refused for another reason than a lost connection or a missing
        # object (an emptied object's range is not satisfiable, say): a changed object is
        # source_changed, whatever error its read gave.
        failed = [
            k
            for k, data in zip(missing, got, strict=True)
            if isinstance(data, BaseException)
            and not isinstance(data, (FileNotFoundError, DatasetError))
            and not is_network_error(data)
        ]
        if failed:
            again = self.store.changed_since([self.objects[indices[k]] for k in failed])
            for j, why in again.items():
                if isinstance(why, str):
                    wrong[failed[j]] = why
        for k, data in zip(missing, got, strict=True):
            i = indices[k]
            o = self.objects[i]
            why = wrong.get(k)
            if isinstance(why, BaseException):
                data = why
            elif why is not None or isinstance(data, FileNotFoundError):
                why = why or "it no longer exists"
                data = SourceChangedError(
                    f"object changed since the dataset was registered: {why} (the source changed)",
                    path=self.path,
                    member=self._sources[i],
                )
            elif isinstance(data, bytes) and self.cache is not None and len(data) == o.size:
                self.cache.put(o.path, o.token, data)
            out[k] = data
        return out  # type: ignore[return-value]

    def _batches(self, indices: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` in order; the next batch is fetched while this one is used."""
        chunks = [indices[k : k + self.prefetch] for k in range(0, len(indices), self.prefetch)]
        if not chunks:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dlcprune-prefetch")
        pending: Future[list[bytes | BaseException]] = self._pool.submit(self._fetch, chunks[0])
        for n, chunk in enumerate(chunks):
            datas = pending.result()
            if n + 1 < len(chunks):
                pending = self._pool.submit(self._fetch, chunks[n + 1])
            for i, data in zip(chunk, datas, strict=True):
                if isinstance(data, DatasetError):
                    raise data
                if isinstance(data, BaseException) and is_network_error(data):
                    raise data  # the store's connection: the worker retries the job
                if isinstance(data, BaseException):
                    raise CorruptImageError(
                        f"cannot read object: {type(data).__name__}: {data}",
                        path=self.path,
                        member=self._sources[i],
                    ) from data
                if len(data) != self.objects[i].size:
                    raise SourceChangedError(
                        f"object holds {len(data)} bytes, {self.objects[i].size} when indexed "
                        "(the source changed since it was registered)",
                        path=self.path,
                        member=self._sources[i],
                    )
                yield i, data

    def iter_raw(self, keep: Collection[int] | None = None) -> Iterator[tuple[int, bytes]]:
        indices = sorted(keep) if keep is not None else list(range(len(self.ids)))
        yield from self._batches(indices)

    def _iter_images(
        self, convert: bool, rng: range | None = None
    ) -> Iterator[tuple[int, Image.Image | None]]:
        indices = list(rng if rng is not None else range(len(self.ids)))
        for i, data in self._batches(indices):
            im = decode_image(
                io.BytesIO(data),
                limits=self.limits,
                path=self.path,
                member=self._sources[i],
                convert=convert,
            )
            yield i, im

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def remote_folder(
    store: Store,
    root: str,
    listing: Sequence[ObjectInfo],
    limits: ReadLimits,
    *,
    cache: ByteCache | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> RemoteImageReader:
    """Class folders below prefix ``root`` (path without scheme), from its ``listing``."""
    uri = store.uri(root.rstrip("/") + "/")
    if len(listing) > limits.max_members:
        raise LimitExceededError(f"more than {limits.max_members} objects (max_members)", path=uri)
    files: list[tuple[tuple[str, ...], ObjectInfo]] = []
    dirs: set[tuple[str, ...]] = set()
    for o in listing:
        parts = tuple(split_relative(o.path, path=uri, what="object name", member=o.path))
        if len(parts) > 1:
            dirs.add(parts[:-1])
        if is_image_name(parts[-1]):
            files.append((parts, o))
    ids, labels, chosen = resolve_layout(
        files, dirs, path=uri, limits=limits, describe=lambda o: o.path
    )
    base = root.rstrip("/")
    objects = [ObjectInfo(f"{base}/{o.path}", o.size, o.token) for o in chosen]
    return RemoteImageReader(
        uri,
        limits,
        store=store,
        ids=ids,
        labels=labels,
        objects=objects,
        sources=[o.path for o in chosen],
        fmt="folder",
        cache=cache,
        prefetch=prefetch,
    )


# Manifests ----------------------------------------------------------------------------------


def _rows(data: bytes, name: str, uri: str, limits: ReadLimits) -> Iterator[tuple[int, dict]]:
    """``(row number, record)`` of a CSV (header names lower-cased), JSONL or Parquet manifest;
    row numbers are 1-based data rows (the CSV header and blank JSONL lines not counted)."""
    lower = name.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            raise DatasetError(f"cannot read Parquet manifest: {exc}", path=uri) from exc
        for n, row in enumerate(table.to_pylist(), start=1):
            yield n, row
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"manifest is not UTF-8: {exc}", path=uri) from exc
    if lower.endswith(".csv"):
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            raise EmptyDatasetError("manifest has no header row", path=uri)
        names = [h.strip().lower() for h in header]
        for n, values in enumerate(reader, start=1):
            if not values:
                continue
            if len(values) != len(names):
                raise InvalidRecordError(
                    f"row has {len(values)} fields, the header {len(names)}", path=uri, line=n
                )
            yield n, {k: v.strip() for k, v in zip(names, values, strict=True)}
        return
    n = 0
    for raw in text.splitlines():
        if not raw.strip():
            continue
        n += 1
        if len(raw) > limits.max_line_bytes:
            raise LimitExceededError("line is too long (max_line_bytes)", path=uri, line=n)
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise InvalidRecordError(f"not JSON: {exc}", path=uri, line=n) from exc
        if not isinstance(record, dict):
            raise InvalidRecordError("a line must hold a JSON object", path=uri, line=n)
        yield n, record


def remote_manifest(
    store: Store,
    manifest: str,
    data: bytes,
    limits: ReadLimits,
    *,
    columns: Mapping[str, str] | None = None,
    listing: Sequence[ObjectInfo] = (),
    info: Any = None,
    cache: ByteCache | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> RemoteImageReader:
    """A manifest at ``manifest`` (path without scheme) whose bytes are ``data``.

    ``listing``: the objects below the manifest's folder (relative paths), to check that each row
    names an existing object without asking the store once per row; ``info(path)`` answers
    for a URI outside that folder (``FileNotFoundError`` when it does not exist). Rows naming an
    object outside the manifest's store (another scheme or bucket) are ``UnsafePathError``.
    """
    uri = store.uri(manifest)
    mapping = check_roles(columns, ("image", "label", "id"), fmt="manifest", path=uri)
    folder = posixpath.dirname(manifest)
    bucket = manifest.split("/", 1)[0]
    known = {f"{folder}/{o.path}": o for o in listing}
    label_col: LabelColumn | None = None
    registry = IdRegistry(uri)
    labels: list[str] = []
    objects: list[ObjectInfo] = []
    sources: list[str] = []
    image_key = label_key = id_key = None
    for n, row in _rows(data, manifest, uri, limits):
        if image_key is None:
            keys = list(row)
            fold = manifest.lower().endswith(".csv")
            image_key = mapped(
                "image", mapping, keys, _PATH_KEYS, required=True, path=uri, line=n, fold_case=fold
            )
            label_key = mapped(
                "label", mapping, keys, _LABEL_KEYS, required=False, path=uri, line=n,
                fold_case=fold,
            )  # fmt: skip
            id_key = mapped("id", mapping, keys, ("id",), required=False, path=uri, line=n)
            if label_key is not None:
                label_col = LabelColumn(label_key, path=uri)
        check_samples(len(objects) + 1, limits, uri)
        raw = row.get(image_key)
        if not isinstance(raw, str) or not raw.strip():
            raise MissingFieldError(f"column {image_key!r} holds no image path", path=uri, line=n)
        raw = raw.strip()
        if "://" in raw:
            scheme, full = split_uri(raw)
            if scheme != store.scheme or full.split("/", 1)[0] != bucket:
                raise UnsafePathError(
                    f"image URI {raw!r} is outside the manifest's store "
                    f"({store.scheme}://{bucket}/)",
                    path=uri,
                    line=n,
                    member=raw,
                )
            rest = full.split("/", 1)[1] if "/" in full else ""
            parts = split_relative(rest, path=uri, what="image URI", line=n, member=raw)
            full = f"{bucket}/{'/'.join(parts)}"
        else:
            parts = split_relative(raw, path=uri, what="image path", line=n, member=raw)
            full = f"{folder}/{'/'.join(parts)}" if folder else "/".join(parts)
        obj = known.get(full)
        if obj is None:
            try:
                got = info(full) if info is not None else None
            except (FileNotFoundError, IsADirectoryError):
                got = None
            if got is None:
                raise DatasetError("image object does not exist", path=uri, line=n, member=raw)
            obj = got
        objects.append(ObjectInfo(full, obj.size, obj.token))
        sources.append(raw)
        if label_col is not None:
            labels.append(label_col.value(row.get(label_key), line=n))
        explicit = id_value(row.get(id_key), path=uri, line=n) if id_key is not None else None
        registry.add(explicit if explicit is not None else "/".join(parts), n)
    if not objects:
        raise EmptyDatasetError("manifest lists no images", path=uri)
    return RemoteImageReader(
        uri,
        limits,
        store=store,
        ids=registry.ids,
        labels=labels if label_col is not None else None,
        objects=objects,
        sources=sources,
        fmt="manifest",
        cache=cache,
        prefetch=prefetch,
    )
