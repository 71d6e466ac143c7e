"""http(s) references (when an operator enables them) never reach private addresses."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from app.errors import APIError
from app.references import address_allowed, check_http_url, download_http


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_only_public_addresses_are_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/data.zip",
        "http://localhost:8000/data.zip",
        "https://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.zip",
        "http://user:pass@example.com/x.zip",
        "ftp://example.com/x.zip",
        "file:///etc/passwd",
        "http:///nohost",
    ],
)
def test_private_hosts_credentials_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(APIError) as err:
        check_http_url(url)
    assert err.value.code == "reference_not_allowed"


@pytest.fixture
def redirecting_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_a_loopback_server_is_refused_before_any_request(redirecting_server: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(APIError) as err:
        download_http(f"http://127.0.0.1:{redirecting_server}/x.zip", tmp_path / "x", 10**6)
    assert err.value.code == "reference_not_allowed"
    assert not list(tmp_path.iterdir())


def test_redirects_are_checked_hop_by_hop(
    redirecting_server: int,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    # Let the first hop through (as if it were a public server) to see the redirect refused.
    import app.references as refs

    seen: list[str] = []
    real = refs.check_http_url

    def first_hop_public(url: str) -> None:
        seen.append(url)
        if len(seen) > 1:
            real(url)

    monkeypatch.setattr(refs, "check_http_url", first_hop_public)
    with pytest.raises(APIError) as err:
        download_http(f"http://127.0.0.1:{redirecting_server}/x.zip", tmp_path / "x", 10**6)
    assert err.value.code == "reference_not_allowed"
    assert seen[1].startswith("http://169.254.169.254/")
    assert not list(tmp_path.iterdir())
