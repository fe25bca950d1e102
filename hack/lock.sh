#!/usr/bin/env bash
# Regenerates the hash-pinned lock files the Dockerfile installs with `pip install --require-hashes --no-deps -r`:
#   locks/build.txt   logdistill's build backend ([build-system] requires): the wheel of the source is built with it
#   locks/edge.txt    the base dependencies: the edge image (logdistill classify)
#   locks/full.txt    base + the train, operator and demo extras: the full image (operator and distillation Job)
#   locks/tools.txt   the lock tool (uv, pinned in locks/tools.in), installed by hash into $LOCK_TOOLS
# Resolved from pyproject.toml for every platform (--universal) and the Python versions it allows, with the
# sha256 of every file (wheels and sdists) of each pinned version. Pins already in a lock file are kept unless
# pyproject.toml rules them out; UPGRADE=1 moves every pin to the newest allowed version.
# Usage: make lock   (or: bash hack/lock.sh)        tests/test_locks.py fails when a lock drifts from pyproject.toml.
# Env: LOCK_TOOLS (~/.cache/logdistill/lock-tools)  UPGRADE  PIP_INDEX_URL / PIP_CERT (passed on to uv).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCKS=$ROOT/locks
TOOLS=${LOCK_TOOLS:-$HOME/.cache/logdistill/lock-tools}
FULL_EXTRAS=(train operator demo)   # the Dockerfile's deps-full stage installs locks/full.txt: keep them in step

# The tool venv, refilled whenever locks/tools.txt changes (its stamp is that file's digest).
stamp=$(sha256sum "$LOCKS/tools.txt" | cut -c1-64)
if [[ $(cat "$TOOLS/.tools-stamp" 2>/dev/null) != "$stamp" ]]; then
  rm -rf "$TOOLS"
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$LOCKS/tools.txt"
  echo "$stamp" > "$TOOLS/.tools-stamp"
fi
# uv reads its own variables: take the index and CA bundle pip is configured with here.
[[ -n ${PIP_INDEX_URL:-} && -z ${UV_DEFAULT_INDEX:-} ]] && export UV_DEFAULT_INDEX=$PIP_INDEX_URL
[[ -n ${PIP_CERT:-} && -z ${SSL_CERT_FILE:-} ]] && export SSL_CERT_FILE=$PIP_CERT

compile() {  # compile OUTPUT INPUT [uv args...]
  local out=$1 in=$2; shift 2
  (cd "$ROOT" && "$TOOLS/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
     --custom-compile-command "make lock" ${UPGRADE:+--upgrade} -o "$out" "$in" "$@")
  echo "$out: $(grep -c '^[a-z0-9]' "$ROOT/$out") pins, $(grep -c -- '--hash=sha256:' "$ROOT/$out") hashes"
}

python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
  "$ROOT/pyproject.toml" | compile locks/build.txt -   # (stdin)
compile locks/edge.txt pyproject.toml
compile locks/full.txt pyproject.toml "${FULL_EXTRAS[@]/#/--extra=}"
compile locks/tools.txt locks/tools.in
