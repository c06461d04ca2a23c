"""Every ``speakdigits.…`` and ``stages.…`` name that the code's docstrings, the README and docs/ mention exists:
a renamed module leaves no stale pointer behind (``stages.download --help`` once named ``speakdigits.raw``)."""

from __future__ import annotations

import importlib
import re

import pytest

from conftest import REPO

DOTTED = re.compile(r"(?<![\w./-])(?:speakdigits|stages)(?:\.[A-Za-z_]\w*)+")


def mentioned() -> dict[str, str]:
    """Each dotted name, with the first file that mentions it."""
    files = [*sorted((REPO / "speakdigits").rglob("*.py")), *sorted((REPO / "stages").glob("*.py"))]
    files += [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    names: dict[str, str] = {}
    for path in files:
        for name in DOTTED.findall(path.read_text(encoding="utf-8")):
            names.setdefault(name.rstrip("."), str(path.relative_to(REPO)))
    return names


def resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


NAMES = mentioned()


def test_the_scan_finds_the_names_it_should():
    assert "speakdigits.formats.raw" in NAMES and "stages.generate" in NAMES


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_mentioned_module_or_function_exists(name):
    assert resolves(name), f"{NAMES[name]} mentions {name}, which does not exist"
