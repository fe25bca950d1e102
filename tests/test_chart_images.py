"""The Dockerfile's two targets, tested through what they run (no Docker engine here): the stages, the
install lines, the non-root user and entrypoint, and that the edge image's install, the base dependencies
only, serves ``logdistill classify`` with no torch: a subprocess in which every package outside the base
dependency closure is unimportable runs the CLI and classifies real lines with a real ONNX artifact."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from chart_helpers import ROOT
from helpers.locks import full_extras, read_lock
from helpers.onnx_artifacts import build_onnx_artifact

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = " ".join(line.split())  # continuation lines leave runs of blanks
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if match:
            current = match.group(1)
            out[current] = [line]
        elif current:
            out[current].append(line)
    return out


def test_two_runtime_targets_non_root_with_the_logdistill_entrypoint():
    s = stages()
    for target in ("edge", "full"):
        body = s[target]
        assert 'ENTRYPOINT ["logdistill"]' in body, target
        users = [line.split()[1] for line in body if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] == "10001", f"{target} must run as a numeric non-root user"
        assert any(line.startswith("COPY --from=build-" + target) for line in body)
    assert s["runtime"][0].startswith("FROM ${PYTHON_IMAGE}")
    # The operator Deployment's command is the full image's entrypoint; its pod UID matches the image's user.
    deployment = (ROOT / "charts" / "logdistill" / "templates" / "deployment.yaml").read_text()
    assert 'command: ["logdistill", "operator"]' in deployment and "runAsUser: 10001" in deployment


INSTALL = "/opt/installer/bin/pip --python /opt/logdistill/bin/python install --no-cache-dir"
LOCKED = "--require-hashes --no-deps -r"


def test_every_install_is_hash_checked_from_a_lock_in_a_layer_of_its_own():
    s = stages()
    # The installer's build backend, the edge's base and the full image's dependencies: each from its lock
    # file (tests/test_locks.py), copied alone before any source so that its layer stays cached.
    for stage, lock, pip in (("source", "build.txt", "/opt/installer/bin/pip install --no-cache-dir"),
                             ("build-edge", "edge.txt", INSTALL), ("deps-full", "full.txt", INSTALL)):
        body = s[stage]
        copy = f"COPY locks/{lock} /locks/{lock}"
        assert copy in body, stage
        copies = [line for line in body if line.startswith("COPY ")]
        assert copies[0] == copy, f"{stage}: the lock file must be the first thing copied: {copies}"
        assert re.search(re.escape(f"{pip} {LOCKED} /locks/{lock}") + r"(\s|$)", " ".join(body)), stage
    # The own source: built into a wheel with the locked backend (no isolated build downloading setuptools),
    # then installed without dependencies. No other pip install or upgrade anywhere.
    wheel = "/opt/installer/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /tmp/dist /src"
    own = f"{INSTALL} --no-deps /tmp/dist/logdistill-*.whl"
    for stage in ("build-edge", "build-full"):
        run = " ".join(s[stage])
        assert wheel in run and own in run, stage
        assert run.index("COPY src/") < run.index(wheel) < run.index(own), stage
    text = "\n".join(line for body in s.values() for line in body)  # (comments dropped)
    installs = [m.group(0).strip() for m in re.finditer(r"pip (?:--python \S+ )?install [^&\n]*", text)]
    assert len(installs) == 5, installs
    assert all(LOCKED in i or i.endswith("--no-deps /tmp/dist/logdistill-*.whl") for i in installs), installs
    assert "--upgrade" not in text and "PIP_EXTRA_INDEX_URL" not in text and "requirements.txt" not in text


def test_edge_installs_the_base_only_and_full_the_train_operator_and_demo_extras():
    # The extras live in hack/lock.sh (FULL_EXTRAS -> locks/full.txt); tests/test_locks.py checks the locks.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(full_extras()) == {"train", "operator", "demo"} and set(full_extras()) <= set(extras)
    assert any(req.startswith("kopf") for req in extras["operator"])
    assert any(req.startswith("kubernetes") for req in extras["operator"])
    edge = {pin.name for pin in read_lock("edge.txt")}
    assert edge_unused() <= edge, edge_unused() - edge  # what the edge build removes again is what it installed
    make_extras = re.search(r"^EXTRAS \?= (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1).split(",")
    assert {"train", "operator", "demo", "test", "dashboards"} <= set(make_extras)  # `make test` needs them all


def test_build_steps_never_run_in_the_source_directory_and_final_venvs_have_no_pip():
    s = stages()
    for stage in ("source", "build-edge", "deps-full", "build-full"):
        body = s[stage]  # (a stage inherits the WORKDIR of the stage it starts from)
        # /src/operator would shadow the standard library's `operator` for any python run from /src.
        assert all(line.split()[1] == "/" for line in body if line.startswith("WORKDIR ")), body
        assert not any("cd /src" in line for line in body)
    assert "WORKDIR /" in s["source"]
    for stage in ("build-edge", "deps-full"):
        run = " ".join(line for line in s[stage] if line.startswith("RUN "))
        assert "python -m venv --without-pip /opt/logdistill" in run, stage
        assert "--upgrade pip" not in run and "/opt/logdistill/bin/pip" not in run, stage
    assert '! /opt/logdistill/bin/python -c "import pip"' in " ".join(s["build-edge"])
    # Every package folder the install needs is copied into the build context.
    for stage in ("build-edge", "build-full"):
        copied = {src.rstrip("/") for line in s[stage] if line.startswith("COPY ") for src in line.split()[1:-1]}
        assert {"src", "model", "edge", "operator", "README.md", "pyproject.toml"} <= copied, stage
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not {"src", "model", "edge", "operator", "pyproject.toml", "README.md"} & set(ignored)


def base_closure() -> set[str]:
    """Normalised names of every distribution ``pip install .`` (no extras) brings in, from the metadata
    of the installed project and its dependencies."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[str] = set()
    todo = ["logdistill"]
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def edge_unused() -> set[str]:
    """Distributions the edge build removes again after the base install (its EDGE_UNUSED build arg)."""
    (line,) = [line for line in stages()["build-edge"] if line.startswith("ARG EDGE_UNUSED=")]
    return {re.sub(r"[-_.]+", "-", name).lower() for name in line.split("=", 1)[1].strip('"').split()}


def edge_install() -> set[str]:
    """What the edge image's venv holds: the base closure less what the build removes again."""
    return base_closure() - edge_unused()


def test_base_dependencies_exclude_torch_and_the_operator():
    closure = base_closure()
    assert {"onnxruntime", "tokenizers", "prometheus-client", "numpy"} <= closure
    assert not {"torch", "transformers", "safetensors", "onnx", "scikit-learn"} & closure, closure
    assert not {"kopf", "kubernetes", "aiohttp", "pydantic"} & closure, closure
    # The removed packages are really outside what the edge needs directly.
    assert "huggingface-hub" in edge_unused() and not edge_unused() & {"onnxruntime", "tokenizers", "numpy",
                                                                       "prometheus-client", "logdistill"}


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, json, sys
    ALLOWED_DISTS = set(json.loads(sys.argv.pop(1)))
    OWNERS = json.loads(sys.argv.pop(1))  # top-level module -> distributions providing it

    class NotInEdgeImage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            dists = OWNERS.get(top)
            if dists and not set(dists) & ALLOWED_DISTS:
                raise ModuleNotFoundError(f"{name} is not installed in the edge image", name=name)
            return None

    sys.meta_path.insert(0, NotInEdgeImage())
    """
)


def _edge_python(code: str, *args: str) -> subprocess.CompletedProcess:
    owners = {
        top: sorted({re.sub(r"[-_.]+", "-", d).lower() for d in dists})
        for top, dists in metadata.packages_distributions().items()
    }
    script = BLOCKER + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-P", "-c", script, json.dumps(sorted(edge_install())), json.dumps(owners), *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT.parent,
    )


def test_blocker_really_blocks_packages_outside_the_edge_install():
    proc = _edge_python("import torch")
    assert proc.returncode != 0 and "torch is not installed in the edge image" in proc.stderr
    proc = _edge_python("import huggingface_hub")  # removed again by the edge build
    assert proc.returncode != 0 and "huggingface_hub is not installed in the edge image" in proc.stderr


def test_operator_without_its_extra_fails_with_a_clear_message():
    code = """
    import sys
    from logdistill.cli import main
    sys.exit(main(["operator", "--standalone"]))
    """
    proc = _edge_python(code)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "logdistill operator: this install lacks the 'operator' extra" in proc.stderr
    assert "pip install 'logdistill[operator]'" in proc.stderr and "Traceback" not in proc.stderr


def test_edge_install_runs_classify_help_and_classifies_without_torch(tmp_path):
    model = tmp_path / "model"
    build_onnx_artifact(model, ["-", "ERROR", "FATAL"], {"error": "ERROR", "fatal": "FATAL"})
    lines = [line for line in (ROOT / "model/data/BGL_2k.log").read_text().splitlines()[:200]]
    (tmp_path / "lines.json").write_text(json.dumps(lines))
    code = """
    import contextlib, io, json, sys
    from pathlib import Path
    from logdistill.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["classify", "--help"])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
    assert "--model" in out.getvalue() and "--paths" in out.getvalue()
    from logdistill.edge.main import load_classifier
    classifier = load_classifier(Path(sys.argv[1]), threads=1, cache_size=100, batch_size=32, max_line_chars=4096)
    lines = json.loads(Path(sys.argv[2]).read_text())
    results = classifier.classify(lines)
    print(json.dumps({"n": len(results), "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
    """
    proc = _edge_python(code, str(model), str(tmp_path / "lines.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"n": 200, "torch": False, "transformers": False}
