"""Streaming multipart uploads: the file goes to the blob store chunk by chunk.

The body is parsed as it arrives (python-multipart's push parser); the ``file`` part is written to
the blob store while its SHA-256 and size are computed, so an upload is never held whole in memory
or spooled twice. Over the size limit the upload stops with 413 and nothing is kept.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from app.blobstore import BlobStore
from app.errors import APIError

MAX_TEXT_FIELD = 64 * 1024


@dataclass
class ReceivedFile:
    filename: str
    key: str
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


def too_large(limit: int) -> APIError:
    return APIError(
        413, "payload_too_large", f"the upload is larger than the limit of {limit} bytes"
    )


def safe_filename(raw: str) -> str:
    """The last path component of a client-supplied name, without control characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    return name.strip()[:255] or "upload"


class _Receiver:
    def __init__(
        self, blobs: BlobStore, key_for: Callable[[str], str], max_bytes: int, field_name: str
    ) -> None:
        self.blobs = blobs
        self.key_for = key_for
        self.max_bytes = max_bytes
        self.field_name = field_name
        self.stack = ExitStack()
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.part: str | None = None  # "file", "text" or "skip"
        self.text_name = ""
        self.text = bytearray()
        self.fields: dict[str, str] = {}
        self.writer: IO[bytes] | None = None
        self.hasher = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.key: str | None = None
        self.file_done = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}
        self.part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = b""
        self.header_value = b""

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if disposition != b"form-data":
            raise APIError(400, "bad_multipart", "every part needs Content-Disposition: form-data")
        name = params.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if name == self.field_name:
            if raw_filename is None:
                raise APIError(
                    422, "missing_file", f"the {self.field_name!r} part must be a file upload"
                )
            if self.file_done or self.writer is not None:
                raise APIError(422, "too_many_files", f"send one {self.field_name!r} part only")
            self.filename = safe_filename(raw_filename.decode("utf-8", "replace"))
            self.key = self.key_for(self.filename)
            self.writer = self.stack.enter_context(self.blobs.writer(self.key))
            self.part = "file"
        elif raw_filename is None:
            self.part = "text"
            self.text_name = name
            self.text = bytearray()
        else:
            self.part = "skip"  # another file field: read past it, keep nothing

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part == "file":
            assert self.writer is not None
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise too_large(self.max_bytes)
            self.hasher.update(chunk)
            self.writer.write(chunk)
        elif self.part == "text":
            self.text += chunk
            if len(self.text) > MAX_TEXT_FIELD:
                raise APIError(
                    413, "payload_too_large", f"form field {self.text_name!r} is too long"
                )

    def on_part_end(self) -> None:
        if self.part == "file":
            self.file_done = True
        elif self.part == "text":
            self.fields[self.text_name] = self.text.decode("utf-8", "replace")
        self.part = None


async def receive_file(
    request: Request,
    *,
    blobs: BlobStore,
    key_for: Callable[[str], str],
    max_bytes: int,
    field_name: str = "file",
) -> ReceivedFile:
    """Stream a ``multipart/form-data`` body's ``field_name`` file part into the blob store.

    ``key_for(filename)`` names the blob (it may raise an ``APIError`` to refuse the file before a
    byte is stored). On any error the partial blob is discarded.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise APIError(
            415, "unsupported_media_type", "send the file as multipart/form-data (field 'file')"
        )
    declared = request.headers.get("content-length")
    # The multipart framing adds a little; a declared length far above the limit fails at once.
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise too_large(max_bytes)
    receiver = _Receiver(blobs, key_for, max_bytes, field_name)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())  # type: ignore[arg-type]
    with receiver.stack:
        try:
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
            parser.finalize()
        except APIError:
            raise
        except Exception as exc:  # malformed framing, client gone
            raise APIError(400, "bad_multipart", f"malformed multipart body: {exc}") from exc
        if not receiver.file_done or receiver.key is None or receiver.filename is None:
            raise APIError(422, "missing_file", f"no {field_name!r} file part in the upload")
        if receiver.size == 0:
            raise APIError(422, "empty_file", "the uploaded file is empty")
    return ReceivedFile(
        filename=receiver.filename,
        key=receiver.key,
        size=receiver.size,
        sha256=receiver.hasher.hexdigest(),
        fields=receiver.fields,
    )


def sha256_path(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 and size of a file, or of a directory tree (relative paths, sizes and contents of
    its files in sorted order), read in chunks."""
    h = hashlib.sha256()
    total = 0
    if os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in names:
                full = os.path.join(root, name)
                files.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
        for rel, full in sorted(files):
            size = os.path.getsize(full)
            h.update(rel.encode() + b"\0" + str(size).encode() + b"\0")
            with open(full, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
            total += size
        return h.hexdigest(), total
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            total += len(chunk)
    return h.hexdigest(), total
