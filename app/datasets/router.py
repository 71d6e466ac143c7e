"""HTTP routes for datasets: register (upload or reference), list, read, delete, and read one
sample (its snippet or thumbnail; :mod:`app.datasets.samples`)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import errors
from app.blobstore import BlobStore
from app.config import Settings
from app.datasets import repository, samples, service
from app.datasets.schemas import (
    EXTERNAL_ID_MAX,
    NAME_MAX,
    DatasetList,
    DatasetOptions,
    DatasetRead,
    DatasetReference,
)
from app.deps import BlobDep, SessionDep, SettingsDep, TenantDep
from app.errors import APIError, problem_response
from app.http import ACCEPTED_HEADERS, CONDITIONAL_RESPONSES, accepted, conditional_json
from app.idempotency import REPLAY_HEADERS, REPLAYED_HEADER, IdempotencyKeyDep
from app.pagination import CursorQuery, ExternalIdQuery, TagQuery
from app.uploads import receive_file

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

ERRORS = {
    400: {"description": "malformed body"},
    401: {"description": "missing or invalid API key"},
    404: {"description": "no such dataset for this tenant"},
    413: {"description": "upload over the size limit"},
    415: {"description": "neither multipart/form-data nor JSON"},
    422: {"description": "unsupported format or reference"},
}

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "name": {"type": "string", "maxLength": NAME_MAX},
                    "tags": {
                        "type": "string",
                        "description": "a JSON list of strings, or the tags comma-separated",
                    },
                    "external_id": {"type": "string", "maxLength": EXTERNAL_ID_MAX},
                    "format": {
                        **DatasetOptions.model_json_schema()["properties"]["format"]["anyOf"][0],
                        "description": "read the file as this format instead of detecting it",
                    },
                    "columns": {
                        "type": "string",
                        "description": "a JSON object: which column holds each role "
                        '(\'{"image": "img", "label": "y"}\'); roles as in the JSON reference',
                    },
                },
                "required": ["file"],
            },
            "examples": {
                "upload": {"summary": "an image archive", "value": {"file": "digits.zip"}},
                "columns": {
                    "summary": "a Parquet table whose columns have other names",
                    "value": {"file": "pets.parquet", "columns": '{"image": "img", "label": "y"}'},
                },
            },
        },
    },
}


def base_url(request: Request, settings: SettingsDep) -> str:
    return (settings.public_url or str(request.base_url)).rstrip("/")


def validation_error(exc: ValidationError) -> APIError:
    """A 422 naming each field that failed (``columns.image: ...``; ``details.errors``), or a
    400 for a body that is not JSON."""
    return errors.validation_error(exc.errors())


def upload_options(fields: dict[str, str]) -> DatasetOptions:
    """An upload's ``format`` and ``columns`` form fields (``columns`` a JSON object string),
    validated as the JSON reference's fields are; empty fields count as not given."""
    raw: dict[str, object] = {}
    for name in ("name", "format", "external_id"):
        if fields.get(name, "").strip():
            raw[name] = fields[name].strip()
    if fields.get("tags", "").strip():
        text = fields["tags"].strip()
        try:
            raw["tags"] = json.loads(text) if text.startswith("[") else text.split(",")
        except ValueError as exc:
            raise APIError(
                422, "validation_error", f"tags: not valid JSON ({exc.msg}); send a list"
            ) from exc
    if fields.get("columns", "").strip():
        try:
            raw["columns"] = json.loads(fields["columns"])
        except ValueError as exc:
            raise APIError(
                422, "validation_error", f"columns: not valid JSON ({exc.msg}); send an object"
            ) from exc
    try:
        return DatasetOptions.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc) from exc


_CREATED_RESPONSES: dict[int | str, dict] = {
    202: {
        "model": DatasetRead,
        "description": "accepted; indexing",
        "headers": {**ACCEPTED_HEADERS, **REPLAY_HEADERS},
    },
    **ERRORS,
    409: {"description": "Idempotency-Key reused with another request, or still running"},
    422: {
        "description": "unsupported format or reference, or the data is invalid (the error "
        "names the file and the line or member; details.dataset is the record as it was read: "
        "a refused registration keeps no dataset)"
    },
}


def _answer(request: Request, settings: Settings, made: service.Created) -> Response:
    read = service.to_read(made.dataset, base_url(request, settings))
    body = read.model_dump(mode="json")
    if read.error is not None:
        # Validated while the client waited, and refused: a 4xx naming the file and the line or
        # member. Nothing is kept (no row, no bytes): details.dataset shows what was read.
        return problem_response(
            request, 422, read.error.code, read.error.message, {"dataset": body}
        )
    headers = {"Location": read.url}
    if made.replayed:
        headers[REPLAYED_HEADER] = "true"
    if made.queued:
        return accepted(body, read.url, settings, headers)
    return JSONResponse(body, status_code=200 if made.existing else 201, headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=DatasetRead,
    responses={
        **_CREATED_RESPONSES,
        200: {
            "model": DatasetRead,
            "description": "the tenant already has a dataset with these bytes (and the same "
            "format and columns): that dataset (copy=true makes a new one)",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        201: {"headers": {"Location": {"schema": {"type": "string"}}, **REPLAY_HEADERS}},
    },
    openapi_extra={"requestBody": _UPLOAD_BODY},
    summary="Upload a dataset file (multipart)",
)
async def create_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
    copy: Annotated[
        bool,
        Query(
            description="register a new dataset even when the tenant already has one with the "
            "same bytes (by default that one is answered, 200)"
        ),
    ] = False,
) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        # The JSON reference was first sent here; POST /v1/datasets/references is its own
        # operation now, and this path keeps taking it.
        raw = await request.body()
        try:
            reference = DatasetReference.model_validate_json(raw)
        except ValidationError as exc:
            raise validation_error(exc) from exc
        return await _refer(request, session, settings, blobs, tenant, idempotency_key, reference)
    dataset_id = uuid.uuid4()
    received = await receive_file(
        request,
        blobs=blobs,
        key_for=lambda filename: service.upload_key(dataset_id, filename),
        max_bytes=settings.max_upload_bytes,
    )
    try:
        options = upload_options(received.fields)
        made = await run_in_threadpool(
            service.register_upload,
            session,
            settings,
            blobs,
            tenant,
            dataset_id,
            received,
            options,
            idempotency_key=idempotency_key,
            copy=copy,
        )
    except BaseException:
        blobs.delete_prefix(f"datasets/{dataset_id}")
        raise
    if made.dataset.id != dataset_id:  # an existing dataset answered: these bytes are not needed
        blobs.delete_prefix(f"datasets/{dataset_id}")
    return _answer(request, settings, made)


@router.post(
    "/references",
    status_code=201,
    response_model=DatasetRead,
    responses={
        **_CREATED_RESPONSES,
        201: {"headers": {"Location": {"schema": {"type": "string"}}, **REPLAY_HEADERS}},
    },
    summary="Register data the service can already read (a file:// path or a storage URL)",
)
async def create_reference(
    body: DatasetReference,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKeyDep,
) -> Response:
    return await _refer(request, session, settings, blobs, tenant, idempotency_key, body)


async def _refer(
    request: Request,
    session: Session,
    settings: Settings,
    blobs: BlobStore,
    tenant: uuid.UUID,
    idempotency_key: str | None,
    body: DatasetReference,
) -> Response:
    made = await run_in_threadpool(
        service.register_reference,
        session,
        settings,
        blobs,
        tenant,
        body,
        idempotency_key=idempotency_key,
    )
    return _answer(request, settings, made)


@router.get("", response_model=DatasetList, responses=ERRORS, summary="List datasets")
def list_datasets(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
    status: Annotated[str | None, Query(pattern="^(indexing|ready|invalid)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    cursor: CursorQuery = None,
    tag: TagQuery = None,
    external_id: ExternalIdQuery = None,
) -> DatasetList:
    rows, total, next_cursor = repository.list_page(
        session,
        tenant,
        status=status,
        limit=limit,
        offset=offset,
        cursor=cursor,
        tags=tag,
        external_id=external_id,
    )
    url = base_url(request, settings)
    return DatasetList(
        items=[service.to_read(d, url) for d in rows],
        total=total,
        limit=limit,
        offset=offset,
        next_cursor=next_cursor,
    )


@router.get(
    "/{dataset_id}",
    response_model=DatasetRead,
    responses={**ERRORS, **CONDITIONAL_RESPONSES},
    summary="A dataset (ETag; 304 to a matching If-None-Match)",
)
def get_dataset(
    dataset_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> Response:
    read = service.to_read(service.get(session, tenant, dataset_id), base_url(request, settings))
    return conditional_json(request, read.model_dump(mode="json"))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a dataset with its jobs, scores and selections",
)
def delete_dataset(
    dataset_id: uuid.UUID, session: SessionDep, blobs: BlobDep, tenant: TenantDep
) -> Response:
    service.delete(session, blobs, tenant, dataset_id)
    return Response(status_code=204)


@router.get(
    "/{dataset_id}/samples/{index}",
    response_model=samples.SampleRead,
    responses=samples.ERRORS,
    summary="One sample: id, label, and a text snippet (text) or a thumbnail URL (images)",
)
def get_sample(
    dataset_id: uuid.UUID,
    index: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> samples.SampleRead:
    dataset, idx = samples.ready_dataset(session, blobs, tenant, dataset_id, index)
    return samples.sample(dataset, idx, index, base_url(request, settings), settings, blobs)


@router.get(
    "/{dataset_id}/samples/{index}/thumbnail",
    responses={
        **samples.ERRORS,
        200: {"content": {"image/png": {}}, "description": "PNG, at most 96 px a side"},
    },
    response_class=Response,
    summary=f"A PNG thumbnail (at most {samples.THUMBNAIL_PX} px) of an image sample",
)
def get_thumbnail(
    dataset_id: uuid.UUID,
    index: int,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobDep,
    tenant: TenantDep,
) -> Response:
    dataset, _ = samples.ready_dataset(session, blobs, tenant, dataset_id, index)
    return Response(
        content=samples.thumbnail(dataset, index, settings, blobs),
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )
