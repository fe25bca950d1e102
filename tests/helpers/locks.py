"""The lock files the images install (locks/*.txt, written by `make lock`), read back: their pins, digests and
the requirements each one must satisfy (its install set, from pyproject.toml and hack/lock.sh)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
LOCKS = ROOT / "locks"
PYPROJECT = "logdistill (pyproject.toml)"  # how uv names pyproject.toml as the reason for a pin


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: tuple[str, ...]
    via: tuple[str, ...]
    line: int

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def version(self) -> str | None:
        """The exact version (``==X``), or None when the entry pins nothing."""
        (spec,) = self.requirement.specifier or [None]
        return spec.version if spec is not None and spec.operator == "==" else None


def parse_lock(text: str) -> list[Pin]:
    """A pip requirements file as uv writes it: ``name==v ; marker \\``, ``--hash=`` lines, ``# via`` notes."""
    entries: list[dict] = []
    in_via = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().removesuffix("\\").strip()
        if not raw.startswith((" ", "#")) and line:
            entries.append({"req": Requirement(line), "hashes": [], "via": [], "line": number})
            in_via = False
        elif not entries:
            continue
        elif line.startswith("--hash="):
            entries[-1]["hashes"].append(line.removeprefix("--hash="))
        elif line.startswith("# via"):
            in_via = True
            if line.removeprefix("# via").strip():
                entries[-1]["via"].append(line.removeprefix("# via").strip())
        elif in_via and line.startswith("#   "):
            entries[-1]["via"].append(line.removeprefix("#").strip())
    return [Pin(e["req"], tuple(e["hashes"]), tuple(e["via"]), e["line"]) for e in entries]


def read_lock(name: str) -> list[Pin]:
    return parse_lock((LOCKS / name).read_text())


def full_extras() -> list[str]:
    """The extras of the full image's lock: hack/lock.sh's FULL_EXTRAS."""
    match = re.search(r"^FULL_EXTRAS=\(([^)]*)\)", (ROOT / "hack" / "lock.sh").read_text(), re.M)
    assert match, "hack/lock.sh defines no FULL_EXTRAS=(...)"
    return match.group(1).split()


def install_sets() -> dict[str, list[Requirement]]:
    """Lock file -> the requirements it is generated from (what `make lock` feeds uv for it)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    base = project["dependencies"]
    full = base + [r for extra in full_extras() for r in project["optional-dependencies"][extra]]
    tools = [line for line in (LOCKS / "tools.in").read_text().splitlines() if line and not line.startswith("#")]
    sets = {"build.txt": pyproject["build-system"]["requires"], "edge.txt": base, "full.txt": full,
            "tools.txt": tools}
    return {lock: [Requirement(r) for r in reqs] for lock, reqs in sets.items()}


def drift(requirements: list[Requirement], pins: list[Pin], *, direct_from_pyproject: bool) -> list[str]:
    """What keeps ``pins`` from being the lock of ``requirements``: a requirement with no pin or a pin outside
    its specifier; with ``direct_from_pyproject``, also a pin uv took from pyproject.toml that it no longer asks for."""
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    problems = []
    for req in requirements:
        found = by_name.get(canonicalize_name(req.name), [])
        if not found:
            problems.append(f"{req} has no pin")
        for pin in found:
            if pin.version is None or not req.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{req} is pinned to {pin.requirement} (line {pin.line})")
    if direct_from_pyproject:
        wanted = {canonicalize_name(req.name) for req in requirements}
        problems += [f"{pin.requirement} (line {pin.line}) is pinned for pyproject.toml, which no longer asks for it"
                     for pin in pins if PYPROJECT in pin.via and pin.name not in wanted]
    return problems
