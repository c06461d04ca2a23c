"""requirements.txt, the lock, pins every package that installing it brings, at the version installed,
with the sha256 of its files; requirements.in's pins are the lock's."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

from conftest import REPO

PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(path) -> list[str]:
    """The requirement lines of ``path``, each joined with its continuation lines, comments removed."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def pinned(path=REPO / "requirements.txt", *, hashed: bool = True) -> dict[str, str]:
    pins = {}
    for entry in entries(path):
        requirement, *options = entry.split()
        match = PIN.fullmatch(requirement)
        assert match, f"{path.name}: {requirement!r} is not pinned as name==version"
        hashes = [o for o in options if re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o)]
        assert len(hashes) == len(options), f"{path.name}: {requirement}: unexpected options {options}"
        assert bool(hashes) == hashed, f"{path.name}: {requirement}: {'no' if hashed else 'a'} sha256 given"
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def test_requirements_in_pins_what_the_lock_pins():
    direct = pinned(REPO / "requirements.in", hashed=False)
    lock = pinned()
    assert direct and {name: lock.get(name) for name in direct} == direct


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
