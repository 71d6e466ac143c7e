"""Bad input through the API: every refusal is a 4xx with a stable code and a message naming the
file and member or line; nothing is written outside its place; keys never leak; other tenants'
ids answer 404 on every route of the OpenAPI spec."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import Api, make_key
from tests.problems import problem
from tests.service.data import image_members


def png(size: tuple[int, int] = (4, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def zip_of(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symlink entry
            zf.writestr(info, "../../etc/passwd")
    return path


def tar_of(path: Path, members: dict[str, bytes], special: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if special:
            info = tarfile.TarInfo("red/evil.png")
            if special == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif special == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, "red/000.png"
            else:
                info.type = tarfile.FIFOTYPE
            tf.addfile(info)
    return path


GOOD = image_members(2)


@pytest.fixture(scope="module")
def strict_app(service_env: dict[str, str]) -> Iterator[TestClient]:
    """The API with small limits, so that limits can be crossed with small files."""
    from app.config import Settings, get_settings
    from app.main import create_app

    strict = Settings(
        max_archive_members=30,
        max_archive_bytes=200_000,
        max_image_pixels=100_000,
        max_line_bytes=1_000,
        max_array_bytes=1_000_000,
        max_upload_bytes=2_000_000,
    )
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: strict
    with TestClient(app) as client:
        yield client


@pytest.fixture
def api(strict_app: TestClient, key_a: str) -> Api:
    return Api(strict_app, key_a)


def bomb_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("red/000.png", b"\0" * (3 * 2**20))  # compresses about 1000:1
        zf.writestr("blue/000.png", png())
    return path


def nested_zip(path: Path) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("x/a.png", png())
    return zip_of(path, {**GOOD, "red/inner.zip": inner.getvalue()})


def huge_npz(path: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 64, 64, 3)}
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
        y = io.BytesIO()
        np.save(y, np.zeros(3, dtype=np.int64))
        zf.writestr("y.npy", y.getvalue())
    return path


def object_npz(path: Path) -> Path:
    x = np.empty(3, dtype=object)
    x[:] = [{"a": 1}, [2], "3"]
    np.savez(path, x=x, y=np.zeros(3))
    return path


def jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


TEXT = [json.dumps({"text": f"t{i}", "label": i % 2}).encode() + b"\n" for i in range(4)]

CASES: dict[str, tuple[Callable[[Path], Path], str, list[str]]] = {
    "zip member with ..": (
        lambda d: zip_of(d / "dots.zip", {**GOOD, "red/../../escape.png": png()}),
        "unsafe_path",
        ["dots.zip", "escape.png"],
    ),
    "zip absolute member": (
        lambda d: zip_of(d / "abs.zip", {**GOOD, "/etc/cron.d/x.png": png()}),
        "unsafe_path",
        ["abs.zip", "/etc/cron.d/x.png"],
    ),
    "zip symlink member": (
        lambda d: zip_of(d / "link.zip", GOOD, link="red/link.png"),
        "unsafe_path",
        ["link.zip", "red/link.png"],
    ),
    "tar symlink member": (
        lambda d: tar_of(d / "link.tar.gz", GOOD, "symlink"),
        "unsafe_path",
        ["red/evil.png"],
    ),
    "tar hard link member": (
        lambda d: tar_of(d / "hard.tar.gz", GOOD, "hardlink"),
        "unsafe_path",
        ["red/evil.png"],
    ),
    "tar fifo member": (
        lambda d: tar_of(d / "fifo.tar.gz", GOOD, "fifo"),
        "unsafe_path",
        ["red/evil.png"],
    ),
    "tar member with ..": (
        lambda d: tar_of(d / "dots.tar.gz", {**GOOD, "../escape.png": png()}),
        "unsafe_path",
        ["../escape.png"],
    ),
    "too many members": (
        lambda d: zip_of(d / "many.zip", {f"red/{i:03d}.png": png() for i in range(40)}),
        "limit_exceeded",
        ["many.zip"],
    ),
    "too many uncompressed bytes": (
        lambda d: zip_of(
            d / "big.zip", {f"red/{i}.png": png((200, 200)) + b"\0" * 60_000 for i in range(5)}
        ),
        "limit_exceeded",
        ["big.zip"],
    ),
    "zip bomb": (lambda d: bomb_zip(d / "bomb.zip"), "limit_exceeded", ["red/000.png"]),
    "nested archive": (lambda d: nested_zip(d / "nested.zip"), "unknown_format", ["red/inner.zip"]),
    "corrupt zip": (
        lambda d: (
            (d / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"\xff" * 200) and d / "corrupt.zip"
        ),
        "corrupt_archive",
        ["corrupt.zip"],
    ),
    "truncated tar.gz": (
        lambda d: (
            (d / "cut.tar.gz").write_bytes(tar_of(d / "whole.tar.gz", GOOD).read_bytes()[:150])
            and d / "cut.tar.gz"
        ),
        "corrupt_archive",
        ["cut.tar.gz"],
    ),
    "decompression bomb image": (
        lambda d: zip_of(d / "pixels.zip", {**GOOD, "red/huge.png": png((1000, 1000))}),
        "limit_exceeded",
        ["red/huge.png"],
    ),
    "not an image, whatever its name": (
        lambda d: zip_of(d / "fake.zip", {**GOOD, "red/fake.png": b"GIF89a" + b"\0" * 50}),
        "corrupt_image",
        ["red/fake.png"],
    ),
    "npz object array": (lambda d: object_npz(d / "objects.npz"), "invalid_record", ["x"]),
    "npz declaring a huge array": (lambda d: huge_npz(d / "huge.npz"), "limit_exceeded", ["huge"]),
    "jsonl invalid utf-8": (
        lambda d: jsonl(d / "utf8.jsonl", [*TEXT[:2], b'{"text": "\xff\xfe", "label": 1}\n']),
        "invalid_record",
        ["utf8.jsonl:3"],
    ),
    "jsonl overlong line": (
        lambda d: jsonl(
            d / "long.jsonl",
            [TEXT[0], json.dumps({"text": "x" * 2000, "label": 0}).encode() + b"\n"],
        ),
        "invalid_record",
        ["long.jsonl:2"],
    ),
    "jsonl missing field": (
        lambda d: jsonl(d / "missing.jsonl", [*TEXT[:3], b'{"text": "no label"}\n']),
        "missing_field",
        ["missing.jsonl:4"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_uploads_are_refused_with_a_code_naming_the_place(
    api: Api, tmp_path: Path, service_env: dict[str, str], case: str
) -> None:
    make, code, names = CASES[case]
    path = make(tmp_path)
    resp = api.upload(path)
    assert resp.status_code == 422, resp.text
    error = problem(resp)
    assert error["code"] == code, error
    for name in names:
        assert name in error["message"], (name, error["message"])
    assert "blobs" not in error["message"]  # no internal path
    # The invalid record is kept for the client to see; its files stay inside its own folder.
    dataset = error["details"]["dataset"]
    blobs = Path(service_env["DLCPRUNE_BLOB_URL"])
    for file in (blobs / "datasets" / dataset["id"]).rglob("*"):
        assert file.name.startswith("data.") or file.name == "index.npz"
    assert not list(blobs.rglob("escape.png")) and not list(Path("/etc/cron.d").glob("x.png"))


def test_uploads_over_the_limit_answer_413_while_streaming(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    path.write_bytes(b"\0" * 2_500_000)

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must be enforced on the bytes as they arrive.
        boundary = b"xyz"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        yield b'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n'
        data = path.read_bytes()
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]
        yield b"\r\n--" + boundary + b"--\r\n"

    resp = api.post(
        "/v1/datasets",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert resp.status_code == 413 and problem(resp)["code"] == "payload_too_large"


def test_keys_never_reach_logs_or_bodies(
    strict_app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key("leak-check")
    wrong = key[:-4] + "AAAA"
    caplog.set_level(logging.DEBUG)
    bodies = []
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": wrong},
        {"Authorization": f"Bearer {wrong}"},
        {"Authorization": f"Token {key}"},
    ):
        for url in ("/v1/datasets", "/v1/jobs/not-a-uuid", "/v1/nope"):
            bodies.append(strict_app.get(url, headers=headers).text)
    for text in [caplog.text, *bodies]:
        assert key not in text and wrong not in text
        assert key[-20:] not in text


def _openapi_calls(spec: dict) -> list[tuple[str, str]]:
    calls = []
    for path, item in spec["paths"].items():
        # Keys are the admin scope's (403 to other keys; their tenant isolation is in
        # tests/service/test_http_contract.py).
        if not path.startswith("/v1/") or "{" not in path or path.startswith("/v1/keys"):
            continue
        for method in item:
            calls.append((method.upper(), path))
    return calls


def test_every_route_hides_other_tenants(
    app_client,
    key_a: str,
    key_b: str,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import reset_settings
    from worker.runner import run_job

    a, b = Api(app_client, key_a), Api(app_client, key_b)
    # A webhook (on loopback, which this configuration lets through) and, with the upload
    # below, a delivery of it.
    monkeypatch.setenv("DLCPRUNE_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    reset_settings()
    hook = a.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["dataset.ready"]})
    monkeypatch.undo()
    reset_settings()
    archive = zip_of(tmp_path / "t.zip", GOOD)
    ds = a.upload(archive).json()
    (delivery,) = a.get(f"/v1/webhooks/{hook.json()['id']}/deliveries").json()["items"]
    job = a.post(
        "/v1/jobs", json={"dataset_id": ds["id"], "params": {"image_size": 16, "levels": 1}}
    ).json()
    run_job(job["id"])
    sel = a.post(f"/v1/jobs/{job['id']}/selections", json={"keep": 0.5}).json()
    evaluation = a.post(
        f"/v1/jobs/{job['id']}/evaluations",
        json={"strategies": ["flexrand"], "keep": [0.5], "seeds": 2},
    )
    assert evaluation.status_code == 202, evaluation.text
    target = Path(os.environ["DLCPRUNE_FILE_ROOTS"]) / f"tenants-{uuid.uuid4().hex[:8]}"
    export = a.post(
        f"/v1/selections/{sel['id']}/exports",
        json={"uri": f"{target.as_uri()}/", "format": "original"},
    )
    assert export.status_code == 202, export.text
    (tmp_path / "w.pth").write_bytes(b"weights")
    with open(tmp_path / "w.pth", "rb") as fh:
        weights = a.post("/v1/weights", files={"file": ("w.pth", fh)}).json()
    ids = {
        "dataset_id": ds["id"],
        "job_id": job["id"],
        "selection_id": sel["id"],
        "weights_id": weights["id"],
        "webhook_id": hook.json()["id"],
        "delivery_id": delivery["id"],
        "evaluation_id": evaluation.json()["id"],
        "export_id": export.json()["id"],
        "index": "0",
        "fmt": "png",
        "name": "histogram.png",
    }
    spec = app_client.get("/openapi.json").json()
    calls = _openapi_calls(spec)
    assert len(calls) >= 15
    # A body each POST validates, so that what answers is the tenant check.
    bodies = {
        "/evaluations": {"strategies": ["flexrand"], "keep": [0.5]},
        "/exports": {"uri": f"{target.as_uri()}-b/", "format": "original"},
    }
    for method, path in calls:
        url = re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)
        body = next((v for k, v in bodies.items() if path.endswith(k)), {"keep": 0.5})
        kw = {"json": body} if method == "POST" else {"params": {"keep": 0.5}}
        resp = b.request(method, url, **kw)
        assert resp.status_code == 404, (method, url, resp.status_code, resp.text[:200])
        assert problem(resp)["code"] == "not_found"
        # And the owner still sees it (except what needs a body we did not send; label issues
        # answer 202 while a worker computes them).
        if method == "GET":
            mine = a.get(url, params={"keep": 0.5})
            assert mine.status_code in (200, 202, 409, 422), (url, mine.text[:200])
    for url, key in (("/v1/datasets", "id"), ("/v1/jobs", "id"), ("/v1/webhooks", "id")):
        assert not {item[key] for item in b.get(url, params={"limit": 1000}).json()["items"]} & set(
            ids.values()
        )
    a.delete(f"/v1/webhooks/{ids['webhook_id']}")
