"""``AsyncClient``: every call of ``Client``, awaitable.

    async with AsyncClient("http://127.0.0.1:8000", api_key=key) as dlc:
        job = await dlc.start_job(dataset_id, params={"levels": 10})
        job, hooks = await asyncio.gather(dlc.wait(job.id), dlc.webhooks())
        async for item in dlc.iter_items(selection_id):
            ...

Each call runs the synchronous client's call in a worker thread (``asyncio.to_thread``), over one
connection pool, so the event loop never waits on the network and every call, its retries and
its errors are exactly ``Client``'s: one implementation of the API, two ways to call it. The
``iter_*`` calls become async iterators; a ``wait`` progress callback is called in the worker
thread. A cancelled await returns at once; the request it started finishes in its thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

from dlcprune.client import Client

__all__ = ["AsyncClient"]

_DONE = object()


class AsyncClient:
    """The API's calls as coroutines; the arguments are ``Client``'s (``base_url``,
    ``api_key``, ``timeout``, ``retries``, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._client = Client(*args, **kwargs)

    def __repr__(self) -> str:
        return f"AsyncClient({self._client.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._client.base_url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless an ``httpx.Client`` was passed in)."""
        await asyncio.to_thread(self._client.close)


def _awaitable(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._client, name), *args, **kwargs)

    return call


def _async_iterator(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def iterate(self: AsyncClient, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        items = await asyncio.to_thread(lambda: iter(getattr(self._client, name)(*args, **kwargs)))
        while (item := await asyncio.to_thread(next, items, _DONE)) is not _DONE:
            yield item

    return iterate


# Every public call of Client, by the same name: new calls there are calls here.
for _name, _method in inspect.getmembers(Client, inspect.isfunction):
    if _name.startswith("_") or _name == "close":
        continue
    _wrap = _async_iterator if inspect.isgeneratorfunction(_method) else _awaitable
    setattr(AsyncClient, _name, _wrap(_name, _method))
