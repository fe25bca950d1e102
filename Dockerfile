# syntax=docker/dockerfile:1
# logdistill images, two targets from one file:
#   docker build --target full -t ghcr.io/logdistill/logdistill:0.1.0 .       # operator + distillation Job (torch)
#   docker build --target edge -t ghcr.io/logdistill/logdistill-edge:0.1.0 .  # classifier DaemonSet (no torch)
# Both run as the non-root user 10001 with the `logdistill` console script as entrypoint, and work with a
# read-only root filesystem (write only to mounted volumes and /tmp).
# tests/test_chart_images.py checks what this file runs: the targets, the install lines, and that the
# edge install (the base dependencies only) serves `logdistill classify` without torch.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: one virtual environment per target, at the path it keeps in the final image ------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ src/
COPY model/ model/
COPY edge/ edge/
COPY operator/ operator/

FROM source AS build-edge
# The base install: ONNX Runtime, tokenizers, prometheus-client, kopf/kubernetes. No extras, so no torch.
RUN python -m venv /opt/logdistill \
 && /opt/logdistill/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/logdistill/bin/pip install --no-cache-dir /src \
 && ! /opt/logdistill/bin/python -c "import torch" 2>/dev/null

FROM source AS build-full
# The train extra pins torch==2.13.0 (PyPI's wheel, which runs on CPU). To take the CPU-only wheel of
# the same version instead: --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_EXTRA_INDEX_URL=""
RUN python -m venv /opt/logdistill \
 && /opt/logdistill/bin/pip install --no-cache-dir --upgrade pip \
 && PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL}" /opt/logdistill/bin/pip install --no-cache-dir "/src[train]"

# ---- runtime: shared settings ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 logdistill \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin logdistill
ENV PATH=/opt/logdistill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1
WORKDIR /tmp
LABEL org.opencontainers.image.source="https://github.com/logdistill/logdistill" \
      org.opencontainers.image.licenses="Apache-2.0"

# ---- edge: the classifier DaemonSet (logdistill classify) -------------------------------------------------
FROM runtime AS edge
COPY --from=build-edge /opt/logdistill /opt/logdistill
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["logdistill"]
CMD ["classify", "--help"]

# ---- full: the operator and the distillation Job (logdistill operator / distill) --------------------------
FROM runtime AS full
COPY --from=build-full /opt/logdistill /opt/logdistill
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["logdistill"]
CMD ["operator"]
