"""The S3 side of the object-store tests (test_object_stores.py, test_store_exports.py): a
moto server on loopback as a fixture (``s3``, with ``bucket``; registered in
tests/service/conftest.py), and the helpers that put images there and register, score and export
them through the API."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import Api, finish, free_port
from tests.service.data import image_members

FAST = {"image_size": 32, "levels": 2}


@pytest.fixture(scope="module")
def s3(service_env: dict[str, str]) -> Iterator[object]:
    """A moto S3 server on 127.0.0.1, the service's environment pointed at it (s3 enabled,
    credentials in the standard AWS variables); yields an s3fs file system on it."""
    from moto.server import ThreadedMotoServer

    from app import storage
    from app.config import reset_settings

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "DLCPRUNE_REFERENCE_SCHEMES": "s3",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    storage._stores.clear()
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], use_listings_cache=False)
    try:
        yield fs
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
        storage._stores.clear()
        server.stop()


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"b-{uuid.uuid4().hex[:10]}"
    s3.mkdir(name)
    return name


def put_images(fs, prefix: str, per_class: int = 8) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    members = image_members(per_class)
    for rel, data in members.items():
        fs.pipe_file(f"{prefix}/{rel}", data)
    return members


def refer(api: Api, uri: str, **options: object):  # type: ignore[no-untyped-def]
    return api.post("/v1/dataset-references", json={"uri": uri, **options})


def score(api: Api, dataset: dict) -> dict:
    job = api.post("/v1/jobs", json={"dataset_id": dataset["id"], "params": FAST})
    assert job.status_code == 202, job.text
    assert finish(job.json()) == "succeeded"
    return api.get(f"/v1/jobs/{job.json()['id']}").json()


def wds_tar(members: dict[str, bytes], *, cls: dict[str, int]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            key = name.rsplit(".", 1)[0].replace("/", "_")
            for member, payload in ((f"{key}.png", data), (f"{key}.cls", str(cls[name]).encode())):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def export(api: Api, selection: str, uri: str, fmt: str) -> dict:
    """A store export of ``selection`` run to its end by the worker's task function."""
    from worker.runner import run_export

    resp = api.post(f"/v1/selections/{selection}/exports", json={"uri": uri, "format": fmt})
    assert resp.status_code == 202, resp.text
    assert resp.headers["Location"].endswith(f"/v1/exports/{resp.json()['id']}")
    assert run_export(resp.json()["id"]) == "succeeded"
    return api.get(f"/v1/exports/{resp.json()['id']}").json()
