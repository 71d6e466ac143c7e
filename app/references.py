"""The guard against server-side request forgery, for every URL the service fetches or posts
to: http(s) dataset references, when the operator enables them, and webhook targets.

A URL whose host is (or resolves to) a private, loopback, link-local, multicast or reserved
address is refused, and so is every redirect to one. Redirects are followed by hand (at most 5),
each hop checked; the body is streamed to disk with a size limit. Webhook targets may be let
through to loopback (``DLCPRUNE_WEBHOOK_ALLOW_LOOPBACK``, on in the embedded default) and to
networks the operator lists (``DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS``); nothing else is.

A residual risk is DNS rebinding (a name that resolves to a public address when checked and a
private one when connected); operators who enable http(s) should also firewall the service's
egress.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from app.errors import unprocessable

MAX_REDIRECTS = 5


def _refuse(message: str, code: str = "reference_not_allowed"):  # type: ignore[no-untyped-def]
    return unprocessable(code, message)


def address_allowed(
    address: str, *, allow_loopback: bool = False, networks: Sequence[str] = ()
) -> bool:
    """Globally routable unicast addresses may be reached; loopback ones too when
    ``allow_loopback``, and any inside one of ``networks`` (CIDR strings)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_loopback and ip.is_loopback:
        return True
    if any(ip in ipaddress.ip_network(net) for net in networks):
        return True
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_http_url(
    url: str,
    *,
    allow_loopback: bool = False,
    networks: Sequence[str] = (),
    code: str = "reference_not_allowed",
) -> None:
    """Refuse a URL that is not plain http(s) to a public host (after resolving its name), or
    to one of the addresses let through (``address_allowed``); the 422 carries ``code``."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise _refuse(f"only http and https URLs can be used, not {parts.scheme!r}", code)
    if parts.username or parts.password:
        raise _refuse("credentials in the URL are not allowed", code)
    host = parts.hostname
    if not host:
        raise _refuse("the URL has no host", code)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise _refuse(f"bad port in the URL: {exc}", code) from exc
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _refuse(f"cannot resolve {host!r}: {exc}", code) from exc
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address, allow_loopback=allow_loopback, networks=networks):
            raise _refuse(
                f"{host!r} resolves to {address}, which is not a public address (and not "
                "among the networks this service may reach)",
                code,
            )


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
