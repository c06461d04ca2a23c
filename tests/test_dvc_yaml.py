"""dvc.yaml lists exactly the code each stage runs and only params that exist.

For every stage whose command is ``python -m stages.X``, the repository-local
modules it imports (transitively, found with ``ast``, starting at
``stages/X.py``) must be exactly the ``.py`` files among its deps: a missing
one means DVC would not rerun the stage when that code changes, an extra one
means needless reruns.

Package ``__init__.py`` files are part of the closure only when they hold more
than a docstring: importing ``speakdigits.audio`` runs ``speakdigits/__init__.py``,
so once it holds code it must be listed too.  Imports guarded by
``if TYPE_CHECKING:`` never run and do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PACKAGES = ("speakdigits", "stages")
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
STAGE_CMD = re.compile(r"\A\s*python3?\s+-m\s+stages\.(\w+)(\s|\Z)")


def module_file(module: str) -> Path | None:
    """The repository file of a dotted module name, or None when it is not ours."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def has_code(init: Path) -> bool:
    body = ast.parse(init.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return any(not (isinstance(node, ast.ImportFrom) and node.module == "__future__") for node in body)


def package_inits(module: str) -> list[Path]:
    """``__init__.py`` of every package above ``module`` that holds code."""
    parts = module.split(".")
    inits = [REPO.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
    return [init for init in inits if init.is_file() and has_code(init)]


def is_type_checking_guard(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules ``path`` imports (wherever in the file), resolved."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if is_type_checking_guard(node):
            for child in node.orelse:  # only the else branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # ``from pkg import name``: name may be a submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def local_closure(entry: Path) -> set[str]:
    """Repository-relative paths of every local module ``entry`` runs, itself included."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            target = module_file(module)
            if target is not None and (target.name != "__init__.py" or has_code(target)):
                pending.append(target)
                pending.extend(package_inits(module))
    return {path.relative_to(REPO).as_posix() for path in seen}


def python_stages() -> dict[str, str]:
    stages = {}
    for name, stage in DVC_YAML["stages"].items():
        cmd = stage.get("cmd")
        cmd = cmd[0] if isinstance(cmd, list) and len(cmd) == 1 else cmd
        match = STAGE_CMD.match(cmd) if isinstance(cmd, str) else None
        if match:
            stages[name] = match.group(1)
    return stages


def dep_paths(stage: dict) -> list[str]:
    return [next(iter(dep)) if isinstance(dep, dict) else dep for dep in stage.get("deps", [])]


def test_the_data_stages_are_found():
    assert {"download": "download", "extract": "extract", "normalize": "normalize"}.items() <= python_stages().items()


@pytest.mark.parametrize("stage", sorted(python_stages()))
def test_stage_lists_exactly_the_code_it_runs(stage):
    module = python_stages()[stage]
    entry = REPO / "stages" / f"{module}.py"
    assert entry.is_file(), f"{stage}: {entry} does not exist"
    closure = local_closure(entry) | {p.relative_to(REPO).as_posix() for p in package_inits(f"stages.{module}")}
    listed = [dep for dep in dep_paths(DVC_YAML["stages"][stage]) if dep.endswith(".py")]
    assert len(listed) == len(set(listed)), f"{stage}: a .py dep is listed twice"
    missing = sorted(closure - set(listed))
    extra = sorted(set(listed) - closure)
    assert not missing and not extra, f"stage {stage}: missing deps {missing}, deps it never runs {extra}"


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_every_dep_exists_or_is_a_pipeline_output(stage):
    outs = {next(iter(o)) if isinstance(o, dict) else o
            for s in DVC_YAML["stages"].values() for key in ("outs", "metrics", "plots") for o in s.get(key, [])}
    for dep in dep_paths(DVC_YAML["stages"][stage]):
        assert (REPO / dep).exists() or dep in outs, f"stage {stage}: dep {dep} is neither a file nor an output"


def params_keys(stage: dict) -> list[str]:
    keys = []
    for item in stage.get("params", []):
        if isinstance(item, dict):  # {params_file: [keys]}
            for path, names in item.items():
                assert Path(path).name == "params.yaml", f"params from another file: {path}"
                keys.extend(names or [])
        else:
            keys.append(item)
    return keys


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_every_listed_param_exists(stage):
    for key in params_keys(DVC_YAML["stages"][stage]):
        node = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"stage {stage}: param '{key}' is not in params.yaml"
            node = node[part]


# ----------------------------------------------------------------- the checker itself


def test_closure_of_extract_is_what_it_imports():
    inits = {f"{pkg}/__init__.py" for pkg in PACKAGES if has_code(REPO / pkg / "__init__.py")}
    assert local_closure(REPO / "stages" / "extract.py") == inits | {
        "stages/extract.py", "stages/common.py", "speakdigits/features.py", "speakdigits/audio.py",
        "speakdigits/raw.py", "speakdigits/files.py", "speakdigits/params.py", "speakdigits/errors.py",
        "speakdigits/cores.py",
    }


def test_import_forms_are_resolved(tmp_path, monkeypatch):
    """Relative, from-package, nested and TYPE_CHECKING imports, on files written here."""
    fake = tmp_path / "repo"
    (fake / "speakdigits" / "sub").mkdir(parents=True)
    (fake / "stages").mkdir()
    files = {
        "speakdigits/__init__.py": '"""Docstring only."""\n',
        "speakdigits/sub/__init__.py": "VALUE = 1\n",
        "speakdigits/sub/deep.py": "",
        "speakdigits/a.py": "from . import b\nfrom .sub.deep import x\n",
        "speakdigits/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from speakdigits import typed\n",
        "speakdigits/typed.py": "",
        "speakdigits/lazy.py": "",
        "speakdigits/unused.py": "",
        "stages/__init__.py": "",
        "stages/x.py": "import numpy\nimport speakdigits.a\ndef f():\n    from speakdigits import lazy\n",
    }
    for name, text in files.items():
        (fake / name).write_text(text)
    monkeypatch.setattr(__import__(__name__), "REPO", fake)
    assert local_closure(fake / "stages" / "x.py") == {
        "stages/x.py", "speakdigits/a.py", "speakdigits/b.py", "speakdigits/lazy.py",
        "speakdigits/sub/__init__.py", "speakdigits/sub/deep.py",
    }
