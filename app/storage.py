"""The service's storage layer: which schemes a reference or an export may use, and the store
behind each (``dlcprune.core.storage.Store`` over fsspec).

- ``file://``: a path below one of ``DLCPRUNE_FILE_ROOTS`` (symlinks and ``..`` resolved first);
- ``s3://``, ``gs://`` (s3fs, gcsfs): when listed in ``DLCPRUNE_REFERENCE_SCHEMES``; credentials
  from each file system's standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_ENDPOINT_URL`` for an S3-compatible store, ``GOOGLE_APPLICATION_CREDENTIALS``) or
  ``DLCPRUNE_STORAGE_OPTIONS`` (JSON per scheme). They are never stored, returned or logged:
  error messages name the URI and the store's answer, never the options;
- ``http(s)://``: single files, when enabled, behind the SSRF guard (``app.references``).

Errors are problem documents: 422 ``reference_not_allowed`` (a scheme not enabled, with what
enables it), 404 ``reference_not_found`` (nothing at the URI), 403 ``access_denied`` (the store
refused the credentials).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.config import Settings
from app.errors import APIError, unprocessable
from dlcprune.core.storage import ByteCache, Store, open_store, split_uri

STORE_SCHEMES = ("s3", "gs")
HTTP_SCHEMES = ("http", "https")
_CREDENTIALS_HINT = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an "
    "S3-compatible store)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (or STORAGE_EMULATOR_HOST for an emulator)",
}


def not_found(uri: str, detail: str = "") -> APIError:
    return APIError(404, "reference_not_found", f"{uri}: nothing there{detail}")


def access_denied(uri: str) -> APIError:
    return APIError(403, "access_denied", f"{uri}: the store refused access with the "
                    "credentials this service has")  # fmt: skip


def scheme_of(uri: str) -> str:
    return urlsplit(uri).scheme.lower()


def check_scheme(uri: str, settings: Settings) -> str:
    """The URI's scheme, if this service may use it (else a 422 saying what enables it)."""
    scheme = scheme_of(uri)
    if not scheme:
        raise unprocessable("reference_not_allowed", "the uri needs a scheme such as file://")
    if scheme == "file":
        if not settings.file_roots:
            raise unprocessable(
                "reference_not_allowed",
                "file:// references are disabled (the operator sets DLCPRUNE_FILE_ROOTS)",
            )
        return scheme
    if scheme not in settings.reference_schemes:
        enabled = ", ".join(["file", *settings.reference_schemes]) if settings.file_roots else (
            ", ".join(settings.reference_schemes) or "none"
        )  # fmt: skip
        how = ""
        if scheme in _CREDENTIALS_HINT:
            how = (
                f"; the operator enables it with DLCPRUNE_REFERENCE_SCHEMES={scheme} and "
                f"credentials in {_CREDENTIALS_HINT[scheme]} (`make run` does so when they are "
                "set)"
            )
        raise unprocessable(
            "reference_not_allowed",
            f"scheme {scheme!r} is not enabled on this service (enabled: {enabled}){how}",
        )
    if scheme not in HTTP_SCHEMES:
        try:
            import fsspec

            fsspec.get_filesystem_class(scheme)
        except (ImportError, ValueError) as exc:
            raise unprocessable(
                "reference_not_allowed", f"scheme {scheme!r} is not available: {exc}"
            ) from exc
    return scheme


def resolve_file(uri: str, settings: Settings, *, must_exist: bool = True) -> Path:
    """A ``file://`` URI's real path, which must lie below one of the configured roots."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise unprocessable("reference_not_allowed", "file:// references must name a local path")
    raw = unquote(parts.path)
    if not raw.startswith("/") or "\x00" in raw:
        raise unprocessable("reference_not_allowed", "file:// references need an absolute path")
    if not settings.file_roots:
        raise unprocessable(
            "reference_not_allowed",
            "file:// references are disabled (the operator sets DLCPRUNE_FILE_ROOTS)",
        )
    # Resolve symlinks and '..' first, then compare against the roots.
    real = Path(os.path.realpath(raw))
    for root in settings.file_roots:
        if real == Path(root) or Path(root) in real.parents:
            if must_exist and not real.exists():
                raise unprocessable("reference_not_found", f"{uri} does not exist")
            return real
    raise unprocessable("reference_not_allowed", f"{uri} is outside the allowed file roots")


_stores: dict[tuple[str, str], Store] = {}
_lock = threading.Lock()


def store_for(scheme: str, settings: Settings) -> Store:
    """The store of an enabled scheme (one per scheme and options, reused)."""
    key = (scheme, settings.storage_options.get_secret_value())
    with _lock:
        if key not in _stores:
            _stores[key] = open_store(scheme, settings.storage_options_for(scheme))
        return _stores[key]


def locate(uri: str, settings: Settings) -> tuple[Store, str]:
    """The store and the path in it (without scheme) of a ``file``, ``s3`` or ``gs`` URI."""
    scheme = check_scheme(uri, settings)
    if scheme == "file":
        real = resolve_file(uri, settings)
        path = str(real) + ("/" if uri.endswith("/") or real.is_dir() else "")
        return store_for("file", settings), path
    return store_for(scheme, settings), split_uri(uri)[1]


def store_error(uri: str, exc: BaseException) -> APIError:
    """A store's refusal as a problem document (never a 500, never the credentials)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, PermissionError):
        return access_denied(uri)
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return not_found(uri)
    if isinstance(exc, OverflowError):
        return unprocessable("limit_exceeded", f"{uri}: {exc} (max_members)")
    return unprocessable("unreadable", f"{uri}: the store could not be read: {type(exc).__name__}")


_caches: dict[str, ByteCache] = {}


def byte_cache(settings: Settings) -> ByteCache:
    """The local cache of fetched objects (``cache_dir/objects``, ``remote_cache_bytes``)."""
    assert settings.cache_dir is not None
    where = str(Path(settings.cache_dir) / "objects")
    with _lock:
        if where not in _caches:
            _caches[where] = ByteCache(where, settings.remote_cache_bytes)
        return _caches[where]
