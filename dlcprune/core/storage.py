"""Object stores as datasets are kept there: listing, metadata, pins and fetching, over fsspec.

A ``Store`` wraps one fsspec file system (``s3://`` with s3fs, ``gs://`` with gcsfs, ``file://``
with fsspec's local one) and answers in its own terms:

- ``listing(root)``: every object below a prefix, as ``ObjectInfo`` (the path relative to the
  prefix, the size, and the object's version token: GCS's content hash, else the version id or
  generation where the store keeps versions, else its ETag, else its modification time);
- ``fetch(paths)``: the bytes of several objects at once (fsspec runs the requests concurrently
  for the async stores); ``unpinned(objects, datas)`` tells which fetched bytes are not the
  pinned version of their object (a content hash checked on the bytes where the token is one,
  else the object's metadata asked again);
- ``pin(objects)``: one SHA-256 over the sorted ``(path, size, token)`` triples: what a dataset
  registered from the store is pinned to. Reading the same listing again and getting another pin
  means the source changed (``changed(old, new)`` names the first object that differs).

``ByteCache`` keeps fetched bytes on the local disk within a size bound, keyed by the object's
path and version token, so a changed object is never served from the cache.

Credentials are never handled here: each file system reads its own standard environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``STORAGE_EMULATOR_HOST`` for a GCS emulator), or the caller
passes storage options.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ByteCache", "ObjectInfo", "Store", "changed", "open_store", "pin", "split_uri"]


@dataclass(frozen=True)
class ObjectInfo:
    """One object below a listed prefix. ``path``: relative to the prefix (POSIX)."""

    path: str
    size: int
    token: str


def split_uri(uri: str) -> tuple[str, str]:
    """``(scheme, path without scheme)``: ``s3://b/k`` -> ``("s3", "b/k")``."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return scheme, parts.path
    return scheme, f"{parts.netloc}{parts.path}"


def _token(info: Mapping[str, Any]) -> str:
    """The version token of an fsspec ``info`` dict: the most specific the store gives. A
    content hash first where the store keeps one for every object (GCS's ``md5Hash``, absent
    only on composed objects): the same bytes copied under another prefix are the same data, so
    its scores are reused; GCS's generation changes on every write, content or not."""
    value = info.get("md5Hash")
    if value:
        return f"c:{value}"
    for key in ("VersionId", "version_id", "generation"):
        value = info.get(key)
        if value not in (None, "", "null"):
            return f"v:{value}"
    for key in ("ETag", "etag"):
        value = info.get(key)
        if value:
            return f"e:{str(value).strip(chr(34))}"
    for key in ("mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if value:
            return f"t:{value}"
    return ""


_TOKEN_FIELDS = {
    "c": ("md5Hash",),
    "v": ("VersionId", "version_id", "generation"),
    "e": ("ETag", "etag"),
    "t": ("mtime", "LastModified", "updated", "created"),
}


def still_pinned(pinned: ObjectInfo, raw: Mapping[str, Any]) -> bool:
    """Whether the metadata ``raw`` of an object opened now (an fsspec file's ``details``)
    shows the object ``pinned`` at registration: the same size and the same value of the field
    its token came from. A field ``raw`` does not carry is not taken as a change."""
    size = raw.get("size")
    if size is not None and int(size) != pinned.size:
        return False
    kind, _, value = pinned.token.partition(":")
    for key in _TOKEN_FIELDS.get(kind, ()):
        now = raw.get(key)
        if now not in (None, "", "null"):
            return str(now).strip(chr(34)) == value
    return True


_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


def content_matches(token: str, data: bytes) -> bool | None:
    """Whether ``data`` are the bytes a version token names, where the bytes can tell: GCS's
    ``md5Hash`` (``c:``, base64) always is the content's MD5; an ETag of an MD5's form (``e:``,
    32 hex digits) is one for a plain upload, but not for every server-side encryption, so a
    mismatch there is only a reason to ask the store. ``None``: the bytes cannot tell (a version
    id, a multipart upload's ETag, a modification time)."""
    kind, _, value = token.partition(":")
    if kind == "c":
        return base64.b64encode(hashlib.md5(data).digest()).decode() == value
    if kind == "e" and _MD5_HEX.fullmatch(value):
        return hashlib.md5(data).hexdigest() == value.lower()
    return None


class Store:
    """One fsspec file system for one scheme (see the module docstring)."""

    def __init__(self, scheme: str, fs: Any) -> None:
        self.scheme = scheme
        self.fs = fs

    def uri(self, path: str) -> str:
        return f"{self.scheme}://{path}"

    def info(self, path: str) -> ObjectInfo:
        """One object's metadata; ``FileNotFoundError`` when it does not exist."""
        raw = self.fs.info(path)
        if raw.get("type") == "directory":
            raise IsADirectoryError(path)
        return ObjectInfo(path, int(raw.get("size") or 0), _token(raw))

    def listing(self, root: str, limit: int | None = None) -> list[ObjectInfo]:
        """Every object below ``root`` (a prefix, with or without its ``/``), sorted by path,
        paths relative to ``root``; hidden names (``.x``) are left out. ``FileNotFoundError``
        when there is none; ``OverflowError`` past ``limit`` objects."""
        base = root.rstrip("/")
        found = self.fs.find(base, detail=True, withdirs=False)
        out: list[ObjectInfo] = []
        for full, raw in found.items():
            if raw.get("type") == "directory":
                continue
            rel = full[len(base) :].lstrip("/") if full.startswith(base) else full
            if not rel or any(p.startswith(".") for p in rel.split("/")):
                continue
            out.append(ObjectInfo(rel, int(raw.get("size") or 0), _token(raw)))
            if limit is not None and len(out) > limit:
                raise OverflowError(f"more than {limit} objects")
        if not out:
            raise FileNotFoundError(f"no objects below {self.uri(base)}/")
        out.sort(key=lambda o: o.path)
        return out

    def fetch(
        self, paths: Sequence[str], sizes: Sequence[int] | None = None
    ) -> list[bytes | BaseException]:
        """The bytes of each path, in order; an exception in place of an object that failed.
        With ``sizes`` (the listing's), each object of a remote store is asked for as that many
        bytes: one request, where a whole-object read first asks for its size (s3fs). An object
        grown since comes back cut to its listed size: its pin check tells a replacement, and
        passes bytes that are still the registered ones (an append). A store's costs differ
        by token: an ETag that is no MD5 (SSE-KMS, SSE-C, a multipart upload) or a version id
        costs a metadata request per object again (``unpinned``)."""
        if not paths:
            return []
        # cat_ranges, not cat: cat first expands (asks the store about) every path; whole
        # objects as ranges are fetched at once, concurrently on the async stores.
        n = len(paths)
        starts: list[int | None] = [None] * n
        ends: list[int | None] = [None] * n
        if sizes is not None and getattr(self.fs, "async_impl", False):  # a local read is one
            for i, size in enumerate(sizes):
                if size > 0:
                    starts[i], ends[i] = 0, size
        got = self.fs.cat_ranges(list(paths), starts, ends, on_error="return")
        return [g if isinstance(g, (bytes, BaseException)) else bytes(g) for g in got]

    def current(self, paths: Sequence[str]) -> list[Mapping[str, Any] | BaseException]:
        """Each path's metadata asked of the store now (not fsspec's listing cache), in order;
        an exception in place of one the store did not answer."""
        if not paths:
            return []
        fs = self.fs
        for path in paths:
            fs.invalidate_cache(path)
        if getattr(fs, "async_impl", False) and getattr(fs, "loop", None) is not None:
            from fsspec.asyn import _run_coros_in_chunks, sync

            async def ask() -> list[Any]:  # in fsspec's batches, as cat_ranges fetches
                coros = [fs._info(p) for p in paths]
                return await _run_coros_in_chunks(coros, return_exceptions=True)

            return list(sync(fs.loop, ask))
        out: list[Mapping[str, Any] | BaseException] = []
        for path in paths:
            try:
                out.append(_local_info(path) if self.scheme == "file" else fs.info(path))
            except Exception as exc:
                out.append(exc)
        return out

    def changed_since(self, objects: Sequence[ObjectInfo]) -> dict[int, str | BaseException]:
        """Which ``objects`` (full paths) the store's metadata, asked now, shows changed since
        their pin: index -> why, in words, or the exception of a store that could not be asked."""
        bad: dict[int, str | BaseException] = {}
        for i, raw in enumerate(self.current([o.path for o in objects])):
            if isinstance(raw, FileNotFoundError):
                bad[i] = "it no longer exists"
            elif isinstance(raw, BaseException):
                bad[i] = raw
            elif not still_pinned(objects[i], raw):
                bad[i] = "it was replaced (another version)"
        return bad

    def unpinned(
        self, objects: Sequence[ObjectInfo], datas: Sequence[bytes]
    ) -> dict[int, str | BaseException]:
        """Which of ``datas`` (fetched for ``objects``, full paths, sizes already checked) are not
        the pinned version of their object: index -> why, in words, or the exception of a store
        that could not be asked (a lost connection: the caller raises it, the read is retried).
        Bytes whose token is a content hash are checked on the bytes alone, with no request; the
        others' metadata is asked again, all at once (one request each)."""
        bad: dict[int, str | BaseException] = {}
        ask: list[int] = []
        for i, (o, data) in enumerate(zip(objects, datas, strict=True)):
            match = content_matches(o.token, data)
            if match is False and o.token.startswith("c:"):
                bad[i] = "its bytes are not the content registered (another MD5)"
            elif match is not True:
                ask.append(i)
        if ask:
            for j, why in self.changed_since([objects[i] for i in ask]).items():
                bad[ask[j]] = why
        return bad

    def get_file(self, path: str, local: str) -> None:
        self.fs.get_file(path, local)


def _local_info(path: str) -> dict[str, Any]:
    """A local file's metadata as the listing gives it (fsspec's ``find`` reads a symbolic
    link's own modification time and its target's size; its ``info`` on a path, the target's
    time), so that an unchanged link is not taken for a changed object."""
    own = os.lstat(path)
    return {"size": os.stat(path).st_size, "mtime": own.st_mtime}


def open_store(scheme: str, options: Mapping[str, Any] | None = None) -> Store:
    """The store of ``scheme`` with ``options`` (fsspec storage options) on top of the file
    system's own environment. ``AWS_ENDPOINT_URL`` (an S3-compatible store) is honoured for
    ``s3`` even by s3fs versions that do not read it themselves."""
    import fsspec

    opts = dict(options or {})
    if scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        client = dict(opts.get("client_kwargs") or {})
        if endpoint and "endpoint_url" not in opts and "endpoint_url" not in client:
            opts["endpoint_url"] = endpoint
        # Listings must see objects written a moment ago (the pin compares two listings).
        opts.setdefault("use_listings_cache", False)
    if scheme == "gs":
        opts.setdefault("use_listings_cache", False)
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            # An emulator (fake-gcs-server): gcsfs's plain file system. The default one first
            # asks each bucket's type over gRPC with TLS, which emulators do not speak (a
            # minute of retries per bucket before it falls back to this one).
            from gcsfs.core import GCSFileSystem

            return Store(scheme, GCSFileSystem(**opts))
    fs = fsspec.filesystem("file" if scheme == "file" else scheme, **opts)
    return Store(scheme, fs)


def pin(objects: Iterable[ObjectInfo], extra: Mapping[str, Any] | None = None) -> str:
    """The SHA-256 (hex) of a listing (and ``extra``, such as a manifest's content hash)."""
    h = hashlib.sha256()
    if extra:
        h.update(json.dumps(dict(extra), sort_keys=True).encode())
    for o in sorted(objects, key=lambda o: o.path):
        h.update(f"{o.path}\x00{o.size}\x00{o.token}\n".encode())
    return h.hexdigest()


def changed(old: Sequence[ObjectInfo], new: Sequence[ObjectInfo]) -> str | None:
    """The first difference between two listings, in words (``None`` when they are equal)."""
    before = {o.path: o for o in old}
    after = {o.path: o for o in new}
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a is None:
            return f"object {path!r} was added"
        if b is None:
            return f"object {path!r} was removed"
        if a.size != b.size or a.token != b.token:
            return f"object {path!r} was changed"
    return None


class ByteCache:
    """Fetched bytes on the local disk, at most ``max_bytes`` in all (oldest written dropped
    first); keys are ``(path, token)`` pairs, so another version of an object is another entry.
    Safe for several threads of one process; files are written atomically, so processes can
    share a directory."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max(0, int(max_bytes))
        self._lock = threading.Lock()
        self._entries: dict[str, int] = {}
        self._total = 0
        if self.max_bytes:
            self.dir.mkdir(parents=True, exist_ok=True)
            found = []
            for p in self.dir.glob("*/*"):
                if p.is_file() and ".partial-" not in p.name:
                    st = p.stat()
                    found.append((st.st_mtime, p.name, st.st_size))
            for _, name, size in sorted(found):
                self._entries[name] = size
                self._total += size

    @staticmethod
    def _name(path: str, token: str) -> str:
        return hashlib.sha256(f"{path}\x00{token}".encode()).hexdigest()

    def _file(self, name: str) -> Path:
        return self.dir / name[:2] / name

    def get(self, path: str, token: str) -> bytes | None:
        if not self.max_bytes:
            return None
        name = self._name(path, token)
        with self._lock:
            if name not in self._entries:
                return None
        try:
            return self._file(name).read_bytes()
        except OSError:
            return None

    def put(self, path: str, token: str, data: bytes) -> None:
        if not self.max_bytes or len(data) > self.max_bytes:
            return
        name = self._name(path, token)
        target = self._file(name)
        with self._lock:
            if name in self._entries:
                return
            self._entries[name] = len(data)
            self._total += len(data)
            evict = []
            while self._total > self.max_bytes and self._entries:
                old = next(iter(self._entries))
                self._total -= self._entries.pop(old)
                evict.append(old)
        for old in evict:
            with contextlib.suppress(OSError):
                self._file(old).unlink()
        if name in evict:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{name}.partial-{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError:
            with self._lock:
                if self._entries.pop(name, None) is not None:
                    self._total -= len(data)
            tmp.unlink(missing_ok=True)

    @property
    def total_bytes(self) -> int:
        return self._total
