"""The client's transport over httpx: requests that raise ``DlcpruneError`` for error answers
and unreachable services, retried with backoff when that is safe, paging, and streamed
downloads written atomically.

Retries (tenacity): a request that got no answer (connection error, timeout) or a 429, 502, 503
or 504 is sent again, at most ``retries`` more times, waiting an exponentially growing, jittered
delay (from ``backoff`` seconds, at most ``max_backoff``; a ``Retry-After`` the service sent is
honoured within that bound). Only requests that are safe to repeat are: GET, HEAD, OPTIONS, PUT
and DELETE, and a POST that carries an ``Idempotency-Key`` (the service answers a repeat with
what the first made). An upload (a file body) is never repeated, and a download that broke off
after it started is not resumed.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

import httpx
import tenacity

from dlcprune.client.errors import DlcpruneError, error_from

RETRY_STATUSES = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DEFAULT_RETRIES = 3

try:
    VERSION = version("dlcprune")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20


_FILENAME_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_FILENAME = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]+))', re.IGNORECASE)


def filename_from(disposition: str | None, fallback: str) -> str:
    """The file name a ``Content-Disposition`` header gives, reduced to a safe base name."""
    name = ""
    if disposition:
        star = _FILENAME_STAR.search(disposition)
        if star:
            name = unquote(star.group(2).strip(), encoding=star.group(1) or "utf-8")
        else:
            plain = _FILENAME.search(disposition)
            if plain:
                name = (plain.group(1) if plain.group(1) is not None else plain.group(2)).strip()
                name = name.replace('\\"', '"')
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*').strip()
    return name if name not in ("", ".", "..") else fallback


def _lines(chunks: Iterable[str]) -> Iterator[str]:
    """Text split into lines that keep their ``\\n`` (so csv can read quoted line breaks)."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        start = 0
        while (end := pending.find("\n", start)) >= 0:
            yield pending[start : end + 1]
            start = end + 1
        pending = pending[start:]
    if pending:
        yield pending


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, DlcpruneError) and (exc.status is None or exc.status in RETRY_STATUSES)


def repeatable(method: str, headers: dict[str, str]) -> bool:
    """Whether sending the request twice does what sending it once does."""
    keyed = any(k.lower() == "idempotency-key" for k in headers)
    return method.upper() in SAFE_METHODS or (method.upper() == "POST" and keyed)


class _Backoff(tenacity.wait.wait_base):
    """``initial`` doubled at each attempt plus up to ``initial`` of jitter, at most
    ``maximum``; the service's ``Retry-After`` (within ``maximum``) when it sent one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        hint = getattr(outcome.exception(), "retry_after", None) if outcome else None
        if hint is not None:
            return float(min(self.maximum, max(0.0, hint)))
        grown = self.initial * 2 ** (retry_state.attempt_number - 1)
        return float(min(self.maximum, grown + random.uniform(0, self.initial)))


def _write_stream(resp: httpx.Response, target: Path) -> None:
    """Write a response body to ``target`` chunk by chunk, through a temporary name beside it,
    so a partial file never takes the final name."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with open(tmp, "xb") as out:
            for chunk in resp.iter_bytes(_CHUNK):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Http:
    """The connection to a service: headers (the key as ``Authorization: Bearer``), requests
    that raise ``DlcpruneError``, paging and streamed saves. ``Client`` adds the API's calls."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        *,
        http: httpx.Client | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required, e.g. http://127.0.0.1:8000")
        if retries < 0 or backoff < 0 or max_backoff < backoff:
            raise ValueError("retries >= 0 and 0 <= backoff <= max_backoff")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._headers = {"User-Agent": f"dlcprune-client/{VERSION}", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless the ``httpx.Client`` was passed in)."""
        if self._own_http:
            self._http.close()

    # Transport ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    def _retrying(self, method: str, headers: dict[str, str], kw: dict[str, Any], once: Any) -> Any:
        """``once()``, repeated on a transient failure when the request is repeatable."""
        if self.retries == 0 or "files" in kw or not repeatable(method, headers):
            return once()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=_Backoff(self.backoff, self.max_backoff),
            retry=tenacity.retry_if_exception(_transient),
            reraise=True,
        )
        return retrying(once)

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self._headers, **(kw.pop("headers", None) or {})}
        url = self._url(path)

        def once() -> httpx.Response:
            try:
                resp = self._http.request(method, url, headers=headers, **kw)
            except httpx.TimeoutException as exc:
                raise DlcpruneError(
                    None, "timeout", f"{method} {url}: {exc or 'timed out'}"
                ) from exc
            except httpx.TransportError as exc:
                raise DlcpruneError(None, "connection_error", f"{method} {url}: {exc}") from exc
            # 304: the answer to an If-None-Match the caller sent (the resource is unchanged).
            if not resp.is_success and resp.status_code != 304:
                raise error_from(resp)
            return resp

        return self._retrying(method, headers, kw, once)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw).json()

    @contextmanager
    def _stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        headers = {**self._headers, **(kw.pop("headers", None) or {})}
        url = self._url(path)

        def failed(exc: httpx.HTTPError) -> DlcpruneError:
            if isinstance(exc, httpx.TimeoutException):
                return DlcpruneError(None, "timeout", f"{method} {url}: {exc or 'timed out'}")
            return DlcpruneError(None, "connection_error", f"{method} {url}: {exc}")

        def opened() -> httpx.Response:
            request = self._http.build_request(method, url, headers=headers, **kw)
            try:
                resp = self._http.send(request, stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise failed(exc) from exc
            if not resp.is_success:
                resp.read()
                resp.close()
                raise error_from(resp)
            return resp

        resp = self._retrying(method, headers, kw, opened)
        try:
            yield resp
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise failed(exc) from exc
        finally:
            resp.close()

    def _pages(self, path: str, params: dict[str, Any], page_size: int) -> Iterator[dict]:
        offset = 0
        while True:
            page = self._json("GET", path, params={**params, "limit": page_size, "offset": offset})
            items = page.get("items") or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("total") or 0):
                return

    def _save(self, resp: httpx.Response, dest_dir: str | os.PathLike[str], fallback: str) -> Path:
        """Stream a response body into ``dest_dir`` under the server's file name (atomically:
        a partial file never takes the final name)."""
        folder = Path(dest_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = filename_from(resp.headers.get("content-disposition"), fallback)
        target = folder / name
        _write_stream(resp, target)
        return target
