# syntax=docker/dockerfile:1
#
# dlcprune API image: the FastAPI service and its Alembic migrations, WITHOUT torch.
# Build from the repository root (docker-compose.yml does this):
#
#     docker build -f docker/api.Dockerfile -t dlcprune-api .
#
# Only the "server" extra is installed (never "worker"), and worker/ is not copied: scoring runs
# in the worker image, docker/worker.Dockerfile. The service needs app/ and the torch-free core
# (dlcprune/core); docs/architecture.md has the layers.

# ---------------------------------------------------------------------------------------------
# Build stage: a virtual environment with the project and its base dependencies.
# ---------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# app.db looks for Alembic's scripts at <source root>/migrations, next to the app package, and
# migrations/ is not part of the wheel. So the project is installed in editable mode from
# /opt/dlcprune, and the runtime stage copies that directory to the very same path (the editable
# finder in the venv records absolute paths).
WORKDIR /opt/dlcprune
COPY pyproject.toml README.md alembic.ini ./
COPY app/ ./app/
COPY dlcprune/ ./dlcprune/
COPY migrations/ ./migrations/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --editable ".[server]"

# ---------------------------------------------------------------------------------------------
# Runtime stage.
# ---------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    DLCPRUNE_DATA_DIR=/data

# libpq5: the PostgreSQL client library, which psycopg loads when installed without its
# "binary" extra. The service user owns /data, so a fresh named volume mounted there inherits that
# ownership (the worker image uses the same uid, and both share the volume).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dlcprune \
    && useradd --system --uid 10001 --gid dlcprune --create-home --home-dir /home/dlcprune \
        --shell /usr/sbin/nologin dlcprune \
    && install --directory --owner=10001 --group=10001 /data /data/blobs /data/cache

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/dlcprune /opt/dlcprune

WORKDIR /opt/dlcprune
USER 10001:10001

EXPOSE 8000

# /healthz: the process is up. (No curl in the slim image: the standard library does it; any
# error, HTTP errors included, makes python exit non-zero.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Migrates the database, then serves. Jobs run in the separate worker service.
CMD ["dlcprune", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-embedded-worker"]
