"""requirements.txt pins every package that installing it brings, at the version installed."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

from conftest import REPO


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)", line)
            assert match, f"requirements.txt: {line!r} is not pinned as name==version"
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def dependencies(name: str, extras: set[str]) -> list[Requirement]:
    """What the installed distribution ``name`` requires here (markers evaluated, extras included)."""
    wanted = []
    for text in metadata.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras | {""}):
            wanted.append(req)
    return wanted


def test_every_installed_dependency_is_pinned_at_its_installed_version():
    pins = pinned()
    seen: set[str] = set()
    todo = [(name, set()) for name in pins]
    while todo:
        name, extras = todo.pop()
        key = (canonical(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        assert canonical(name) in pins, f"{name} is installed as a dependency but not pinned in requirements.txt"
        installed = metadata.version(name)
        assert installed == pins[canonical(name)], (
            f"{name}: requirements.txt pins {pins[canonical(name)]}, {installed} is installed"
        )
        todo += [(req.name, set(req.extras)) for req in dependencies(name, extras)]
    unused = set(pins) - {name for name, _ in seen}
    assert not unused
