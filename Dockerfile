# The inference service on CPU. `launcher build` builds it (tag: a hash of the build inputs);
# plain `docker build -t svc .` works too. Offline, from ./wheelhouse:
#   docker build --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheelhouse -t svc .
ARG BASE_IMAGE=python:3.11-slim

# --- build: the locked dependencies in a venv, then the code ---------------------------------
FROM ${BASE_IMAGE} AS build
# Unset (online) by default; `launcher build --wheelhouse` passes 1 and /wheelhouse.
ARG PIP_NO_INDEX
ARG PIP_FIND_LINKS
# The CPU wheel index: torch==2.13.0 in the lock resolves to +cpu, never a CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
# This layer is keyed only on the lock and the wheelhouse: editing service/ reuses it.
COPY requirements.lock /tmp/requirements.lock
COPY wheelhouse/ /wheelhouse/
# torch's C++ headers and test binaries (~145 MB) serve extension builds, not inference.
RUN /opt/venv/bin/pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" \
        -r /tmp/requirements.lock \
    && rm -rf /opt/venv/lib/python3*/site-packages/torch/include \
        /opt/venv/lib/python3*/site-packages/torch/test
COPY service/ /app/service/
# Bytecode now, because the running container's root file system is read-only.
RUN /opt/venv/bin/python -m compileall -q /app/service

# --- runtime: the venv and the code on a clean base, as a non-root user ----------------------
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HOST=0.0.0.0 \
    PORT=8000
WORKDIR /app
# Owned by the service user: a fresh named volume takes this ownership, so /data is writable.
RUN mkdir -p /models /data && chown 10001:10001 /models /data
VOLUME ["/models", "/data"]
USER 10001:10001
EXPOSE 8000
# Labels last: they name the base image, so another base must not bust the layers above.
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="gpu-launcher service (CPU)" \
      org.opencontainers.image.description="FastAPI + PyTorch inference service with dynamic batching" \
      org.opencontainers.image.source="https://github.com/gpu-launcher/gpu-launcher" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Python's urllib, so the image needs no curl; /readyz answers 200 only once the model is loaded.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=4)"]
# dumb-init as PID 1 forwards SIGTERM to the server and reaps zombies.
ENTRYPOINT ["/opt/venv/bin/dumb-init", "--"]
CMD ["python", "-m", "service"]
