"""http(s) dataset references, when the operator enables them, without server-side request
forgery: a URL whose host is (or resolves to) a private, loopback, link-local, multicast or
reserved address is refused, and so is every redirect to one. Redirects are followed by hand
(at most 5), each hop checked; the body is streamed to disk with a size limit.

A residual risk is DNS rebinding (a name that resolves to a public address when checked and a
private one when connected); operators who enable http(s) should also firewall the service's
egress.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from app.errors import unprocessable

MAX_REDIRECTS = 5


def _refuse(message: str):  # type: ignore[no-untyped-def]
    return unprocessable("reference_not_allowed", message)


def address_allowed(address: str) -> bool:
    """Only globally routable unicast addresses may be fetched."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_http_url(url: str) -> None:
    """Refuse a URL that is not plain http(s) to a public host (after resolving its name)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse(f"only http and https URLs can be fetched, not {parts.scheme!r}")
    if parts.username or parts.password:
        raise _refuse("credentials in the URL are not allowed")
    host = parts.hostname
    if not host:
        raise _refuse("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise _refuse(f"bad port in the URL: {exc}") from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _refuse(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address):
            raise _refuse(f"{host!r} resolves to {address}, which is not a public address")


def download_http(url: str, dest: Path, max_bytes: int, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` (atomically), checking every hop; returns ``dest``."""
    import httpx

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.partial-{uuid.uuid4().hex}")
    current = url
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                check_http_url(current)
                with client.stream("GET", current) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise _refuse("a redirect without a Location")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code != 200:
                        raise _refuse(f"fetching the URL answered HTTP {resp.status_code}")
                    size = 0
                    with open(tmp, "wb") as out:
                        for chunk in resp.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > max_bytes:
                                raise unprocessable(
                                    "limit_exceeded", f"the URL serves more than {max_bytes} bytes"
                                )
                            out.write(chunk)
                    os.replace(tmp, dest)
                    return dest
            raise _refuse(f"more than {MAX_REDIRECTS} redirects")
    except httpx.HTTPError as exc:
        raise _refuse(f"cannot fetch the URL: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
