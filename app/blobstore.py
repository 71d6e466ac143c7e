"""Blob store: uploads, indexes, per-level losses and exports.

A local directory by default; any fsspec URL (``s3://bucket/prefix``, ``gs://...``) in production,
with the matching fsspec backend installed. Keys are relative POSIX paths made by the service
(``datasets/<uuid>/data.zip``); a key never escapes the store's root. Writes are atomic: a reader
sees the whole object or none of it.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class BlobStoreError(Exception):
    pass


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise BlobStoreError(f"invalid blob key {key!r}")
    return key


class BlobStore:
    def __init__(self, url: str, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.url = url
        self.remote = "://" in url and not url.startswith("file://")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.remote:
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(url)
            self.root = root.rstrip("/")
        else:
            self.root = str(Path(url.removeprefix("file://")).resolve())
            Path(self.root).mkdir(parents=True, exist_ok=True)

    # Paths -------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        check_key(key)
        if self.remote:
            return f"{self.root}/{key}"
        return os.path.join(self.root, *key.split("/"))

    # Writing -----------------------------------------------------------------------------

    @contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """A binary file to write ``key`` to; published only when the block ends without error."""
        path = self._path(key)
        if self.remote:
            tmp = f"{path}.partial-{uuid.uuid4().hex}"
            try:
                with self.fs.open(tmp, "wb") as fh:
                    yield fh
                self.fs.mv(tmp, path)
            except BaseException:
                self._remove_quietly(tmp)
                raise
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{path}.partial-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            self._remove_quietly(tmp)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as fh:
            fh.write(data)

    def put_file(self, key: str, src: str | os.PathLike[str]) -> None:
        with open(src, "rb") as fin, self.writer(key) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)

    # Reading -----------------------------------------------------------------------------

    def open(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            if self.remote:
                return self.fs.open(path, "rb")
            return open(path, "rb")
        except FileNotFoundError:
            raise BlobStoreError(f"blob {key} not found") from None

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return bool(self.fs.exists(path)) if self.remote else os.path.exists(path)

    def size(self, key: str) -> int:
        path = self._path(key)
        return int(self.fs.size(path)) if self.remote else os.path.getsize(path)

    def local_path(self, key: str) -> Path:
        """A local file with the blob's content: the file itself, or a cached download."""
        if not self.remote:
            path = Path(self._path(key))
            if not path.exists():
                raise BlobStoreError(f"blob {key} not found")
            return path
        if self.cache_dir is None:
            raise BlobStoreError("a remote blob store needs a local cache directory")
        local = self.cache_dir.joinpath("blobs", *key.split("/"))
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f"{local.name}.partial-{uuid.uuid4().hex}")
            try:
                self.fs.get(self._path(key), str(tmp))
                os.replace(tmp, local)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return local

    # Deleting ----------------------------------------------------------------------------

    def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under ``prefix/`` (and cached copies)."""
        path = self._path(prefix)
        if self.remote:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
            if self.cache_dir is not None:
                shutil.rmtree(self.cache_dir.joinpath("blobs", *prefix.split("/")), True)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def delete(self, key: str) -> None:
        self._remove_quietly(self._path(key))

    def _remove_quietly(self, path: str) -> None:
        try:
            if self.remote:
                if self.fs.exists(path):
                    self.fs.rm(path)
            else:
                os.unlink(path)
        except (FileNotFoundError, OSError):
            pass

    def check(self) -> None:
        """Readiness: write, read back and delete a probe object."""
        key = f"_probe/{uuid.uuid4().hex}"
        self.put_bytes(key, b"ok")
        try:
            if self.get_bytes(key) != b"ok":
                raise BlobStoreError("blob store returned other bytes than written")
        finally:
            self.delete(key)

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "remote": self.remote}


_stores: dict[tuple[str, str], BlobStore] = {}


def get_blobstore(settings: Any = None) -> BlobStore:
    from app.config import get_settings

    settings = settings or get_settings()
    key = (settings.blob_url, str(settings.cache_dir))
    if key not in _stores:
        _stores[key] = BlobStore(settings.blob_url, settings.cache_dir)
    return _stores[key]
