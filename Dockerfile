# syntax=docker/dockerfile:1
# One image for every tgfleet role: `api` (the default), `worker`, `run`, `sandbox run`,
# `db upgrade` and any other CLI command (docs/deploy.md, "The container image").
#
#   docker build -t tgfleet .
#   podman build --format docker --build-arg BASE_IMAGE=localhost/tgfleet-base:bookworm -t tgfleet .
#
# BASE_IMAGE is any Debian bookworm image with Python 3.11+: the official slim image, or the
# debootstrap one deploy/image/base-image.sh makes where no registry can be reached (Debian's
# /usr/bin/python3 with python3-venv). Both stages must use the same base: the venv links to
# its interpreter.
ARG BASE_IMAGE=python:3.11-slim-bookworm
# checkov:skip=CKV_DOCKER_7: FROM ${BASE_IMAGE}: the default is a fixed tag (3.11-slim-bookworm); checkov cannot read it through the ARG

# ------------------------------------------------------------------------ requirements
# The runtime dependencies, read from pyproject.toml: the layer that installs them is keyed
# on this list, so an edit elsewhere in pyproject.toml does not recompile them (PyICU).
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' >/requirements.txt

# ---------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# PyICU compiles against ICU: g++, libicu-dev, pkg-config; Debian's python3 also needs its
# headers (python3-dev), which the official image ships. Versions follow the base's release.
# hadolint ignore=DL3008
RUN set -- g++ libicu-dev pkg-config \
    && { python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
        || set -- "$@" python3-dev; } \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The dependencies first: a change to the code reuses this layer. pip's cache is a cache
# mount (built wheels such as PyICU's survive a dependency change; it is in no layer).
# A build behind a TLS-intercepting proxy passes its CA bundle as the optional secret
# `ca_bundle` (`--secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt`).
WORKDIR /src
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && python3 -m venv /opt/tgfleet \
    && /opt/tgfleet/bin/pip install --requirement /tmp/requirements.txt

COPY pyproject.toml ./
COPY README.md ./
COPY examples ./examples
COPY src ./src
# The wheel (hatchling), installed without dependencies (they are in); then pip and
# setuptools leave the venv and everything is byte-compiled once, unchecked (the sources
# never change and the root file system is read-only at run time).
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && /opt/tgfleet/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && /opt/tgfleet/bin/pip install --no-cache-dir --no-deps /tmp/wheels/tgfleet-*.whl \
    && /opt/tgfleet/bin/pip uninstall --yes pip setuptools \
    && find /opt/tgfleet -name '__pycache__' -type d -prune -exec rm -rf {} + \
    && /opt/tgfleet/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/tgfleet \
    && /opt/tgfleet/bin/tgfleet version

# ---------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# tini is PID 1: it forwards SIGTERM to tgfleet (a worker drains its accounts) and reaps.
# libicu72 is PyICU's run-time library. No compiler, no headers, no apt lists.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini libicu72 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
    && groupadd --system --gid 10001 tgfleet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tgfleet \
    && install -d -o 10001 -g 10001 -m 0700 /data

COPY --from=builder /opt/tgfleet /opt/tgfleet

# Writes go to /data (a volume) and /tmp only: nothing writes bytecode at run time.
ENV PATH=/opt/tgfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    TGFLEET_DATA_DIR=/data \
    TGFLEET_HOST=0.0.0.0 \
    TGFLEET_PORT=8000
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8000

# /livez of the API (TGFLEET_PORT), else of a worker's metrics port
# (TGFLEET_WORKER_METRICS_PORT): one check for both roles. No curl in the image: urllib.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request\nfor name, default in (('TGFLEET_PORT', '8000'), ('TGFLEET_WORKER_METRICS_PORT', '9464')):\n    try:\n        urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get(name, default), timeout=2).close()\n    except OSError:\n        continue\n    raise SystemExit(0)\nraise SystemExit(1)"]

ENTRYPOINT ["tini", "--", "tgfleet"]
CMD ["api"]

# Labels last: a new revision changes no layer above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/tgfleet/tgfleet
ARG CREATED=""
# A no-op whose cache key holds the args' values: buildah (podman 4.x) keys a cached LABEL
# layer on its text before expansion and would reuse the last build's labels.
RUN true
LABEL org.opencontainers.image.title="tgfleet" \
      org.opencontainers.image.description="Self-hosted control plane for fleets of Telegram user accounts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
